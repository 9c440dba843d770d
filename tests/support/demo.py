"""What the session's `make demo` left for the e2e tests (the fixture itself is in tests/e2e/conftest.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEMO_ARGS = "--days 2 --live-seconds 20 --speed 20 --poll-s 3 --lots 60"
"""The smallest demo that still walks every stage: 2 days of history, 20 s live, 60 lots."""


@dataclass(frozen=True)
class DemoRun:
    """A clone on which `make demo` completed: its directory, its stdout and the environment it ran in."""

    clone: Path
    stdout: str
    env: dict[str, str]


def clean_env() -> dict[str, str]:
    """The caller's environment without any factory/Dagster/service setting or active venv: a new user's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FACTORY_", "DAGSTER_", "EDGE_", "INFERENCE_"))
    }
    env.pop("VIRTUAL_ENV", None)
    return env
