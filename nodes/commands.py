"""Subcommands that run or talk to nodes: ``node``, ``status``, ``submit``, ``blocks``, ``fault``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from p2pchain.client import ApiError, Client, ClusterClient, ClusterError, Signer
from p2pchain.consensus.recovery import StoresDisagree
from p2pchain.consortium import ConsortiumError
from p2pchain.crypto import KeyFileError
from p2pchain.encoding import EncodingError, encode, parse_json
from p2pchain.genesis import CHANNELS, Genesis, GenesisError
from p2pchain.ledger.store import LedgerError

from .admin import token_for
from .faults import BYZANTINE_MODES
from .launcher import api_url

__all__ = ["add_commands"]


def _genesis(directory: str) -> Genesis:
    try:
        return Genesis.load(Path(directory))
    except GenesisError as exc:
        raise SystemExit(f"p2pchain: {exc}")


def _url(genesis: Genesis, name: str | None) -> str:
    return api_url(genesis.node(name) if name else genesis.nodes[0])


# a node's stores damaged, or not belonging together: rebuilt from the peers once moved aside
DAMAGED_STORE_ERRORS = (sqlite3.DatabaseError, LedgerError, StoresDisagree)
# a node's key, genesis or stores unreadable, its port taken
NODE_START_ERRORS = (KeyFileError, GenesisError, ConsortiumError, OSError, *DAMAGED_STORE_ERRORS)
# SQLite's codes for a file system that refused it (full, failing, read-only, not permitted)
# and for a store another process holds: the stores are sound, the machine needs mending
DISK_REFUSED = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")
HELD_ELSEWHERE = ("SQLITE_BUSY", "SQLITE_LOCKED")


def start_remedy(exc: BaseException, stores: Path, name: str) -> str | None:
    """What a person should do about ``exc``, which stopped node ``name`` at start."""
    code = getattr(exc, "sqlite_errorname", None) or ""
    if isinstance(exc, sqlite3.OperationalError) and code.startswith(DISK_REFUSED):
        try:
            free = f"{shutil.disk_usage(stores).free:,} bytes free there"
        except OSError:
            free = "its free space unknown"
        return (f"the file system of {stores} refused a write or read ({code}; {free}): make room, or mend "
                f"its permissions or mount, and start the node again; it resumes from what it wrote")
    if isinstance(exc, sqlite3.OperationalError) and code.startswith(HELD_ELSEWHERE):
        return f"another process holds the stores in {stores}: is {name} running already?"
    if isinstance(exc, DAMAGED_STORE_ERRORS):
        return (f"its stores in {stores} are damaged or do not belong together; to rebuild the node from "
                f"its peers, move that directory aside and start the node again")
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"another program holds {name}'s port: is {name} running already?"
    return None


def _run_node(args: argparse.Namespace) -> int:
    from .memory import cap_arenas
    from .node import configure_logging, run_node

    _genesis(args.dir).node(args.name)
    cap_arenas()  # before the node starts any thread
    configure_logging(Path(args.dir), args.name, args.log_level)
    print(f"node {args.name}: log in {Path(args.dir) / 'logs' / (args.name + '.log')}", flush=True)
    try:
        return asyncio.run(run_node(Path(args.dir), args.name, tamper=tuple(args.tamper or ())))
    except NODE_START_ERRORS as exc:
        # what a person must mend in the directory or the machine: one line, not a traceback
        print(f"node {args.name}: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        remedy = start_remedy(exc, Path(args.dir) / "nodes" / args.name, args.name)
        if remedy:
            print(f"node {args.name}: {remedy}", file=sys.stderr, flush=True)
        return 2


def _call(coroutine) -> int:
    try:
        result = asyncio.run(coroutine)
    except ApiError as exc:
        print(f"p2pchain: {exc.status} {exc.code}: {exc.detail}", file=sys.stderr)
        return 1
    except ClusterError as exc:
        print(f"p2pchain: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"p2pchain: cannot reach the node: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    genesis = _genesis(args.dir)
    names = [args.node] if args.node else list(genesis.node_names)

    async def go():
        out = {}
        for name in names:
            try:
                async with Client(_url(genesis, name), timeout_s=5) as client:
                    out[name] = await client.status()
            except (ApiError, OSError) as exc:
                out[name] = {"error": str(exc) or type(exc).__name__}
        return out
    answers = asyncio.run(go())
    print(json.dumps(answers, indent=2))
    if all("error" in answer for answer in answers.values()):
        print(f"p2pchain status: no node answers ({', '.join(answers)}): is the cluster running?", file=sys.stderr)
        return 1
    return 0


FAILOVER_GIVE_UP_S = 60.0  # p2pchain submit: how long the nodes are tried in turn before giving up


def _nodes(genesis: Genesis, name: str | None) -> ClusterClient:
    """The node ``name``, or without a name every node in genesis order: a node that cannot
    be reached or answers 503 (crashed, stopping, channel halted) is passed over with a note
    on stderr (:class:`p2pchain.client.ClusterClient`)."""
    names = [name] if name else list(genesis.node_names)
    return ClusterClient({node: Client(_url(genesis, node)) for node in names},
                         say=lambda line: print(f"p2pchain: {line}", file=sys.stderr),
                         give_up_s=0.0 if name else FAILOVER_GIVE_UP_S)


def _submit(args: argparse.Namespace) -> int:
    genesis = _genesis(args.dir)
    try:
        call_args = parse_json(args.args)
    except ValueError as exc:
        print(f"p2pchain submit: --args is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        encode(call_args)
    except EncodingError as exc:    # before any node is asked: a float, a number past 64 bits, too deep
        print(f"p2pchain submit: --args has no canonical encoding: {exc}", file=sys.stderr)
        return 2

    signer = Signer.load(Path(args.dir), args.as_)

    async def go():
        async with _nodes(genesis, args.node) as nodes:
            await nodes.ask(lambda client: signer.resume(client, args.channel))
            # one signed transaction, the same on every node tried: a node keeps one request
            # per creator and nonce, so it cannot be applied twice
            tx = signer.transaction(args.channel, args.contract, args.function, call_args)
            return await nodes.submit(tx, wait=args.wait)
    return _call(go())


def _blocks(args: argparse.Namespace) -> int:
    genesis = _genesis(args.dir)

    async def act(client):
        if args.height is not None:
            return await client.block(args.channel, args.height)
        return await client.blocks(args.channel, args.start, args.end)

    async def go():
        async with _nodes(genesis, args.node) as nodes:
            return await nodes.ask(act)
    return _call(go())


def _fault(args: argparse.Namespace) -> int:
    if args.peers is not None and args.action != "isolate":
        print("p2pchain: --from goes with isolate only", file=sys.stderr)
        return 2
    genesis = _genesis(args.dir)
    token = args.token or token_for(Path(args.dir), genesis, args.admin)
    order = {"action": args.action}
    if args.mode:
        order["mode"] = args.mode
    if args.delay_ms is not None:
        order["delay_ms"] = args.delay_ms
    if args.peers is not None:
        order["from"] = [name.strip() for name in args.peers.split(",") if name.strip()]

    async def go():
        async with Client(_url(genesis, args.node)) as client:
            return await client.fault(order, token)
    return _call(go())


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    node = subparsers.add_parser("node", help="run one node of a consortium", description=(
        "Run node NAME of the consortium in DIR: its ledgers, PBFT replicas and contract workers, "
        "serving peers, clients, /metrics and /ui on the port the genesis gives it."))
    node.add_argument("--dir", required=True, help="the consortium directory")
    node.add_argument("--name", required=True, help="the node's name in the genesis (node0, ...)")
    node.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    node.add_argument("--tamper", action="append", choices=CHANNELS, metavar="CHANNEL",
                      help="demonstration: alter this node's execution on CHANNEL (its state root will "
                      "differ from the others'; it detects that and halts the channel)")
    node.set_defaults(func=_run_node)

    status = subparsers.add_parser("status", help="show the status of the nodes",
                                   description="Print each node's /v1/status (heights, heads, views, primaries).")
    status.add_argument("--dir", required=True, help="the consortium directory")
    status.add_argument("--node", help="only this node")
    status.set_defaults(func=_status)

    submit = subparsers.add_parser("submit", help="sign and submit a transaction", description=(
        "Sign a transaction as client identity IDENTITY and submit it to a node."))
    submit.add_argument("--dir", required=True, help="the consortium directory")
    submit.add_argument("--as", dest="as_", required=True, metavar="IDENTITY", help="the signing identity (ev01, operator-dno, admin-mgo, ...)")
    submit.add_argument("--channel", required=True, choices=CHANNELS)
    submit.add_argument("--contract", required=True)
    submit.add_argument("--function", required=True)
    submit.add_argument("--args", default="{}", help="the arguments as a JSON object (default {})")
    submit.add_argument("--node", help="the node to submit to (default: the first node, in genesis order, that takes it)")
    submit.add_argument("--wait", action="store_true", help="wait until the transaction is committed")
    submit.set_defaults(func=_submit)

    blocks = subparsers.add_parser("blocks", help="list or show blocks of a channel",
                                   description="Show one block (--height) or a range of blocks of a channel.")
    blocks.add_argument("--dir", required=True, help="the consortium directory")
    blocks.add_argument("--channel", required=True, choices=CHANNELS)
    blocks.add_argument("--height", type=int, help="show this block")
    blocks.add_argument("--from", dest="start", type=int, help="first height of the range")
    blocks.add_argument("--to", dest="end", type=int, help="last height of the range")
    blocks.add_argument("--node", help="the node to ask (default: the first node, in genesis order, that answers)")
    blocks.set_defaults(func=_blocks)

    fault = subparsers.add_parser("fault", help="inject a fault into a running node (admin)", description=(
        "Crash, restart, isolate, heal, slow down or make Byzantine a running node, through its admin API."))
    fault.add_argument("--dir", required=True, help="the consortium directory")
    fault.add_argument("action", choices=["crash", "restart", "isolate", "heal", "slow", "byzantine"])
    fault.add_argument("node", help="the node to act on")
    fault.add_argument("--mode", choices=BYZANTINE_MODES, help="with byzantine: how the node misbehaves")
    fault.add_argument("--delay-ms", type=int, help="with slow: delay of every outgoing frame (default 200)")
    fault.add_argument("--from", dest="peers", metavar="NODES",
                       help="with isolate: cut the node off from these peers only (comma-separated), "
                       "e.g. isolate node0 --from node2,node3 and node1 --from node2,node3 for a 2|2 partition")
    fault.add_argument("--admin", default="admin-mgo", help="the admin identity whose credentials sign the token")
    fault.add_argument("--token", help="an admin token (instead of the admin's key in DIR)")
    fault.set_defaults(func=_fault)
