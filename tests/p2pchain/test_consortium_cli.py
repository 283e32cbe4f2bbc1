"""`p2pchain init` and `p2pchain inspect`."""

import json
import os
import stat
import subprocess
import sys

import pytest

from nodes.cli import main
from p2pchain.genesis import Genesis

from ..ports import free_port_block


def test_init_then_inspect(tmp_path, capsys):
    target = tmp_path / "c"
    assert main(["init", "--dir", str(target), "--base-port", "8100"]) == 0
    created = capsys.readouterr().out
    genesis = Genesis.load(target)
    assert genesis.digest.hex() in created
    assert main(["inspect", str(target)]) == 0
    shown = capsys.readouterr().out
    assert genesis.digest.hex() in shown
    for expected in ("node0   org=mgo  http://127.0.0.1:8100", "node3   org=mgo  http://127.0.0.1:8103",
                     "ev       15", "pv        5", "smes      1", "operator  3", "admin     3",
                     "transaction", "matching", "electricity", "2 of 3 orgs"):
        assert expected in shown


def test_the_default_consortium_follows_the_paper(tmp_path):
    assert main(["init", "--dir", str(tmp_path)]) == 0
    genesis = Genesis.load(tmp_path)
    assert [(n.name, n.org) for n in genesis.nodes] == [("node0", "mgo"), ("node1", "dno"), ("node2", "reg"), ("node3", "mgo")]
    kinds = [i["kind"] for i in genesis.document["identities"]]
    assert (kinds.count("ev"), kinds.count("pv"), kinds.count("smes"), kinds.count("operator")) == (15, 5, 1, 3)
    assert (genesis.consensus.n, genesis.consensus.f) == (4, 1)


def test_the_genesis_holds_only_public_material(tmp_path):
    assert main(["init", "--dir", str(tmp_path)]) == 0
    text = (tmp_path / "genesis.json").read_text()
    assert "PRIVATE KEY" not in text
    key_files = list(tmp_path.glob("identities/*/key.pem")) + list(tmp_path.glob("orgs/*/ca-key.pem"))
    assert len(key_files) == 4 + 21 + 3 + 3 + 3
    assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in key_files)
    assert json.loads(text)["digest"] == Genesis.load(tmp_path).digest.hex()


def test_a_node_count_that_is_not_3f_plus_1_is_refused(tmp_path, capsys):
    assert main(["init", "--dir", str(tmp_path), "--nodes", "5"]) == 2
    assert "n = 3f + 1" in capsys.readouterr().err
    assert not (tmp_path / "genesis.json").exists()


@pytest.mark.parametrize("nodes, reason", [
    ("2", "2 nodes tolerate no Byzantine fault"), ("5", "5 nodes tolerate only f = 1 Byzantine fault, as 4 would"),
    ("11", "11 nodes tolerate only f = 3 Byzantine faults, as 10 would"),
])
def test_the_refusal_of_a_node_count_says_what_it_tolerates(tmp_path, capsys, nodes, reason):
    assert main(["init", "--dir", str(tmp_path), "--nodes", nodes]) == 2
    assert reason in capsys.readouterr().err


@pytest.mark.parametrize("base_port", ["0", "65533", "70000", "-1"])
def test_ports_past_the_range_are_refused_before_anything_is_written(tmp_path, capsys, base_port):
    assert main(["init", "--dir", str(tmp_path / "c"), "--base-port", base_port]) == 2
    assert "a base port from 1 to 65532" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_last_base_port_that_fits_is_taken(tmp_path):
    assert main(["init", "--dir", str(tmp_path), "--base-port", "65532"]) == 0
    assert [node.port for node in Genesis.load(tmp_path).nodes] == [65532, 65533, 65534, 65535]


def test_a_directory_that_cannot_be_made_is_refused_with_the_reason(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["init", "--dir", str(tmp_path / "file" / "c")]) == 2
    assert f"cannot create the consortium directory {tmp_path / 'file' / 'c'}: Not a directory" in capsys.readouterr().err


