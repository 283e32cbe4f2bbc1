"""``p2pchain simulate``: output lines, exit status, trace file."""

from __future__ import annotations

import argparse
import json

import pytest

from p2pchain.sim.commands import add_commands


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="p2pchain")
    add_commands(parser.add_subparsers())
    args = parser.parse_args(["simulate", *argv])
    status = args.func(args)
    return status, capsys.readouterr()


def test_clean_run_prints_the_summary_line_and_exits_zero(capsys):
    status, out = run(["--seed", "3", "--schedules", "4"], capsys)
    assert status == 0
    assert out.out.splitlines() == ["4 schedules, 0 safety violations, 0 liveness failures"]


def test_trace_file_holds_json_lines_tagged_with_their_schedule(tmp_path, capsys):
    path = tmp_path / "trace.jsonl"
    status, _ = run(["--seed", "10", "--schedules", "2", "--faults", "crash,drop", "--trace", str(path)], capsys)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert status == 0 and {line["schedule"] for line in lines} == {10, 11}
    assert sum(1 for line in lines if line["ev"] == "verdict") == 2


def test_failing_schedule_is_reported_with_its_seed_and_nonzero_exit(capsys, monkeypatch):
    from p2pchain.sim import checker, runner

    real = checker.check_run

    def pretend_liveness_failure(sim, schedule, *, deadline_ms):
        verdict = real(sim, schedule, deadline_ms=deadline_ms)
        if schedule.seed == 6:
            verdict.liveness.append("client0 request 1 not accepted")
        return verdict
    monkeypatch.setattr(runner, "check_run", pretend_liveness_failure)
    status, out = run(["--seed", "5", "--schedules", "2"], capsys)
    lines = out.out.splitlines()
    assert status == 1
    assert lines[0].startswith("FAIL seed 6 [") and "client0 request 1 not accepted" in lines[0]
    assert lines[-1] == "2 schedules, 0 safety violations, 1 liveness failures"


@pytest.mark.parametrize("argv, message", [
    (["--nodes", "5"], "3f+1"),
    (["--faults", "meteor"], "unknown fault kinds"),
    (["--schedules", "0"], "at least 1"),
    (["--schedules", "1", "--trace", "/nonexistent-dir/run.jsonl"], "cannot write the trace to /nonexistent-dir/run.jsonl"),
])
def test_bad_arguments_exit_2_with_a_reason(argv, message, capsys):
    status, out = run(argv, capsys)
    assert status == 2 and message in out.err
