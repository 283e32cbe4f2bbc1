"""The lifecycle: install, approve by a majority of orgs, commit, upgrade; old blocks replay."""

from __future__ import annotations

import pytest
from runtime_helpers import POLICY, block, identity, invocation

from p2pchain.encoding import decode
from p2pchain.genesis import ChannelConfig
from p2pchain.runtime import LIFECYCLE, Executor, LifecyclePolicy, MemoryState, genesis_writes, make_bundle

V1 = "def price(ctx, energy_wh):\n    return energy_wh * 2\n"
V2 = "def price(ctx, energy_wh):\n    return energy_wh * 3\n"


def admin(org: str):
    return identity(org, f"admin-{org}", "admin")


class Chain:
    """A channel's state and executor, one block per call."""

    def __init__(self, state: MemoryState | None = None):
        self.state = state or MemoryState()
        self.executor = Executor(POLICY)
        self.height = 0
        self.history: list[tuple[MemoryState, list, bytes]] = []

    def block(self, *invocations):
        self.height += 1
        before = self.state.copy()
        result = self.executor.execute_block(block(self.height), list(invocations), self.state)
        self.history.append((before, list(invocations), result.digest()))
        self.state.apply(result.write_map())
        return result.results

    def lifecycle(self, function, args, org="mgo", tx=0):
        (result,) = self.block(invocation(LIFECYCLE, function, args, caller=admin(org), tx=tx))
        return result

    def price(self, energy_wh=10):
        (result,) = self.block(invocation("tariff", "price", {"energy_wh": energy_wh}))
        return result


def install(chain, source, version=1, org="mgo"):
    bundle, digest = make_bundle("tariff", version, source)
    return chain.lifecycle("install", {"bundle": bundle, "digest": digest}, org), digest


def test_the_threshold_is_the_genesis_majority_of_member_orgs():
    channel = ChannelConfig("matching", ("dno", "mgo", "reg"), ("client",), "majority")
    assert LifecyclePolicy.from_channel(channel) == LifecyclePolicy(("dno", "mgo", "reg"), 2)


def test_an_installed_contract_without_enough_approvals_cannot_be_invoked_or_committed():
    chain = Chain()
    installed, digest = install(chain, V1)
    assert installed.ok, installed.reason
    assert chain.price().reason == "contract 'tariff' is not committed on this channel"
    assert chain.lifecycle("approve", {"name": "tariff", "version": 1, "digest": digest}, "mgo").ok
    refused = chain.lifecycle("commit", {"name": "tariff", "version": 1, "digest": digest})
    assert refused.reason == "tariff v1 has 1 approvals; the policy needs 2 of 3"
    assert chain.price().reason == "contract 'tariff' is not committed on this channel"


def test_with_a_majority_of_approvals_the_contract_commits_and_runs():
    chain = Chain()
    _, digest = install(chain, V1)
    for org in ("mgo", "dno"):
        assert chain.lifecycle("approve", {"name": "tariff", "version": 1, "digest": digest}, org).ok
    committed = chain.lifecycle("commit", {"name": "tariff", "version": 1, "digest": digest}, "reg")
    assert committed.ok and decode(committed.value)["version"] == 1
    assert decode(chain.price(10).value) == 20
    definition = chain.lifecycle("definition", {"name": "tariff"})
    assert decode(definition.value) == {"name": "tariff", "version": 1, "digest": digest, "committed_height": 4}


def test_an_upgrade_follows_the_same_path_and_old_blocks_stay_verifiable():
    chain = Chain()
    _, d1 = install(chain, V1)
    for org in ("mgo", "dno"):
        chain.lifecycle("approve", {"name": "tariff", "version": 1, "digest": d1}, org)
    chain.lifecycle("commit", {"name": "tariff", "version": 1, "digest": d1})
    assert decode(chain.price(10).value) == 20
    old_block = len(chain.history) - 1
    _, d2 = install(chain, V2, version=2, org="dno")
    assert decode(chain.price(10).value) == 20  # installed is not committed
    for org in ("reg", "dno"):
        chain.lifecycle("approve", {"name": "tariff", "version": 2, "digest": d2}, org)
    assert chain.lifecycle("commit", {"name": "tariff", "version": 2, "digest": d2}).ok
    assert decode(chain.price(10).value) == 30
    # Re-executing every recorded block from its pre-state, with a fresh executor, gives the
    # digests that were recorded: the v1 block still verifies after the upgrade.
    # So does the executor that ran the upgrade: what it keeps between blocks (definitions,
    # compiled code) is keyed by what the state holds, not by the last block it saw.
    for verifier in (Executor(POLICY), chain.executor):
        for height, (before, invocations, recorded) in enumerate(chain.history, start=1):
            assert verifier.execute_block(block(height), invocations, before).digest() == recorded
    assert chain.history[old_block][2] != chain.history[-1][2]


@pytest.mark.parametrize("caller, reason", [
    (identity("mgo", "ev01", "client"), "needs an admin of a member organisation"),
    (identity("mgo", "node0", "peer"), "needs an admin of a member organisation"),
    (identity("xyz", "admin-xyz", "admin"), "needs an admin of a member organisation"),
])
def test_only_admins_of_member_orgs_govern_the_lifecycle(caller, reason):
    chain = Chain()
    bundle, digest = make_bundle("tariff", 1, V1)
    (result,) = chain.block(invocation(LIFECYCLE, "install", {"bundle": bundle, "digest": digest}, caller=caller))
    assert reason in result.reason


def test_install_refuses_a_wrong_digest_or_refused_source_or_an_old_version():
    chain = Chain()
    bundle, _ = make_bundle("tariff", 1, V1)
    wrong = chain.lifecycle("install", {"bundle": bundle, "digest": b"\x00" * 32})
    assert wrong.reason == "digest does not match the bundle"
    bad_bundle, bad_digest = make_bundle("tariff", 1, "import os\n")
    bad = chain.lifecycle("install", {"bundle": bad_bundle, "digest": bad_digest})
    assert bad.reason.startswith("source refused: line 1: import of 'os'")
    chain = Chain(MemoryState(genesis_writes([make_bundle("tariff", 3, V1)[0]])))
    old, _ = install(chain, V2, version=2)
    assert old.reason == "tariff v3 is committed; install a higher version"


def test_approval_must_name_the_installed_digest():
    chain = Chain()
    install(chain, V1)
    result = chain.lifecycle("approve", {"name": "tariff", "version": 1, "digest": b"\x01" * 32})
    assert result.reason == "tariff v1 was installed with another digest"


def test_genesis_can_pre_commit_contracts():
    chain = Chain(MemoryState(genesis_writes([make_bundle("tariff", 1, V1)[0]])))
    assert decode(chain.price(7).value) == 14
