"""run_cluster.py starts a node process again when it exits (nodes/launcher.py, ``NodeWatch``),
and leaves one down that keeps exiting right after its start."""

from __future__ import annotations

import signal
from pathlib import Path
from types import SimpleNamespace

from nodes.launcher import NodeWatch, describe_exit

NAMES = ("node0", "node1", "node2", "node3")


class _Cluster:
    def __init__(self):
        self.genesis = SimpleNamespace(node_names=NAMES)
        self.directory = Path("/c")
        self.processes = {name: SimpleNamespace(returncode=None) for name in NAMES}
        self.starts = []

    def alive(self, name):
        return self.processes[name].returncode is None

    def start(self, name):
        self.starts.append(name)
        self.processes[name] = SimpleNamespace(returncode=None)


def _watch():
    cluster, said, now = _Cluster(), [], [0.0]
    return NodeWatch(cluster, said.append, clock=lambda: now[0]), cluster, said, now


def test_a_killed_node_is_started_again_and_the_others_are_left_alone():
    watch, cluster, said, now = _watch()
    now[0] = 100.0
    cluster.processes["node1"].returncode = -signal.SIGKILL
    watch.check()
    assert cluster.starts == ["node1"]
    assert said == ["node1's process exited (killed by SIGKILL); starting it again: it restores its chain "
                    "from disk and catches up (see /c/logs/node1.out)"]
    watch.check()                                   # running again: nothing more
    assert cluster.starts == ["node1"]


def test_a_node_killed_again_and_again_is_always_started_again():
    watch, cluster, said, now = _watch()
    for _ in range(NodeWatch.MAX_QUICK_EXITS + 2):
        now[0] += 1.0
        cluster.processes["node3"].returncode = -signal.SIGKILL
        watch.check()
    assert cluster.starts == ["node3"] * (NodeWatch.MAX_QUICK_EXITS + 2) and not watch.left_down


def test_a_node_that_keeps_exiting_right_after_its_start_is_left_down():
    watch, cluster, said, now = _watch()
    for k in range(NodeWatch.MAX_QUICK_EXITS + 2):
        now[0] += 1.0
        cluster.processes["node2"].returncode = 1
        watch.check()
    assert cluster.starts == ["node2"] * (NodeWatch.MAX_QUICK_EXITS - 1)
    assert "node2" in watch.left_down and "it is left down" in said[-1] and "ended by itself (status 1)" in said[-1]


def test_an_exit_long_after_the_start_counts_as_a_first_one_again():
    watch, cluster, said, now = _watch()
    for _ in range(5):
        now[0] += NodeWatch.QUICK_EXIT_S + 1.0
        cluster.processes["node0"].returncode = 1
        watch.check()
    assert cluster.starts == ["node0"] * 5 and not watch.left_down


def test_exits_are_described_in_words():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "status 3"
    assert describe_exit(-200) == "killed by signal 200"
