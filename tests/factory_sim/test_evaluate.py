"""Paired policy evaluation on held-out lots, with the endpoint reached over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from factory_sim import physics
from factory_sim.control import HttpPolicy, parse_start
from factory_sim.craftsmen import CRAFTSMEN, evaluation_key
from factory_sim.demo import evaluate
from tests.support.endpoint import Strategy, TestingEndpoint

KEY = "eval-key"
SEED = 3
LOTS = 300


@pytest.fixture
def endpoint() -> Iterator[TestingEndpoint]:
    with TestingEndpoint(KEY, Strategy(kind="oracle", noise=0.002)) as ep:
        yield ep


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert evaluate.cli(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_ranks_oracle_expert_novice_and_oracle_like_endpoint(
    endpoint: TestingEndpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACTORY_API_KEY", KEY)
    result = run_cli(["--lots", str(LOTS), "--seed", str(SEED), "--endpoint", endpoint.url], capsys)
    pol = result["policies"]
    assert set(pol) == {"oracle", "endpoint", *(c.name for c in CRAFTSMEN)}
    assert all(rep["n"] == LOTS for rep in pol.values())
    skill = result["by_skill"]
    oracle_q = pol["oracle"]["mean_quality"]
    assert oracle_q >= skill["expert"]["mean_quality"] >= skill["intermediate"]["mean_quality"]
    assert skill["intermediate"]["mean_quality"] >= skill["novice"]["mean_quality"]
    ep = pol["endpoint"]
    assert ep["fallbacks"] == 0 and ep["answered"] == LOTS
    assert 0.0 <= ep["gap_to_oracle"]["quality"] < 1.0  # oracle-like endpoint is close to the oracle
    assert ep["mean_quality"] > skill["expert"]["mean_quality"]
    assert pol["oracle"]["gap_to_oracle"] == {
        "quality": 0.0,
        "fault_rate": 0.0,
        "cycle_time_s": 0.0,
        "energy_kwh": 0.0,
    }
    assert result["ranking_by_quality"][0] == "oracle"
    assert endpoint.by_status == {200: LOTS}  # one request per held-out lot


def test_comparison_is_paired_and_deterministic() -> None:
    """Same lots and same outcome keys for every policy: re-running gives identical numbers, and a
    policy that decides exactly like the oracle has exactly zero gap on every metric."""
    start = parse_start("2026-02-01T00:00:00Z")
    args = (SEED, 60, start, 7.0, 0.0, ["anna", "dmitri"])
    first = evaluate.evaluate(*args, progress=False)
    assert evaluate.evaluate(*args, progress=False) == first
    # The oracle's tally equals a hand-made replay with the documented per-lot key.
    lot_times = [start + i * round(7 * 86400 * 10**9 / 60) for i in range(60)]
    outs = [
        physics.outcome(lot, physics.optimum(lot), evaluation_key(SEED, i))
        for i, lot in ((i, physics.heldout_lot(SEED, i, lot_times[i])) for i in range(60))
    ]
    assert first["policies"]["oracle"]["mean_quality"] == round(sum(o.quality for o in outs) / 60, 4)


def test_noise_free_endpoint_matches_oracle_exactly(endpoint: TestingEndpoint) -> None:
    endpoint.set(noise=0.0)
    http = HttpPolicy(endpoint.url, KEY, 2.0, "L1")
    try:
        result = evaluate.evaluate(
            SEED, 40, parse_start("2026-01-01T00:00:00Z"), 7.0, 0.0, ["endpoint"], http=http, progress=False
        )
    finally:
        http.close()
    assert result["policies"]["endpoint"]["gap_to_oracle"] == {
        "quality": 0.0,
        "fault_rate": 0.0,
        "cycle_time_s": 0.0,
        "energy_kwh": 0.0,
    }


def test_unavailable_endpoint_is_counted_and_replaced_by_craftsmen(
    endpoint: TestingEndpoint, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint.set(kind="unavailable")
    monkeypatch.setenv("EVAL_KEY", KEY)
    argv = ["--lots", "50", "--seed", str(SEED), "--endpoint", endpoint.url, "--api-key-env", "EVAL_KEY"]
    result = run_cli([*argv, "--policies", "endpoint,expert"], capsys)
    ep = result["policies"]["endpoint"]
    assert ep["fallbacks"] == 50 and ep["fallback_reasons"] == {"model_unavailable": 50}
    assert ep["answered"] == 0
    assert set(result["policies"]) == {"oracle", "endpoint", "anna"}
    assert ep["gap_to_oracle"]["quality"] > 1.0  # craftsmen, not the model, set these lots


def test_drift_moves_the_held_out_lots_a_season_ahead(capsys: pytest.CaptureFixture[str]) -> None:
    base = run_cli(["--lots", "30", "--seed", str(SEED), "--policies", "oracle", "--no-progress"], capsys)
    drifted = run_cli(
        ["--lots", "30", "--seed", str(SEED), "--policies", "oracle", "--drift-days", "90"], capsys
    )
    assert base["first_lot_at"] == "2026-01-01T00:00:00Z"
    assert drifted["first_lot_at"] == "2026-04-01T00:00:00Z"
    assert drifted["policies"]["oracle"]["mean_quality"] != base["policies"]["oracle"]["mean_quality"]


def test_policy_selection_expands_skills_and_names_bad_input() -> None:
    assert evaluate.select_policies("novice", False) == [c.name for c in CRAFTSMEN if c.skill == "novice"]
    assert evaluate.select_policies(None, True)[-1] == "endpoint"
    with pytest.raises(ValueError, match="--policies: unknown policy 'wizard'"):
        evaluate.select_policies("expert,wizard", False)
    with pytest.raises(ValueError, match="needs --endpoint"):
        evaluate.select_policies("endpoint", False)
