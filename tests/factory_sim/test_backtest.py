"""`factory-sim backtest`: its per-production table is what the Dagster pipeline extracts from the same
simulated days, its report keeps the documented names, and its command line validates its flags.

One module-scoped run (a quarter of craftsmen, then a quarter of the model it trained) serves the tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from factory_assets.production.compute import build_day, day_bounds
from factory_core.layout import batch_key
from factory_core.machine import MODEL_CODE_BASE
from factory_core.rawformat import encode_batch
from factory_core.store import LocalDirStore
from factory_sim.channels import build_channels, seq_at, t_of_seq
from factory_sim.config import NS_PER_S, SimConfig
from factory_sim.demo.backtest import Backtest, _sample, fault_probability, quarter_starts
from factory_sim.history import build_batch
from factory_sim.productions import productions_table

SEED, LINE = 11, "BT5"
DAY = "2026-04-09"  # a day of the model-run quarter
OBJECT_NS = 300 * NS_PER_S


@pytest.fixture(scope="module")
def backtest() -> Backtest:
    bt = Backtest(SEED, LINE, quarters=2, lots=400, progress=False)
    bt.run()
    return bt


def test_quarters_are_consecutive_calendar_quarters() -> None:
    assert quarter_starts(dt.date(2026, 11, 15), 3) == [
        dt.date(2026, 10, 1), dt.date(2027, 1, 1), dt.date(2027, 4, 1), dt.date(2027, 7, 1),
    ]  # fmt: skip


def test_report_keeps_the_documented_names(backtest: Backtest) -> None:
    report = backtest.report
    assert {"seed", "line", "quarters", "oracle_gap_mean"} <= set(report)
    first, second = report["quarters"]
    assert (first["quarter"], first["run_by"], second["quarter"], second["run_by"]) == (
        "2026-01-01", "craftsmen", "2026-04-01", "model",
    )  # fmt: skip
    crew = ["anna", "bruno", "carla", "dmitri", "emil"]
    for q in (first, second):
        assert {"quarter", "run_by", "lots", "quality", "fault_rate", "fallback_rate", "fallbacks"} <= set(q)
        assert {"line", "oracle", "best_craftsman", *crew} <= set(q["quality"])
        assert {"line", "best_craftsman", *crew} <= set(q["fault_rate"])
        assert q["lots"] == 400
        assert q["quality"]["oracle"] >= q["quality"]["best_craftsman"]
    assert {"promoted", "candidate_next_quality", "serving_next_quality", "right"} <= set(second["gate"])
    assert {"verdict", "truth", "agrees", "days_judged", "days"} <= set(second["model_performance"])
    assert second["gate"]["promoted"] is True  # the first model: nothing served before it
    assert 0.0 <= second["fallback_rate"] <= 1.0
    assert report["oracle_gap_mean"] == pytest.approx(
        second["quality"]["oracle"] - second["quality"]["line"], abs=1e-4
    )


def test_the_model_runs_the_second_quarter_and_the_craftsmen_the_first(backtest: Backtest) -> None:
    q2 = dt.datetime(2026, 4, 1, tzinfo=dt.UTC).timestamp() * NS_PER_S
    first = [p for p in backtest.history if p.start_ns < q2]
    second = [p for p in backtest.history if p.start_ns >= q2]
    assert all(p.set_by_code < MODEL_CODE_BASE for p in first)
    by_model = sum(p.set_by_code >= MODEL_CODE_BASE for p in second) / len(second)
    assert by_model > 0.9, by_model  # the rest: refusals, decided by the craftsman on shift
    assert backtest.report["quarters"][1]["fallback_rate"] == pytest.approx(1.0 - by_model, abs=1e-9)


def test_backtest_table_equals_what_dagster_extracts_from_the_same_days(
    backtest: Backtest, tmp_path: Path
) -> None:
    """The backtest's history, written as raw objects (as the collector or `factory-sim history` would)
    and extracted by the production asset's code, gives the same productions, lots, settings, setters,
    QA scores and faults: what the model learns from in the backtest is what it learns from in Dagster."""
    assert backtest.timeline is not None
    channels = build_channels(SimConfig(seed=SEED, lines=(LINE,), fast_rate_hz=1.0))
    fast = next(c for c in channels if c.name == "machine_state")
    store = LocalDirStore(tmp_path / "objects")
    t0, t1 = day_bounds(DAY)
    for start in range(t0 - 3600 * NS_PER_S, t1 + 3600 * NS_PER_S, OBJECT_NS):
        batch = build_batch(backtest.timeline, channels, "all", start, start + OBJECT_NS)
        if batch is not None:
            store.put(batch_key(batch), encode_batch(batch))
    frame = build_day(store, LINE, DAY).frame.to_pandas()
    # a production belongs to the day of its start on the fast channel's grid (the extraction's rule)
    on_grid = [p for p in backtest.history if t0 <= t_of_seq(fast, seq_at(fast, p.start_ns)) < t1]
    table = productions_table(on_grid)
    assert frame["production_id"].tolist() == table["production_id"].tolist()
    columns = ["lot_moisture", "lot_hardness", "lot_density", "lot_impurity", "sp_temperature",
               "sp_feed_rate", "sp_pressure", "set_by_code", "qa_quality", "fault_code"]  # fmt: skip
    for column in columns:
        assert frame[column].tolist() == table[column].tolist(), column
    assert (table["set_by_code"] >= MODEL_CODE_BASE).mean() > 0.9  # a day the model ran


def test_cli_refuses_bad_flags_naming_them() -> None:
    for argv, message in (
        (["--quarters", "1"], "--quarters must be >= 2"),
        (["--crew", "anna,zoe"], "crew: names must be distinct craftsmen"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "factory_sim.demo.backtest", *argv, "--no-progress"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 2 and message in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "factory_sim.cli", "backtest", "--help"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "--json" in out.stdout and "--lots" in out.stdout


def test_both_checks_agree_with_the_truth_in_the_model_run_quarter(backtest: Backtest) -> None:
    """The model beats the best craftsman here; the check recorded at training and the daily
    model_performance check (run on the history as run, every week and on the last day) must say so."""
    second = backtest.report["quarters"][1]
    assert second["check"]["agrees"] is True
    perf = second["model_performance"]
    assert (perf["verdict"], perf["agrees"]) == ("pass", True)
    assert perf["days_judged"] >= 10 and perf["days_disagreeing_with_truth"] == []


def test_the_models_own_refusals_and_far_answers_retrain_it_within_the_quarter_at_most_weekly_per_version(
    backtest: Backtest,
) -> None:
    """The refusal rule runs day by day: a retrain only on a day whose window holds a refusal or an answer
    beyond 4x of the serving version, at most one per version per 7 days, and a promoted candidate sets
    the lots from the next day."""
    retrains = backtest.report["quarters"][1]["refusal_retrains"]
    assert retrains, "the first model refuses or answers far out some of the spring's lots"
    by_version: dict[str, list[dt.date]] = {}
    for event in retrains:
        assert event["refusals"] + event["far_answers"] >= 1 and event["right"] in (True, False, None)
        by_version.setdefault(event["serving"], []).append(dt.date.fromisoformat(event["day"]))
    for days in by_version.values():
        assert all((b - a).days >= 7 for a, b in itertools.pairwise(days))
    for event in (e for e in retrains if e["promoted"]):
        day = dt.datetime.fromisoformat(event["day"]).replace(tzinfo=dt.UTC)
        before = day.timestamp() * NS_PER_S
        after = (day + dt.timedelta(days=1)).timestamp() * NS_PER_S
        model_set = [p for p in backtest.history if p.set_by_code >= MODEL_CODE_BASE]
        old = max(p.set_by_code for p in model_set if p.start_ns < before)
        later = [p.set_by_code for p in model_set if p.start_ns >= after]
        # the candidate, a newer version, sets the next lots (none left: a retrain on the history's last day)
        assert not later or later[0] > old


def test_expected_fault_rates_are_the_settings_true_fault_probabilities_on_the_scored_lots(
    backtest: Backtest,
) -> None:
    """A quarter's fault count is a handful of rare draws; the expected rate is the mean true probability
    of the settings on the same lots: the line's from its own settings, the oracle's the lowest (the
    optimum is where both fault scores are zero), the model's own against the best craftsman's."""
    second = backtest.report["quarters"][1]
    q2 = int(dt.datetime(2026, 4, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
    q3 = int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
    scored = _sample([p for p in backtest.history if q2 <= p.start_ns < q3], 400)
    expected = second["expected_fault_rate"]
    line = sum(fault_probability(p.lot, p.params) for p in scored) / len(scored)
    assert expected["line"] == pytest.approx(line, rel=1e-3)
    crew = ("anna", "bruno", "carla", "dmitri", "emil")
    assert all(expected["oracle"] <= expected[name] for name in crew)
    assert expected["emil"] > 100 * expected["anna"]  # a novice's thumb rule faults where anna does not
    own = second["model_set"]
    assert own["expected_fault_rate"] > 0.0 and own["best_craftsman_expected_fault_rate"] > 0.0


def test_the_models_own_settings_are_held_against_the_best_craftsman_on_exactly_those_lots(
    backtest: Backtest,
) -> None:
    first, second = backtest.report["quarters"]
    assert first["model_set"] is None  # the craftsmen ran the first quarter
    q2 = int(dt.datetime(2026, 4, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
    q3 = int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()) * NS_PER_S
    scored = _sample([p for p in backtest.history if q2 <= p.start_ns < q3], 400)
    mine = [p for p in scored if p.set_by_code >= MODEL_CODE_BASE]
    own = second["model_set"]
    assert own["lots"] == len(mine) and 0 < len(mine) < len(scored) + 1
    assert own["faults"] == sum(p.outcome.fault is not None for p in mine)
    assert own["quality"] == pytest.approx(sum(p.outcome.quality for p in mine) / len(mine))
    assert own["best_craftsman_quality"] < own["quality"]  # anna, replayed on the model's lots