def test_seven_nodes_tolerate_two_faults(tmp_path):
    assert main(["init", "--dir", str(tmp_path), "--nodes", "7"]) == 0
    genesis = Genesis.load(tmp_path)
    assert (genesis.consensus.n, genesis.consensus.f) == (7, 2)


def test_reinit_is_refused_without_force(tmp_path, capsys):
    assert main(["init", "--dir", str(tmp_path)]) == 0
    first = Genesis.load(tmp_path).digest
    capsys.readouterr()
    assert main(["init", "--dir", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert Genesis.load(tmp_path).digest == first
    assert main(["init", "--dir", str(tmp_path), "--force"]) == 0
    assert Genesis.load(tmp_path).digest != first


def test_inspect_of_a_missing_directory_says_why(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_every_subcommand_has_help():
    for command in ([], ["init"], ["inspect"]):
        result = subprocess.run([sys.executable, "-m", "nodes.cli", *command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0
        assert "usage: p2pchain" in result.stdout


@pytest.mark.parametrize("command, said", [
    (["node", "--name", "node9"], "p2pchain node: no node named 'node9' in the genesis"),
    (["fault", "crash", "node9"], "p2pchain fault: no node named 'node9' in the genesis"),
    (["blocks", "--channel", "transaction", "--node", "node9"], "p2pchain blocks: no node named 'node9' in the genesis"),
    (["submit", "--as", "nobody", "--channel", "transaction", "--contract", "demo", "--function", "f"],
     "p2pchain submit: "),
    (["fault", "crash", "node1", "--admin", "nobody"], "p2pchain fault: "),
])
def test_a_name_the_consortium_does_not_hold_is_one_line_of_reason_not_a_traceback(tmp_path, capsys, command, said):
    assert main(["init", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main([command[0], "--dir", str(tmp_path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(said) and len(err.strip().splitlines()) == 1, err
    if command[0] in ("submit", "fault") and "nobody" in command:
        assert "nobody" in err and "key" in err


def test_status_with_no_node_answering_says_so_and_exits_1(tmp_path, capsys):
    assert main(["init", "--dir", str(tmp_path), "--base-port", str(free_port_block(4))]) == 0
    capsys.readouterr()
    assert main(["status", "--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert set(json.loads(out)) == {"node0", "node1", "node2", "node3"}
    assert "no node answers" in err


@pytest.mark.parametrize("options, status, said", [
    (["--interval", "-1"], 2, "--interval takes seconds >= 0"), (["--interval", "nan"], 2, "--interval takes seconds >= 0"),
    (["--count", "0"], 2, "--count a number >= 1"), (["--count", "1"], 1, "p2pchain trickle: cannot start: no node answers"),
])
def test_trickle_refuses_bad_options_and_says_so_when_no_node_answers(tmp_path, capsys, options, status, said):
    assert main(["init", "--dir", str(tmp_path), "--base-port", str(free_port_block(4))]) == 0
    capsys.readouterr()
    assert main(["trickle", "--dir", str(tmp_path), *options]) == status
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


@pytest.mark.parametrize("call_args, said", [
    ('{"x": 1.5}', "--args has no canonical encoding: x: float 1.5 refused"),
    ('{"x": 18446744073709551616}', "--args has no canonical encoding"),
    ("[" * 40 + "]" * 40, "--args has no canonical encoding"), ("[" * 100_000, "--args is not JSON"),
])
def test_submit_refuses_args_that_cannot_go_on_the_chain_before_asking_a_node(tmp_path, capsys, call_args, said):
    assert main(["init", "--dir", str(tmp_path), "--base-port", str(free_port_block(4))]) == 0
    capsys.readouterr()
    assert main(["submit", "--dir", str(tmp_path), "--as", "ev01", "--channel", "transaction", "--contract", "demo",
                 "--function", "record", "--args", call_args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"p2pchain submit: {said}") and "did not answer" not in err
