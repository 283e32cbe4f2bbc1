"""Deploy a contract through the lifecycle, as the consortium's admins would (Fabric-style).

An admin of one member organisation installs the bundle; admins of a majority of the
channel's member organisations approve it; the installer commits it. Deploying the source
that is already committed is a no-op; a changed source (a consortium directory made by an
older release) is committed as the next version, the lifecycle's upgrade path.
"""

from __future__ import annotations

from pathlib import Path

from p2pchain.client import ApiError, Client, Signer
from p2pchain.genesis import Genesis
from p2pchain.runtime.lifecycle import LIFECYCLE, make_bundle

__all__ = ["deploy_contract", "committed_version"]


async def committed_version(client: Client, channel: str, name: str) -> int | None:
    definition = await _definition(client, channel, name)
    return None if definition is None else definition["version"]


async def _definition(client: Client, channel: str, name: str) -> dict | None:
    try:
        answer = await client.state(channel, LIFECYCLE, f"definition/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return answer["value"]


async def _committed_source(client: Client, channel: str, definition: dict) -> str | None:
    """The source of the committed bundle (its digest is in the definition, as hex)."""
    answer = await client.state(channel, LIFECYCLE, f"bundle/{definition['digest']}")
    return answer["value"].get("source")


async def deploy_contract(client: Client, directory: Path, genesis: Genesis, channel: str, name: str,
                          source: str) -> int | None:
    """Install, approve and commit ``source`` as contract ``name`` on ``channel``: the version
    committed (1, or the next one if another source was committed), or None if this source
    is the committed one already."""
    definition = await _definition(client, channel, name)
    version = 1
    if definition is not None:
        if await _committed_source(client, channel, definition) == source:
            return None
        version = definition["version"] + 1
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
    return version
