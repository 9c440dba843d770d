"""`make demo` from a clean clone, as a new user runs it (fewer days, same path), and the analysis guide.

The clone installs its own .venv from the lock with `make`, then runs the whole demo: history, the real
collector against the live simulator, Dagster (sensor, productions, aggregates, model), the inference
server pulling the model and the closed loop (the session fixture `demo_run`, tests/e2e/conftest.py).
docs/analysis.md's snippets then run on what it produced.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from factory_sim.craftsmen import BY_NAME
from tests.support.demo import DemoRun

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_the_model_against_every_craftsman(demo_run: DemoRun) -> None:
    clone, stdout = demo_run.clone, demo_run.stdout
    table = stdout[stdout.index("policy  ") :]
    for name in ("model (inference server)", "oracle", "anna (expert)", "emil (novice)"):
        assert name in table, name
    assert re.search(r"mean quality\s+faults\s+cycle time s\s+energy kWh", table)
    summary = json.loads((clone / "var" / "demo-summary.json").read_text())
    assert summary["pipeline"]["raw_objects_recorded"] > 0
    assert summary["pipeline"]["model_version"]
    # the model's checks ran with it (the model page shows verdicts, not "Not evaluated")
    assert summary["pipeline"]["model"]["checks"]["model_artefact_verifies"] is True
    assert set(summary["pipeline"]["model"]["checks"]) == {
        "model_artefact_verifies",
        "model_beats_best_craftsman",
    }
    assert summary["run"]["model_decisions"] > 0
    policies = summary["evaluate"]["policies"]
    assert any(p.get("kind") == "endpoint" for p in policies.values())
    assert "make up" in stdout


def test_demo_reports_progress_through_the_dagster_stage(demo_run: DemoRun) -> None:
    stdout = demo_run.stdout
    stage = stdout[stdout.index("3/5 Dagster") : stdout.index("4/5 inference")]
    for step in ("loading the Dagster definitions", "recording every raw object", "handing the raw sensor over",
                 "per-production tables", "training the quality model"):  # fmt: skip
        assert step in stage, step


def test_demo_leaves_the_embedded_defaults_populated(demo_run: DemoRun) -> None:
    var = demo_run.clone / "var"
    assert list((var / "objects" / "processed").rglob("productions.parquet"))
    assert (var / "objects" / "models" / "serving.json").is_file()
    assert (var / "warehouse.db").is_file()
    assert not list((var / "edge-spool").rglob("*.fsr")), "the collector left un-uploaded batches"


def test_analysis_guide_snippets_run_on_the_demo_output(demo_run: DemoRun) -> None:
    """Every Python block of docs/analysis.md runs against the demo's store and warehouse."""
    var = demo_run.clone / "var"
    text = (ROOT / "docs" / "analysis.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    cwd = Path.cwd()
    os.chdir(var.parent)  # the guide's paths are relative to the repository root (var/...)
    try:
        for block in blocks:
            exec(compile(block, "docs/analysis.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert namespace["by_operator"].height > 0  # type: ignore[attr-defined]
    assert namespace["daily"].height > 0  # type: ignore[attr-defined]
    # the demo loaded the factory's roster: the craftsmen read by name, the complete days' lots by id
    named = namespace["named"]
    assert named["name"].drop_nulls().n_unique() >= 2  # type: ignore[attr-defined]
    assert named["lot_id"].drop_nulls().len() > 0  # type: ignore[attr-defined]


def test_the_analysis_notebook_runs_on_the_demo_output_with_what_make_demo_installed(
    demo_run: DemoRun,
) -> None:
    """The `analysis` extra (pyarrow, duckdb) comes with `make demo`: the clone's own .venv executes
    docs/analysis.ipynb on the demo's store and warehouse, names and lot ids included."""
    clone = demo_run.clone
    script = (
        "import nbformat, sys\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read('docs/analysis.ipynb', as_version=4)\n"
        "NotebookClient(nb, timeout=300, kernel_name='python3').execute()\n"
        "out = '\\n'.join(str(o.get('text', '')) + str(o.get('data', {}).get('text/plain', ''))\n"
        "                for c in nb.cells if c.cell_type == 'code' for o in c.outputs)\n"
        "sys.stdout.write(out)\n"
    )
    env = {**demo_run.env, "ANALYSIS_VAR": str(clone / "var")}
    done = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c", script], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert any(name in done.stdout for name in BY_NAME)  # craftsmen by name from the crew table
    assert "Error" not in done.stdout
