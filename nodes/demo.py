"""The demonstration workload: signed transactions on all three channels, hour by hour.

``run_cluster.py --demo`` runs it instead of the market day: the prosumers (15 EVs, 5 PV, 1 SMES) sign records on the
transaction channel, the microgrid operator on the matching channel and the distribution
network operator on the electricity channel; after each hour every node must report the
same heads and state roots.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from p2pchain.client import Client, ClusterClient, Signer
from p2pchain.genesis import Genesis

from .agreement import wait_for_agreement
from .deploy import deploy_contract

__all__ = ["run_demo"]

DEMO_SOURCE = Path(__file__).resolve().parents[1] / "contracts" / "demo.py"


def demo_writers(genesis: Genesis) -> dict[str, list[str]]:
    """Who writes on which channel in the demonstration: prosumers on the main chain,
    the microgrid operator on matching, the distribution network operator on electricity."""
    prosumers = [i["name"] for i in genesis.document["identities"] if i["kind"] in ("ev", "pv", "smes")]
    return {"transaction": prosumers, "matching": ["operator-mgo"], "electricity": ["operator-dno"]}


async def prepare_demo(entry: Client, directory: Path, genesis: Genesis, say=print) -> dict[str, Signer]:
    """Deploy the demo contract on every channel (if it is not there yet) and load the
    writers' keys, each resuming after the last nonce it used on each channel."""
    source = DEMO_SOURCE.read_text()
    for channel in genesis.channels:
        version = await deploy_contract(entry, directory, genesis, channel, "demo", source)
        if version:
            say(f"deployed contract 'demo' v{version} on {channel} (install, approvals of a majority of orgs, commit)")
    signers = {}
    for names in demo_writers(genesis).values():
        for name in names:
            signers[name] = Signer.load(directory, name)
            for channel in genesis.channels:
                await signers[name].resume(entry, channel)
    return signers


async def run_demo(directory: Path, genesis: Genesis, urls: dict[str, str], *, hours: int = 6,
                   seed: int = 7, say=print) -> dict:
    rng = random.Random(seed)
    clients = {name: Client(url) for name, url in urls.items()}
    nodes = ClusterClient(clients, say=say, give_up_s=60.0)    # a node that is down is gone around
    await nodes.__aenter__()
    try:
        signers = await nodes.ask(lambda client: prepare_demo(client, directory, genesis, say))
        # every node has executed the deployment before any is asked to run the contract: one
        # still behind rightly refuses a contract it has not seen committed (404 unknown_contract)
        await wait_for_agreement(clients)
        prosumers = demo_writers(genesis)["transaction"]
        node_names = list(clients)
        total = 0
        for hour in range(hours):
            started = time.monotonic()
            jobs = []
            for i, name in enumerate(prosumers):
                value = {"hour": hour, "energy_wh": rng.randrange(500, 8000)}
                tx = signers[name].transaction("transaction", "demo", "record", {"topic": f"h{hour}", "value": value})
                jobs.append(nodes.submit(tx, wait=True, prefer=node_names[i % len(node_names)]))
            jobs.append(nodes.submit(signers["operator-mgo"].transaction(
                "matching", "demo", "record", {"topic": f"h{hour}", "value": {"hour": hour, "closed": True}}), wait=True))
            jobs.append(nodes.submit(signers["operator-dno"].transaction(
                "electricity", "demo", "record", {"topic": f"h{hour}", "value": {"hour": hour, "metered": True}}), wait=True))
            answers = await asyncio.gather(*jobs)
            failed = [a for a in answers if a["result"]["status"] != "ok"]
            total += len(answers)
            agreement = await wait_for_agreement(clients)
            heights = " ".join(f"{ch}={h}" for ch, (h, _, _) in agreement.items())
            say(f"hour {hour:2d}: {len(answers)} transactions committed in {time.monotonic() - started:.2f} s, "
                f"{len(failed)} failed; heights {heights}; all {len(clients)} nodes agree")
        agreement = await wait_for_agreement(clients)
        return {"transactions": total, "agreement": agreement}
    finally:
        await nodes.__aexit__(None, None, None)
