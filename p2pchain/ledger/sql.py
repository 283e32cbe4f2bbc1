"""What the SQLite stores of a node (ledger, world state, replica journal, index) share."""

from __future__ import annotations

import sqlite3

__all__ = ["rollback"]


def rollback(conn: sqlite3.Connection) -> None:
    """End a transaction that failed, so that the error that failed it is the one raised.

    On some errors -- a full disk, an I/O error -- SQLite has already rolled the transaction
    back by itself, and a ROLLBACK then fails with "cannot rollback - no transaction is
    active": raised from an ``except`` block, that would replace the cause. A ROLLBACK that
    fails for another reason is passed over for the same reason (the caller re-raises the
    first error; the next BEGIN on this connection then fails and says so).
    """
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
