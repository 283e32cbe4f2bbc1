"""Shared fixtures: a real consortium made once per test session."""

from __future__ import annotations

import datetime as dt

import pytest

from p2pchain.consortium import create_consortium

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="session")
def consortium_dir(tmp_path_factory):
    """A 4-node consortium directory created by the real bootstrap (read-only for tests)."""
    directory = tmp_path_factory.mktemp("consortium")
    create_consortium(directory, now=NOW)
    return directory


@pytest.fixture(scope="session")
def genesis(consortium_dir):
    from p2pchain.genesis import Genesis

    return Genesis.load(consortium_dir)
