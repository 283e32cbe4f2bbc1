"""A node that cannot run says why in one line and exits 2 (nodes/commands.py): a key file
that is not a key, its port taken by another program, a store that is not a database (with
the remedy: a node moved aside is rebuilt from its peers), a store the file system refuses
(with that remedy: mend the machine, the stores are sound)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys

from p2pchain.consortium import create_consortium

from ..ports import free_port_block


def _node(directory, name) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodes.cli", "node", "--dir", str(directory), "--name", name],
                          capture_output=True, text=True, timeout=60)


def test_a_node_whose_key_file_is_not_a_key_says_so_and_exits_2(tmp_path):
    create_consortium(tmp_path, nodes=4, base_port=free_port_block(4), now=dt.datetime.now(dt.timezone.utc))
    (tmp_path / "identities" / "node3" / "key.pem").write_text("garbage\n")
    done = _node(tmp_path, "node3")
    assert done.returncode == 2
    assert "node node3: cannot run: KeyFileError:" in done.stderr and "key.pem" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_whose_port_is_taken_says_so_and_exits_2(tmp_path):
    base = free_port_block(4)
    genesis = create_consortium(tmp_path, nodes=4, base_port=base, now=dt.datetime.now(dt.timezone.utc))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", genesis.node("node1").port))
        taken.listen()
        done = _node(tmp_path, "node1")
    assert done.returncode == 2
    assert "node node1: cannot run: OSError:" in done.stderr and "Traceback" not in done.stderr
    assert "another program holds node1's port: is node1 running already?" in done.stderr


def test_a_node_whose_ledger_file_is_damaged_says_so_with_the_remedy_and_exits_2(tmp_path):
    create_consortium(tmp_path, nodes=4, base_port=free_port_block(4), now=dt.datetime.now(dt.timezone.utc))
    stores = tmp_path / "nodes" / "node2"
    (stores / "ledger").mkdir(parents=True)
    (stores / "ledger" / "matching.db").write_bytes(b"not a database " * 500)
    done = _node(tmp_path, "node2")
    assert done.returncode == 2
    assert "node node2: cannot run: DatabaseError:" in done.stderr and "Traceback" not in done.stderr
    assert f"its stores in {stores} are damaged" in done.stderr and "move that directory aside" in done.stderr


def test_a_store_the_file_system_refuses_is_not_called_damaged(tmp_path):
    create_consortium(tmp_path, nodes=4, base_port=free_port_block(4), now=dt.datetime.now(dt.timezone.utc))
    stores = tmp_path / "nodes" / "node1"
    (stores / "ledger" / "transaction.db").mkdir(parents=True)   # SQLite cannot open a directory
    done = _node(tmp_path, "node1")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "node node1: cannot run: OperationalError: unable to open database file" in done.stderr
    assert f"the file system of {stores} refused a write or read (SQLITE_CANTOPEN;" in done.stderr
    assert "damaged" not in done.stderr and "move that directory aside" not in done.stderr


def test_a_full_disk_at_start_is_told_to_make_room(tmp_path):
    import sqlite3

    from nodes.commands import start_remedy

    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count=3")
    try:
        conn.execute("INSERT INTO t VALUES (?)", (bytes(100_000),))
    except sqlite3.OperationalError as exc:
        full = exc
    remedy = start_remedy(full, tmp_path, "node2")
    assert remedy.startswith(f"the file system of {tmp_path} refused a write or read (SQLITE_FULL; ")
    assert "bytes free there): make room" in remedy and "resumes from what it wrote" in remedy
