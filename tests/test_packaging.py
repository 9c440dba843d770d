"""Packaging rules the factory server relies on: a small collector install and lock-step pins."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dagster", "xgboost", "polars", "pandas")


def test_edge_collector_never_imports_heavy_packages() -> None:
    """Every edge_collector module imports without pulling the cloud-side stack."""
    code = (
        "import importlib, pkgutil, sys, edge_collector\n"
        "for m in pkgutil.walk_packages(edge_collector.__path__, 'edge_collector.'):\n"
        "    importlib.import_module(m.name)\n"
        f"heavy = sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"edge_collector pulled in: {out.stdout.strip()}"


def test_core_dependencies_exclude_cloud_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("dagster", "xgboost", "polars", "pandas"):
        assert name not in core, f"{name} must stay out of the core dependencies"


def test_lock_pins_dagster_family_in_lockstep() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pins = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in lock.splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    for name in ("dagster", "dagster-webserver", "dagster-graphql", "dagster-pipes", "dagster-shared"):
        assert pins[name] == "1.13.27", name
    for name in ("dagster-aws", "dagster-postgres"):
        assert pins[name] == "0.29.27", name
    assert pins["xgboost"] == "3.2.0"


def test_console_scripts_have_help() -> None:
    bindir = Path(sys.executable).parent
    for script in ("factory-sim", "edge-collector", "inference-server"):
        out = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{script} --help failed: {out.stderr}"
        assert "usage" in out.stdout.lower(), script
