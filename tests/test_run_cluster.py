"""run_cluster.py: its consortium directory, created with the options or reused as it is; the
demonstration day end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .ports import free_port_block

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_cluster  # noqa: E402


def test_a_new_directory_gets_the_options_and_an_existing_one_keeps_its_genesis(tmp_path, capsys):
    directory = tmp_path / "c"
    created = run_cluster.load_or_create(run_cluster.parse_args(["--dir", str(directory), "--base-port", "7300"]))
    assert len(created.nodes) == 4 and [n.port for n in created.nodes] == [7300, 7301, 7302, 7303]
    assert "created a consortium" in capsys.readouterr().out

    same = run_cluster.load_or_create(run_cluster.parse_args(["--dir", str(directory)]))
    assert same.digest == created.digest
    assert "note:" not in capsys.readouterr().out

    again = run_cluster.load_or_create(run_cluster.parse_args(["--dir", str(directory), "--nodes", "7"]))
    assert again.digest == created.digest
    assert "holds a consortium of 4 nodes on ports 7300–7303; --nodes and --base-port only shape a new one" \
        in capsys.readouterr().out


def test_a_node_count_that_is_not_3f_plus_1_is_refused_with_the_reason(tmp_path):
    with pytest.raises(Exception, match=r"PBFT needs n = 3f \+ 1 nodes"):
        run_cluster.load_or_create(run_cluster.parse_args(["--dir", str(tmp_path / "c"), "--nodes", "0"]))


def test_the_demonstration_day_runs_through_a_real_cluster_and_exits_with_once(tmp_path):
    base = free_port_block(4)
    done = subprocess.run([sys.executable, str(Path(run_cluster.__file__)), "--dir", str(tmp_path / "c"),
                           "--base-port", str(base), "--demo", "--hours", "1", "--once"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "deployed contract 'demo' v1 on transaction" in done.stdout
    # one hour: a record from each prosumer and one on each side chain, all committed
    assert "hour  0:" in done.stdout and ", 0 failed;" in done.stdout and "all 4 nodes agree" in done.stdout
    assert "day done:" in done.stdout and "transactions committed" in done.stdout


@pytest.mark.parametrize("body", [b"<html>not a node</html>", b"[" * 100_000, b'{"node": "node0", "genesis": "00"}'])
async def test_a_port_held_by_another_program_is_named_when_the_nodes_are_awaited(tmp_path, body):
    """What answers on a node's port and is not that node: another program, a faulty answer,
    another consortium's node. Before, an answer nested past the JSON parser ended the
    wait in a RecursionError, and a page that is not JSON was waited on until the timeout."""
    import datetime as dt
    from aiohttp import web
    from nodes.launcher import Cluster
    from p2pchain.consortium import create_consortium

    genesis = create_consortium(tmp_path, base_port=free_port_block(4), now=dt.datetime.now(dt.timezone.utc))

    async def status(request):
        return web.Response(body=body, content_type="text/html" if body.startswith(b"<") else "application/json")

    app = web.Application()
    app.router.add_get("/v1/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", genesis.node("node0").port).start()
    try:
        with pytest.raises(RuntimeError, match="not as a p2pchain node|of another consortium"):
            await Cluster(tmp_path, genesis).wait_healthy(["node0"], timeout_s=5)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("hours", ["0", "25", "-3"])
def test_hours_outside_one_day_are_refused_before_anything_starts(tmp_path, capsys, hours):
    """Before, 0 or -3 started the cluster and stopped on a missing key; 25 ran the whole day
    and ended in an IndexError."""
    with pytest.raises(SystemExit) as exited:
        run_cluster.parse_args(["--dir", str(tmp_path / "c"), "--hours", hours])
    assert exited.value.code == 2 and "--hours takes 1 to 24" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_two_sigterms_in_a_row_still_stop_every_node_cleanly(tmp_path):
    """A supervisor's SIGTERM, and the same again (``timeout`` passing its own on): before,
    the second raised inside the nodes' stop and ended run_cluster.py in a traceback."""
    import signal
    import time

    run = subprocess.Popen([sys.executable, str(Path(run_cluster.__file__)), "--dir", str(tmp_path / "c"),
                            "--base-port", str(free_port_block(4)), "--no-day"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = ""
        deadline = time.monotonic() + 90
        while "the cluster keeps running" not in seen and time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, seen[-2000:]
            seen += line
        run.send_signal(signal.SIGTERM)
        time.sleep(0.2)      # inside the stop by now: the nodes' own shutdown takes longer
        run.send_signal(signal.SIGTERM)
        rest, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, rest[-2000:]
    assert "all node processes stopped" in rest and "Traceback" not in rest
    names = [f"node{k}" for k in range(4)]
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        assert not (str(tmp_path).encode() in argv and b"nodes.cli" in argv), f"a node outlived the stop: {argv!r}"
    assert all((tmp_path / "c" / "logs" / f"{name}.log").exists() for name in names)
