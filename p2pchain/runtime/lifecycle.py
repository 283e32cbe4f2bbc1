"""The contract lifecycle, a system contract in the channel's own state (issue 5, item 5).

It follows Hyperledger Fabric's chaincode lifecycle (Fabric docs, "Fabric chaincode
lifecycle"): a definition is *installed*, *approved* by organisations and *committed* once
the channel's lifecycle policy is met — here the genesis rule, a majority of the channel's
member organisations (:meth:`p2pchain.genesis.ChannelConfig.lifecycle_threshold`).

* ``install(bundle, digest)`` — an admin of a member org puts a bundle
  ``{"name", "version", "source"}`` on chain; the digest must be the bundle's BLAKE2b and
  the source must pass the validator.
* ``approve(name, version, digest)`` — an admin approves for their organisation.
* ``commit(name, version, digest)`` — once enough organisations approved, the definition
  ``{name, version, digest}`` becomes the one invocations run. An upgrade is the same path
  with a higher version; bundles are never deleted, so old blocks stay re-executable with
  the version that was committed at their height.

All of it lives under the namespace ``_lifecycle``, which no contract can name (contract
names start with a letter), and runs as trusted code in the executor, not in the sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..encoding import EncodingError, decode, digest, encode
from ..identity import Identity
from .records import StateView
from .validator import validate

__all__ = [
    "LIFECYCLE", "LifecyclePolicy", "LifecycleError", "Definition", "make_bundle", "committed",
    "definition_record", "parse_definition", "load_bundle", "run_lifecycle", "genesis_writes",
]

LIFECYCLE = "_lifecycle"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
MAX_SOURCE_CHARS = 1_000_000


class LifecycleError(Exception):
    """A lifecycle transaction that is refused; the message is the transaction's reason."""


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """Who governs a channel's contracts: its member orgs, and how many must approve."""

    members: tuple[str, ...]
    threshold: int

    @classmethod
    def from_channel(cls, config: Any) -> LifecyclePolicy:
        """From a :class:`p2pchain.genesis.ChannelConfig`."""
        return cls(tuple(config.members), config.lifecycle_threshold())


@dataclass(frozen=True, slots=True)
class Definition:
    """The committed definition of a contract on a channel."""

    name: str
    version: int
    digest: bytes
    committed_height: int


def make_bundle(name: str, version: int, source: str) -> tuple[dict[str, Any], bytes]:
    """The bundle an ``install`` transaction carries, and its digest."""
    bundle = {"name": name, "version": version, "source": source}
    return bundle, digest(bundle)


def _definition_key(name: str) -> str:
    return f"definition/{name}"


def _proposal_key(name: str, version: int) -> str:
    return f"proposal/{name}/{version:010d}"


def _bundle_key(bundle_digest: bytes) -> str:
    return f"bundle/{bundle_digest.hex()}"


def _read(view: StateView, key: str) -> Any:
    data = view.get(LIFECYCLE, key)
    return None if data is None else decode(data)


def committed(view: StateView, name: str) -> Definition | None:
    """The definition invocations of ``name`` run, or ``None`` if none was committed."""
    return parse_definition(definition_record(view, name))


def definition_record(view: StateView, name: str) -> bytes | None:
    """The canonical bytes of ``name``'s committed definition (what :func:`committed` decodes)."""
    return view.get(LIFECYCLE, _definition_key(name))


def parse_definition(data: bytes | None) -> Definition | None:
    """The :class:`Definition` that :func:`definition_record` returned, or ``None`` for none."""
    if data is None:
        return None
    value = decode(data)
    return Definition(value["name"], value["version"], value["digest"], value["committed_height"])


def load_bundle(view: StateView, bundle_digest: bytes) -> dict[str, Any]:
    bundle = _read(view, _bundle_key(bundle_digest))
    if bundle is None:
        raise LifecycleError(f"bundle {bundle_digest.hex()} is not on chain")
    return bundle


def _check_bundle(bundle: Any, bundle_digest: Any) -> tuple[str, int]:
    if not isinstance(bundle, dict) or set(bundle) != {"name", "version", "source"}:
        raise LifecycleError("a bundle is a map with exactly name, version and source")
    name, version, source = bundle["name"], bundle["version"], bundle["source"]
    if type(name) is not str or not _NAME.match(name):
        raise LifecycleError("a contract name is 1-64 of a-z, 0-9, _ starting with a letter")
    if type(version) is not int or version < 1:
        raise LifecycleError("a version is a positive int")
    if type(source) is not str or len(source) > MAX_SOURCE_CHARS:
        raise LifecycleError(f"source must be str of at most {MAX_SOURCE_CHARS} characters")
    try:
        actual = digest(bundle)
    except EncodingError as exc:
        raise LifecycleError(f"bundle is not canonical: {exc}") from None
    if actual != bundle_digest:
        raise LifecycleError("digest does not match the bundle")
    _, refusals = validate(source, filename=f"<contract {name} v{version}>")
    if refusals:
        raise LifecycleError("source refused: " + "; ".join(str(r) for r in refusals[:10]))
    return name, version


