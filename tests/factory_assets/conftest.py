"""Fixtures of the factory_assets tests: one simulated history per session, a fresh store per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory_core.store import LocalDirStore
from tests.support.assets import DAY, write_history


@pytest.fixture(scope="session")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days (DAY and NEXT_DAY) of line L1 written by factory-sim history into a local directory."""
    root = tmp_path_factory.mktemp("history")
    write_history(str(root), DAY, 2)
    return root


@pytest.fixture
def local_store(history_dir: Path, tmp_path: Path) -> Iterator[LocalDirStore]:
    """A private copy of the history (tests may add, corrupt or quarantine objects)."""
    root = tmp_path / "objects"
    shutil.copytree(history_dir, root)
    yield LocalDirStore(root)
