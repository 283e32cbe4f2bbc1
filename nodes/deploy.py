"""Deploy a contract through the lifecycle, as the consortium's admins would (Fabric-style).

An admin of one member organisation installs the bundle; admins of a majority of the
channel's member organisations approve it; the installer commits it. Already-committed
versions are left alone, so deploying again is a no-op.
"""

from __future__ import annotations

from pathlib import Path

from p2pchain.client import ApiError, Client, Signer
from p2pchain.genesis import Genesis
from p2pchain.runtime.lifecycle import LIFECYCLE, make_bundle

__all__ = ["deploy_contract", "committed_version"]


async def committed_version(client: Client, channel: str, name: str) -> int | None:
    try:
        answer = await client.state(channel, LIFECYCLE, f"definition/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return answer["value"].get("version")


async def deploy_contract(client: Client, directory: Path, genesis: Genesis, channel: str, name: str,
                          source: str, version: int = 1) -> bool:
    """Install, approve and commit ``name`` at ``version`` on ``channel``; ``False`` if already there."""
    current = await committed_version(client, channel, name)
    if current is not None and current >= version:
        return False
    config = genesis.channels[channel]
    admins = [Signer.load(directory, f"admin-{org}") for org in config.members]
    for admin in admins:
        await admin.resume(client, channel)
    bundle, digest = make_bundle(name, version, source)
    installer = admins[0]
    steps = [(installer, "install", {"bundle": bundle, "digest": digest})]
    steps += [(admin, "approve", {"name": name, "version": version, "digest": digest})
              for admin in admins[: config.lifecycle_threshold()]]
    steps.append((installer, "commit", {"name": name, "version": version, "digest": digest}))
    for signer, function, args in steps:
        answer = await client.submit(signer.transaction(channel, LIFECYCLE, function, args), wait=True)
        if answer["result"]["status"] != "ok":
            raise RuntimeError(f"{function} of {name} v{version} on {channel} failed: {answer['result']['reason']}")
    return True
