"""Shared fixtures: a real consortium made once per test session."""

from __future__ import annotations

import datetime as dt

import os

import pytest
from hypothesis import settings

# In CI (CI=true) every property test runs the same examples each time, so a red run can be
# replayed exactly; on a developer's machine hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

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
