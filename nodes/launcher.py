"""Start, stop and kill node processes on this machine (run_cluster.py and the tests).

Each node is its own operating-system process running ``python -m nodes.cli node``, so a
node can be killed at any instant (SIGKILL) and restarted from what it left on disk, as a
real deployment would. Its output goes to ``DIR/logs/<node>.out``; its structured log to
``DIR/logs/<node>.log`` (written by the node itself).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from p2pchain.client import read_status
from p2pchain.genesis import Genesis

__all__ = ["Cluster", "NodeWatch", "api_url", "describe_exit"]


def api_url(node) -> str:
    """The base URL of a node's API (a genesis ``NodeInfo``); a wildcard host means this machine."""
    host = "127.0.0.1" if node.host in ("0.0.0.0", "") else node.host
    return f"http://{host}:{node.port}"


class Cluster:
    """The node processes of one consortium directory."""

    def __init__(self, directory: Path, genesis: Genesis, *, extra_args: dict[str, list[str]] | None = None,
                 prefix: dict[str, list[str]] | None = None):
        self.directory = Path(directory)
        self.genesis = genesis
        self.processes: dict[str, subprocess.Popen] = {}
        self.extra_args = extra_args or {}
        self.prefix = prefix or {}  # e.g. ["ip", "netns", "exec", "ns0"]: where a node's process runs
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)

    def url(self, name: str) -> str:
        return api_url(self.genesis.node(name))

    def start(self, name: str, *args: str) -> subprocess.Popen:
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is already running")
        out = open(self.directory / "logs" / f"{name}.out", "ab")
        command = [*self.prefix.get(name, []), sys.executable, "-m", "nodes.cli", "node", "--dir", str(self.directory), "--name", name,
                   *self.extra_args.get(name, []), *args]
        # The node exits if this process dies without stopping it (see nodes/node.py).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "P2PCHAIN_PARENT_PID": str(os.getpid())}
        self.processes[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
        out.close()
        return self.processes[name]

    def start_all(self) -> None:
        for name in self.genesis.node_names:
            self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL: the node gets no chance to clean up (the crash-safety case)."""
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def stop(self, name: str, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if the node has not shut down within ``timeout_s``."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def stop_all(self, timeout_s: float = 8.0) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                self.processes[name].wait(remaining)
            except subprocess.TimeoutExpired:
                self.processes[name].kill()
                self.processes[name].wait()

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    async def wait_healthy(self, names: list[str] | None = None, timeout_s: float = 60.0,
                           watch: NodeWatch | None = None) -> dict[str, dict]:
        """Poll ``/v1/status`` until every node in ``names`` answers; return their statuses.
        A node process that exits meanwhile ends the wait with its log, unless ``watch``
        starts it again."""
        names = list(names or self.genesis.node_names)
        statuses: dict[str, dict] = {}
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while len(statuses) < len(names):
                for name in names:
                    if name in statuses:
                        continue
                    process = self.processes.get(name)
                    if process is not None and process.poll() is not None:
                        if watch is not None:
                            watch.check()
                        if not self.alive(name):
                            log = (self.directory / "logs" / f"{name}.out").read_text()[-2000:]
                            raise RuntimeError(f"{name} exited ({describe_exit(process.returncode)}):\n{log}")
                        continue
                    try:
                        async with session.get(self.url(name) + "/v1/status") as response:
                            if response.status == 200:
                                status = await read_status(response)
                                if status is None:
                                    raise RuntimeError(f"{self.url(name)} answers, but not as a p2pchain node: stop "
                                                       f"the program on that port or use another --base-port")
                                if status.get("genesis") != self.genesis.digest.hex() or status.get("node") != name:
                                    raise RuntimeError(
                                        f"{self.url(name)} answers as {status.get('node')} of another consortium "
                                        f"(genesis {str(status.get('genesis'))[:16]}…): stop that cluster or use "
                                        f"another --base-port")
                                statuses[name] = status
                    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                        pass
                if len(statuses) < len(names):
                    if time.monotonic() > deadline:
                        missing = sorted(set(names) - set(statuses))
                        raise TimeoutError(f"nodes not healthy after {timeout_s:.0f} s: {', '.join(missing)}")
                    await asyncio.sleep(0.1)
        return statuses


def describe_exit(returncode: int | None) -> str:
    """How a process ended, in words: ``killed by SIGKILL`` or ``status 1``."""
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


class NodeWatch:
    """Notices a node process that has exited -- a crash, ``kill -9``, the OOM killer -- and
    starts it again: the node restores its chain from disk and catches up, while the others
    go on without it (PBFT tolerates f nodes down). A process killed by a signal is always
    started again; one that ends by itself within ``QUICK_EXIT_S`` of its start
    ``MAX_QUICK_EXITS`` times in a row is left down: something in its directory or its
    environment needs a person.

    ``say`` hears one line per event. (The dashboard's crash button is not such an exit: it
    crashes the node inside its process, and its restart button brings it back.)
    """

    QUICK_EXIT_S = 30.0
    MAX_QUICK_EXITS = 3

    def __init__(self, cluster: Cluster, say, clock=time.monotonic) -> None:
        self.cluster, self.say, self.clock = cluster, say, clock
        now = clock()
        self.started = {name: now for name in cluster.genesis.node_names}
        self.quick_exits = {name: 0 for name in cluster.genesis.node_names}
        self.left_down: set[str] = set()

    def check(self) -> None:
        """Start again every node process that has exited since the last check."""
        for name in self.cluster.genesis.node_names:
            if name in self.left_down or self.cluster.alive(name):
                continue
            now = self.clock()
            returncode = self.cluster.processes[name].returncode
            how = describe_exit(returncode)
            log = self.cluster.directory / "logs" / f"{name}.out"
            by_itself = returncode is not None and returncode >= 0
            quick = by_itself and now - self.started[name] < self.QUICK_EXIT_S
            self.quick_exits[name] = self.quick_exits[name] + 1 if quick else 0
            if self.quick_exits[name] >= self.MAX_QUICK_EXITS:
                self.left_down.add(name)
                self.say(f"{name}'s process ended by itself ({how}) {self.MAX_QUICK_EXITS} times in a row "
                         f"within {self.QUICK_EXIT_S:g} s of its start; it is left down (see {log})")
                continue
            self.say(f"{name}'s process exited ({how}); starting it again: it restores its chain from disk "
                     f"and catches up (see {log})")
            self.cluster.start(name)
            self.started[name] = now

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.check()
