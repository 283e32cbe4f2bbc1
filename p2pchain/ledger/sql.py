"""What the SQLite stores of a node (ledger, world state, replica journal, index) share."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["transaction"]


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
    """One explicit transaction on ``conn`` (autocommit mode): committed when the block ends,
    rolled back if it raises -- and the error that failed it is the one raised.

    On some errors -- a full disk, an I/O error -- SQLite has already rolled the transaction
    back by itself, and a ROLLBACK then fails with "cannot rollback - no transaction is
    active": raised from the ``except``, that would replace the cause. A ROLLBACK that fails
    for another reason is passed over for the same reason (the next BEGIN on this connection
    then fails and says so).
    """
    conn.execute(begin)
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