def _admin(caller: Identity, policy: LifecyclePolicy, action: str) -> str:
    if caller.role != "admin" or caller.org not in policy.members:
        raise LifecycleError(f"{action} needs an admin of a member organisation of this channel")
    return caller.org


def _args(args: Any, names: tuple[str, ...]) -> list[Any]:
    if not isinstance(args, dict) or set(args) != set(names):
        raise LifecycleError(f"arguments must be exactly {', '.join(names)}")
    return [args[n] for n in names]


def _proposal(view: StateView, name: Any, version: Any, bundle_digest: Any) -> tuple[str, dict[str, Any]]:
    if type(name) is not str or type(version) is not int or type(bundle_digest) is not bytes:
        raise LifecycleError("name is str, version int, digest bytes")
    key = _proposal_key(name, version)
    proposal = _read(view, key)
    if proposal is None:
        raise LifecycleError(f"{name} v{version} was not installed")
    if proposal["digest"] != bundle_digest:
        raise LifecycleError(f"{name} v{version} was installed with another digest")
    return key, proposal


def run_lifecycle(function: str, args: Any, caller: Identity, height: int, view: StateView,
                  writes: dict[tuple[str, str], bytes | None], policy: LifecyclePolicy) -> Any:
    """Run one lifecycle transaction; its writes go into ``writes``; returns its value."""
    if function == "install":
        org = _admin(caller, policy, "install")
        bundle, bundle_digest = _args(args, ("bundle", "digest"))
        name, version = _check_bundle(bundle, bundle_digest)
        current = committed(view, name)
        if current is not None and version <= current.version:
            raise LifecycleError(f"{name} v{current.version} is committed; install a higher version")
        if _read(view, _proposal_key(name, version)) is not None:
            raise LifecycleError(f"{name} v{version} is already installed")
        writes[(LIFECYCLE, _bundle_key(bundle_digest))] = encode(bundle)
        writes[(LIFECYCLE, _proposal_key(name, version))] = encode(
            {"digest": bundle_digest, "approvals": [], "installed_by": org, "height": height})
        return {"name": name, "version": version}
    if function == "approve":
        org = _admin(caller, policy, "approve")
        key, proposal = _proposal(view, *_args(args, ("name", "version", "digest")))
        proposal["approvals"] = sorted(dict.fromkeys([*proposal["approvals"], org]))
        writes[(LIFECYCLE, key)] = encode(proposal)
        return {"approvals": proposal["approvals"], "needed": policy.threshold}
    if function == "commit":
        _admin(caller, policy, "commit")
        name, version, bundle_digest = _args(args, ("name", "version", "digest"))
        _, proposal = _proposal(view, name, version, bundle_digest)
        approvals = [org for org in proposal["approvals"] if org in policy.members]
        if len(approvals) < policy.threshold:
            raise LifecycleError(f"{name} v{version} has {len(approvals)} approvals; "
                                 f"the policy needs {policy.threshold} of {len(policy.members)}")
        current = committed(view, name)
        if current is not None and version <= current.version:
            raise LifecycleError(f"{name} v{current.version} is already committed")
        definition = {"name": name, "version": version, "digest": bundle_digest, "committed_height": height}
        writes[(LIFECYCLE, _definition_key(name))] = encode(definition)
        return definition
    if function == "definition":
        (name,) = _args(args, ("name",))
        value = _read(view, _definition_key(name)) if type(name) is str else None
        return value
    raise LifecycleError(f"the lifecycle has no function {function!r}")


def genesis_writes(bundles: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], bytes]:
    """State writes that pre-commit ``bundles`` at height 0 (the genesis block's contracts)."""
    writes: dict[tuple[str, str], bytes] = {}
    for bundle in bundles:
        bundle = dict(bundle)
        bundle_digest = digest(bundle)
        name, version = _check_bundle(bundle, bundle_digest)
        writes[(LIFECYCLE, _bundle_key(bundle_digest))] = encode(bundle)
        writes[(LIFECYCLE, _definition_key(name))] = encode(
            {"name": name, "version": version, "digest": bundle_digest, "committed_height": 0})
    return writes
