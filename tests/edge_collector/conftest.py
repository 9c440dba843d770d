"""Fixtures of the edge_collector tests: a rig with a moto S3 bucket and a spool directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector import collector_rig


@pytest.fixture
def rig(tmp_path: Path, s3_bucket: str, moto_server: str) -> Iterator[dict[str, Any]]:
    with collector_rig(tmp_path, s3_bucket, moto_server) as r:
        yield r
