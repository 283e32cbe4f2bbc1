"""Fixtures for the runtime tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for runtime_helpers, whatever the import mode

from runtime_helpers import Runner  # noqa: E402

from p2pchain.runtime import TxResult  # noqa: E402


@pytest.fixture
def run() -> Callable[..., TxResult]:
    return Runner()
