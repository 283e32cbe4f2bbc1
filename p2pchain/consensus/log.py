"""The message log of one view: a slot per sequence number (OSDI'99 §4.2).

A slot gathers the pre-prepare and the prepares and commits that name its (view, seq).
Votes are kept per sender; a sender's second, different vote for the same slot is
equivocation and is refused by the caller (:meth:`Slot.add_prepare` says so). Predicates
follow the paper: *prepared* = the pre-prepare plus 2f matching prepares from distinct
backups; *committed-local* = prepared plus 2f+1 matching commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ordering import CommitCertificate
from .messages import Commit, PrePrepare, Prepare, PreparedCertificate

__all__ = ["Slot"]


@dataclass(slots=True)
class Slot:
    view: int
    seq: int
    pre_prepare: PrePrepare | None = None
    prepares: dict[str, Prepare] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    sent_commit: bool = False
    committed: bool = False

    @property
    def digest(self) -> bytes | None:
        return None if self.pre_prepare is None else self.pre_prepare.digest

    def add_prepare(self, prepare: Prepare) -> bool:
        """Record ``prepare``; ``False`` if its sender already voted differently here."""
        known = self.prepares.get(prepare.sender)
        if known is not None:
            return known.digest == prepare.digest
        self.prepares[prepare.sender] = prepare
        return True

    def add_commit(self, commit: Commit) -> bool:
        known = self.commits.get(commit.sender)
        if known is not None:
            return known.digest == commit.digest
        self.commits[commit.sender] = commit
        return True

    def matching_prepares(self, primary: str) -> list[Prepare]:
        d = self.digest
        return sorted((p for p in self.prepares.values() if p.digest == d and p.sender != primary),
                      key=lambda p: p.sender)

    def matching_commits(self) -> list[Commit]:
        d = self.digest
        return sorted((c for c in self.commits.values() if c.digest == d), key=lambda c: c.sender)

    def prepared_certificate(self, primary: str, f: int) -> PreparedCertificate | None:
        if self.pre_prepare is None:
            return None
        prepares = self.matching_prepares(primary)
        if len(prepares) < 2 * f:
            return None
        return PreparedCertificate(self.pre_prepare, tuple(prepares[: 2 * f]))

    def commit_certificate(self, f: int) -> CommitCertificate | None:
        if self.pre_prepare is None:
            return None
        commits = self.matching_commits()
        if len(commits) < 2 * f + 1:
            return None
        pp = self.pre_prepare
        return CommitCertificate(pp.channel, pp.view, pp.seq, pp.digest,
                                 tuple((c.sender, c.signature) for c in commits[: 2 * f + 1]))
