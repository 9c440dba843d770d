"""The AI's record in the asset graph: the decision log as an external asset, `model_performance`, its check,
the page and the retrain request - on a real Dagster instance, real files and moto's SNS.

The line (L1, 1 Hz, a crew without the expert: bruno, carla, dmitri) is run by its craftsmen on D0 and D1,
by a sound model (v1, trained on D0-D1) on D2 and by a model trained on shuffled QA scores (v2, promoted by
hand) from D3 on. Both models serve through the route's logic and the server's DecisionLog (see
tests/support/performance.py), with an outage, refusals, lost decisions and retried requests, so every
count of the join is known exactly from the policy's ledger.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    Definitions,
    RunConfig,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    instance_for_test,
    job,
    materialize,
    op,
)

from factory_assets.alerting import AlertNotifierResource, asset_check_failure_alert_sensor
from factory_assets.decisions import DECISION_LOG_KEY, build_decision_log_sensor
from factory_assets.definitions import ALL_ASSETS, ASSETS, defs
from factory_assets.model.schedule import quality_model_job
from factory_assets.performance import (
    CHECK_NAME,
    MODEL_PERFORMANCE_KEY,
    REFUSALS_CHECK_NAME,
    build_retrain_sensor,
    model_performance,
)
from factory_assets.performance.assets import ModelPerformanceConfig
from factory_assets.performance.refusals import MODEL_REASONS
from factory_assets.performance.tables import MODEL_PERFORMANCE
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources import resources_from_env
from factory_core.layout import processed_key
from factory_core.machine import MODEL_CODE_BASE
from factory_core.store import LocalDirStore
from factory_sim.config import NS_PER_S, SimConfig
from factory_sim.productions import productions_table
from factory_sim.schedule import LineTimeline, Production
from quality_model import registry
from quality_model import training as trainer
from tests.support.aws import Topic
from tests.support.performance import (
    Logged,
    Served,
    ServedModelPolicy,
    day_ns,
    decision_log,
    ship_decisions,
    write_raw,
)

LINE = "L1"
D0, D1, D2, D3 = "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"
DAY_NS = 86_400 * NS_PER_S
SIM = SimConfig(seed=7, lines=(LINE,), fast_rate_hz=1.0, crew=("bruno", "carla", "dmitri"))
OP = "performance__model_performance"
LEAD_S = 300.0  # ModelPerformanceConfig.max_lead_s default


@dataclass
class Line:
    root: Path
    instance: DagsterInstance
    ledger: dict[int, Logged]
    truth: list[Production]
    versions: dict[int, str]  # number -> version

    def env(self) -> dict[str, str]:
        return {
            "FACTORY_STORE_URL": str(self.root / "objects"),
            "FACTORY_WAREHOUSE_URL": f"sqlite:///{self.root}/wh.db",
        }

    def resources(self) -> dict[str, Any]:
        return resources_from_env(self.env())

    def store(self) -> LocalDirStore:
        return LocalDirStore(self.root / "objects")

    def rows(self) -> list[dict[str, Any]]:
        return self.resources()["warehouse"].fetch(MODEL_PERFORMANCE)

    def day(self, date: str) -> list[Production]:
        t0 = day_ns(date)
        return [p for p in self.truth if t0 <= p.start_ns < t0 + DAY_NS]


def _train(frame: Any, shuffle: bool) -> trainer.TrainedModel:
    if shuffle:  # the drill's bad model: QA scores permuted across rows
        frame = frame.assign(qa_quality=np.random.default_rng(0).permutation(frame["qa_quality"].to_numpy()))
    return trainer.train(frame, seed=1, quality_rounds=150, fault_rounds=60)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    root = tmp_path_factory.mktemp("ai_record")
    store = LocalDirStore(root / "objects")
    crafted = LineTimeline(SIM, LINE)
    history = productions_table(
        p for p in crafted.productions_between(day_ns(D0), day_ns(D2)) if p.start_ns >= day_ns(D0)
    )
    good = registry.publish(store, good_model := _train(history, shuffle=False))
    bad = registry.publish(store, bad_model := _train(history, shuffle=True), promote_if_not_worse=False)
    registry.promote(store, bad.version, "test: the shuffled model serves from D3")
    log = decision_log(root / "spool")
    # The bad model also knows less than it should: it refuses as out_of_support every lot whose nearest
    # training lot lies beyond half the history's q99 distance (a season's drift, compressed into a day).
    narrow = bad_model.recommender()
    narrow.lot_limit = 0.5 * narrow.lot_q99
    policy = ServedModelPolicy(
        LINE,
        [
            Served(day_ns(D2), good_model.recommender(), good.version, good.version_number),
            Served(day_ns(D3), narrow, bad.version, bad.version_number),
        ],
        log,
        outage=(day_ns(D2) + 10 * 3600 * NS_PER_S, day_ns(D2) + 11 * 3600 * NS_PER_S),
    )
    timeline = LineTimeline(SIM, LINE, policy, policy_since_ns=day_ns(D2))
    write_raw(timeline, store, day_ns(D0) - 3600 * NS_PER_S, day_ns(D3) + DAY_NS + 2 * 3600 * NS_PER_S)
    assert ship_decisions(log, store)
    truth = [
        p for p in timeline.productions_between(day_ns(D0), day_ns(D3) + DAY_NS) if p.start_ns >= day_ns(D0)
    ]
    with instance_for_test() as instance:
        built = Line(
            root,
            instance,
            policy.ledger,
            truth,
            {good.version_number: good.version, bad.version_number: bad.version},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = materialize(
                ASSETS,
                selection="production/productions",
                resources=built.resources(),
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": line_day_key(LINE, D0),
                    "dagster/asset_partition_range_end": line_day_key(LINE, D3),
                },
            )
        assert result.success
        yield built


def run_performance(line: Line, date: str, **config: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return materialize(
            [model_performance],
            partition_key=line_day_key(LINE, date),
            resources=line.resources(),
            instance=line.instance,
            run_config=RunConfig(ops={OP: ModelPerformanceConfig(**config)}),
        )


def check_of(result: Any, name: str = CHECK_NAME) -> Any:
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {CHECK_NAME, REFUSALS_CHECK_NAME}
    return evaluations[name]


def refused_lots(line: Line, first: str, last: str) -> dict[int, set[str]]:
    """From the policy's ledger: lots each version refused of its own accord, logged in [first, last]."""
    t0, t1 = day_ns(first) / NS_PER_S, day_ns(last) / NS_PER_S + 86_400
    out: dict[int, set[str]] = {}
    for p in line.truth:
        e = line.ledger.get(p.production_id)
        if e and not e.lost and e.outcome in MODEL_REASONS and t0 <= e.ts < t1:
            out.setdefault(e.version_number, set()).add(p.lot.lot_id)
    return out


def row_of(line: Line, date: str) -> dict[str, Any]:
    (row,) = [r for r in line.rows() if r["date"] == dt.date.fromisoformat(date)]
    return row


def expected_day(line: Line, date: str) -> dict[str, Any]:
    """What the join must find on `date`, from the policy's ledger and the simulator's truth."""
    t0 = day_ns(date) / NS_PER_S
    tail = t0 + 86_400 - LEAD_S
    prods = line.day(date)
    ai = [p for p in prods if p.set_by_code >= MODEL_CODE_BASE]
    logged = [line.ledger[p.production_id] for p in ai]
    # every request logged on the day (by its ts), including ones for productions of the neighbouring days
    requests = [(e.ts, e) for e in line.ledger.values() if not e.lost] + [
        (e.retried_ts, e) for e in line.ledger.values() if e.retried_ts is not None
    ]
    on_day = [(ts, e) for ts, e in requests if t0 <= ts < t0 + 86_400]
    retries = [e.retried_ts for e in line.ledger.values() if e.retried_ts is not None]
    fallbacks: dict[str, int] = {}
    for _, e in on_day:
        if e.status != 200:
            fallbacks[e.outcome] = fallbacks.get(e.outcome, 0) + 1
    return {
        "productions": len(prods),
        "ai_productions": len(ai),
        "matched_ai_productions": sum(1 for e in logged if not e.lost),
        "unmatched_ai_productions": sum(1 for e in logged if e.lost),
        "unmatched_decisions": sum(1 for ts in retries if t0 <= ts < tail),
        "decisions_near_day_end": sum(1 for ts in retries if tail <= ts < t0 + 86_400)
        + sum(
            1
            for e in line.ledger.values()
            if not e.lost and tail <= e.ts < t0 + 86_400 <= e.start_ns / NS_PER_S
        ),
        "decisions": len(on_day),
        "fallbacks_by_reason": dict(sorted(fallbacks.items())),
        "fallback_productions": sum(
            1
            for p in prods
            if p.set_by_code < MODEL_CODE_BASE
            and p.production_id in line.ledger
            and not line.ledger[p.production_id].lost
        ),
        "predicted": {e.production_id: e.predicted_quality for e in logged if not e.lost},
        "realized": {p.production_id: p.outcome.quality for p in ai},
    }


# --------------------------------------------------------------------------------------------------- tests
def test_decision_log_sensor_records_every_segment_on_its_partition_with_counts(line: Line) -> None:
    sensor = build_decision_log_sensor(
        lines=[LINE], today=lambda: dt.date.fromisoformat(D3) + dt.timedelta(days=1)
    )
    resources = line.resources()
    ctx = build_sensor_context(instance=line.instance, resources=resources)
    result = sensor(ctx)
    events = list(result.asset_events)
    assert events and all(e.asset_key == DECISION_LOG_KEY for e in events)
    per_day: dict[str, int] = {}
    for e in events:
        line_name, date = e.partition.keys_by_dimension["line"], e.partition.keys_by_dimension["date"]
        assert line_name == LINE and e.metadata["key"].value.startswith(f"decisions/line={LINE}/date={date}/")
        per_day[date] = per_day.get(date, 0) + e.metadata["decisions"].value
    logged = [e.ts for e in line.ledger.values() if not e.lost] + [
        e.retried_ts for e in line.ledger.values() if e.retried_ts is not None
    ]
    truth: dict[str, int] = {}
    for ts in logged:
        date = dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()
        truth[date] = truth.get(date, 0) + 1
    assert per_day == truth
    # The cursor is durable: the next tick finds nothing new, a new segment is found alone.
    again = sensor(build_sensor_context(instance=line.instance, resources=resources, cursor=result.cursor))
    assert list(again.asset_events) == []


def test_join_matches_each_decision_to_the_production_it_set_and_counts_the_rest(line: Line) -> None:
    result = run_performance(line, D2)
    assert result.success
    want = expected_day(line, D2)
    row = row_of(line, D2)
    for name in ("productions", "ai_productions", "matched_ai_productions", "unmatched_ai_productions",
                 "unmatched_decisions", "decisions_near_day_end", "decisions", "fallbacks_by_reason",
                 "fallback_productions"):  # fmt: skip
        assert row[name] == want[name], name
    assert row["ai_share"] == pytest.approx(want["ai_productions"] / want["productions"])
    assert row["fallbacks_by_reason"].keys() >= {"deadline_exceeded"}  # the outage hour
    assert row["overridden"] == 0 and row["unreadable_decisions"] == 0
    # realized vs predicted, production by production
    predicted = [want["predicted"][pid] for pid in want["predicted"]]
    realized_matched = [want["realized"][pid] for pid in want["predicted"]]
    assert row["ai_predicted_mean"] == pytest.approx(np.mean(predicted), rel=1e-9)
    assert row["ai_quality_mean"] == pytest.approx(np.mean(list(want["realized"].values())), abs=1e-6)
    assert row["ai_error_mean"] == pytest.approx(np.mean(np.subtract(realized_matched, predicted)), abs=1e-6)
    assert set(row["model_versions"]) == {f"model:v{min(line.versions)}"}
    meta = result.asset_materializations_for_node(OP)[0].metadata
    assert "data:image/png;base64," in meta["predicted_vs_realized"].value
    assert "data:image/png;base64," in meta["ai_vs_craftsmen"].value


def test_sound_model_beats_the_best_craftsman_on_comparable_lots_and_the_check_passes(line: Line) -> None:
    result = run_performance(line, D2)
    evaluation = check_of(result)
    row = row_of(line, D2)
    assert evaluation.passed and evaluation.severity.value == "ERROR"
    assert row["verdict"] == "pass" and row["judged_version"] == f"model:v{min(line.versions)}"
    assert row["window_start"] == dt.date(2026, 2, 5) and row["craftsman_window_start"] == dt.date(2026, 2, 5)
    assert {c["set_by"] for c in row["craftsmen"]} == {"craftsman:02", "craftsman:03", "craftsman:04"}
    assert row["best_craftsman"] == "craftsman:02"  # bruno, the best of this crew
    assert row["ai_window_quality"] > row["best_craftsman_quality"] and row["margin"] > 0


def test_rematerializing_a_partition_replaces_its_row_exactly(line: Line) -> None:
    run_performance(line, D2)
    first = row_of(line, D2)
    run_performance(line, D2)
    assert [r for r in line.rows() if r["date"] == dt.date.fromisoformat(D2)] == [first]


def test_craftsman_window_looks_back_until_each_craftsman_has_fifty_productions(line: Line) -> None:
    run_performance(line, D3, window_days=1)
    row = row_of(line, D3)
    # D3 (and D2) hold only the craftsmen's fallbacks: the window reaches back to D1, the last craftsmen day.
    assert row["window_start"] == dt.date.fromisoformat(D3)
    assert row["craftsman_window_start"] == dt.date.fromisoformat(D1)
    assert all(c["productions"] >= 50 for c in row["craftsmen"])


def test_bad_model_fails_the_error_check_pages_through_sns_and_requests_one_retrain(
    line: Line, topic: Topic
) -> None:
    notifier = AlertNotifierResource(
        sns_topic_arn=topic.arn, sns_endpoint_url=topic.endpoint, min_interval_s=0
    )
    resources = {**line.resources(), "alert_notifier": notifier}
    today = dt.date.fromisoformat(D3) + dt.timedelta(days=1)
    retrain = build_retrain_sensor(today=lambda: today)
    # Both sensors start past the history (deployment must not page or retrain for old evaluations).
    alert_ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    asset_check_failure_alert_sensor(alert_ctx)
    retrain_ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    assert isinstance(retrain(retrain_ctx), SkipReason)

    result = run_performance(line, D3)
    evaluation = check_of(result)
    row = row_of(line, D3)
    bad = f"model:v{max(line.versions)}"
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert row["verdict"] == "fail" and row["judged_version"] == bad
    assert row["ai_window_quality"] < row["best_craftsman_quality"]
    assert bad in evaluation.description and "craftsman:02" in evaluation.description

    alert_ctx2 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=alert_ctx.cursor, definitions=defs
    )
    # It pages for the record (ERROR) and notifies for its own refusals (WARN) of the same run.
    assert "2 failed" in asset_check_failure_alert_sensor(alert_ctx2).skip_message
    messages = {m["Subject"]: m["Message"] for m in topic.messages(expected=2)}
    assert bad in messages[f"[CRITICAL] Asset check failed: performance/model_performance {CHECK_NAME}"]
    assert (
        bad in messages[f"[WARNING] Asset check failed: performance/model_performance {REFUSALS_CHECK_NAME}"]
    )

    retrain_ctx2 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=retrain_ctx.cursor, definitions=defs
    )
    requested = retrain(retrain_ctx2)
    assert isinstance(requested, SensorResult)
    # the record check's request; the bad model also refused lots itself (its own request, below)
    request = next(r for r in requested.run_requests if r.run_key.startswith("retrain:"))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2026-01-01" and request.run_key == f"retrain:2026-01-01:{bad}"
    assert retrain.job_name == quality_model_job.name
    # Nothing new since: no second request (and the run key would dedupe a re-evaluation anyway).
    retrain_ctx3 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=requested.cursor, definitions=defs
    )
    assert isinstance(retrain(retrain_ctx3), SkipReason)


def test_code_location_wires_the_record_its_check_and_sensors() -> None:
    graph = defs.resolve_asset_graph()
    assert {DECISION_LOG_KEY, MODEL_PERFORMANCE_KEY} <= set(graph.get_all_asset_keys())
    assert AssetKey(["production", "productions"]) in graph.get(MODEL_PERFORMANCE_KEY).parent_keys
    assert DECISION_LOG_KEY in graph.get(MODEL_PERFORMANCE_KEY).parent_keys
    names = {s.name for s in defs.sensors}
    assert {"decision_log_sensor", "model_performance_automation", "retrain_on_model_performance",
            "alert_on_asset_check_failure"} <= names  # fmt: skip
    assert any(k.name == CHECK_NAME for k in graph.asset_check_keys)
    wired = {key for a in ALL_ASSETS for key in (a.keys if hasattr(a, "keys") else {a.key})}
    assert model_performance.key in wired and isinstance(defs, Definitions)


def test_production_table_lot_figures_are_what_the_decisions_saw(line: Line) -> None:
    table = pl.read_parquet(line.root / "objects" / processed_key(LINE, D2))
    truth = {p.production_id: p for p in line.day(D2)}
    assert sorted(table["production_id"].to_list()) == sorted(truth)
    for pid, moisture in table.select("production_id", "lot_moisture").iter_rows():
        assert moisture == pytest.approx(truth[pid].lot.moisture, rel=1e-9)


def _prod(pid: int, start: dt.datetime, code: int, quality: float, lot: float) -> dict[str, Any]:
    return {"line": LINE, "production_id": pid, "start": start, "lot_moisture": lot, "lot_hardness": 65.0,
            "lot_density": 1.3, "lot_impurity": 0.6, "set_by": f"model:v{code - MODEL_CODE_BASE}"
            if code >= MODEL_CODE_BASE else f"craftsman:{code:02d}", "set_by_code": code, "qa_quality": quality,
            "fault_code": 0}  # fmt: skip


def _decision(ts: dt.datetime, status: int, lot: float, number: int = 3) -> dict[str, Any]:
    return {"ts": ts.isoformat(), "request_id": ts.isoformat(), "line_id": LINE, "status": status,
            "outcome": "ok" if status == 200 else "model_unavailable", "model_version": "v00003-abc",
            "model_version_number": number, "predicted_quality": 90.0 if status == 200 else None,
            "lot": {"moisture": lot, "hardness": 65.0, "density": 1.3, "impurity": 0.6}}  # fmt: skip


def test_unapplied_answer_is_overridden_and_a_new_version_is_not_judged_on_few_runs() -> None:
    from factory_assets.performance import compute

    t0 = dt.datetime(2026, 3, 4, 12, tzinfo=dt.UTC)
    sec = dt.timedelta(seconds=1)
    prods = compute.productions_for_matching(pl.DataFrame([
        _prod(1, t0, MODEL_CODE_BASE + 3, 91.0, 6.0),  # set by v3
        _prod(2, t0 + 300 * sec, 2, 70.0, 7.0),  # the control system kept the craftsman: overridden
        _prod(3, t0 + 600 * sec, 2, 72.0, 8.0),  # a 503: fallback
        _prod(4, t0 + 900 * sec, MODEL_CODE_BASE + 3, 93.0, 9.0),  # v3, its decision lost
    ]))  # fmt: skip
    decisions, unreadable = compute.decisions_frame([
        _decision(t0 - 2 * sec, 200, 6.0), _decision(t0 - 40 * sec, 200, 6.0),  # a retry: one matches
        _decision(t0 + 298 * sec, 200, 7.0), _decision(t0 + 599 * sec, 503, 8.0),
        _decision(t0 + 700 * sec, 200, 6.5),  # a lot that never ran
        _decision(t0 + 890 * sec, 200, 9.0, number=2),  # another version's answer cannot set a v3 run
        {"ts": "not a time", "lot": {}},
    ])  # fmt: skip
    rule = compute.MatchRule()
    match = compute.match_decisions(prods, decisions, rule)
    assert match.productions["match"].to_list() == ["model", "overridden", "fallback", None]
    assert match.productions["lead_s"][0] == pytest.approx(2.0)
    assert unreadable == 1 and match.unmatched.height == 3  # the retry, the lot that never ran, v2's answer
    row = compute.day_summary(LINE, "2026-03-04", match, rule)
    assert (row["matched_ai_productions"], row["unmatched_ai_productions"], row["overridden"]) == (1, 1, 1)
    assert row["fallbacks_by_reason"] == {"model_unavailable": 1} and row["unmatched_decisions"] == 3
    comparison = compute.compare(
        prods.filter(pl.col("set_by_code") >= MODEL_CODE_BASE), prods, compute.WindowRule()
    )
    assert comparison.verdict == "not_judged" and comparison.judged_version == "model:v3"
    assert "fewer than 50" in comparison.reason


def test_refusals_check_counts_the_serving_versions_own_refusals_and_warns_beyond_the_rule(
    line: Line,
) -> None:
    good = check_of(run_performance(line, D2), REFUSALS_CHECK_NAME)
    assert good.passed and good.metadata["refusals"].value == 0
    assert good.metadata["judged_version"].value == f"model:v{min(line.versions)}"

    first = (dt.date.fromisoformat(D3) - dt.timedelta(days=6)).isoformat()
    refused = refused_lots(line, first, D3)[max(line.versions)]
    assert len(refused) > 3  # the bad model's narrow support, from the ledger
    bad = check_of(run_performance(line, D3), REFUSALS_CHECK_NAME)
    assert not bad.passed and bad.severity.value == "WARN"
    assert bad.metadata["refusals"].value == len(refused)
    assert bad.metadata["judged_version"].value == f"model:v{max(line.versions)}"
    assert bad.metadata["window"].value == f"{first}..{D3}"
    assert f"refused {len(refused)} lots of its own accord" in bad.description
    assert "out_of_support" in bad.description

    tolerant = check_of(run_performance(line, D3, max_refusals=len(refused)), REFUSALS_CHECK_NAME)
    assert tolerant.passed


def _launched(instance: DagsterInstance, tags: dict[str, str]) -> None:
    """A run carrying a request's tags, as the daemon would launch it (the sensor finds runs by tags)."""

    @op
    def noop() -> None:
        return None

    @job(name="launched_retrain")
    def launched() -> None:
        noop()

    assert launched.execute_in_process(instance=instance, tags=tags).success


def test_own_refusals_request_a_retrain_a_retrain_once_per_version_per_window(line: Line) -> None:
    resources = line.resources()
    retrain = build_retrain_sensor(today=lambda: dt.date.fromisoformat(D3) + dt.timedelta(days=1))
    ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    assert isinstance(retrain(ctx), SkipReason)  # past the existing history
    bad = f"model:v{max(line.versions)}"

    run_performance(line, D3)
    ctx2 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=ctx.cursor, definitions=defs
    )
    result = retrain(ctx2)
    assert isinstance(result, SensorResult)
    (refusal_request,) = [r for r in result.run_requests if r.run_key.startswith("refusals:")]
    assert refusal_request.run_key == f"refusals:{bad}:{line_day_key(LINE, D3)}"
    assert refusal_request.partition_key == "2026-01-01"
    assert refusal_request.tags["factory/trigger"] == REFUSALS_CHECK_NAME
    assert refusal_request.tags["factory/failed-version"] == bad
    _launched(line.instance, dict(refusal_request.tags))

    # The same version fails again within the window: no second refusal retrain.
    run_performance(line, D3)
    ctx3 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=result.cursor, definitions=defs
    )
    again = retrain(ctx3)
    requests = again.run_requests if isinstance(again, SensorResult) else []
    assert not [r for r in requests if r.run_key.startswith("refusals:")]
    assert all(r.run_key.startswith("retrain:") for r in requests)  # the record check's, deduped by key


def test_a_ranged_run_records_each_days_own_row_verdict_and_plots_and_judges_the_check_per_day(
    line: Line, topic: Topic
) -> None:
    """D2 (the sound model: pass) and D3 (the shuffled one: fail) in one partition-range run, as a backfill
    chunk runs them: each day's event carries its own figures, each day's check its own verdict; the alert
    names the failing day only and the retrain sensor still requests the serving version's retrain."""
    notifier = AlertNotifierResource(
        sns_topic_arn=topic.arn, sns_endpoint_url=topic.endpoint, min_interval_s=0
    )
    resources = {**line.resources(), "alert_notifier": notifier}
    retrain = build_retrain_sensor(today=lambda: dt.date.fromisoformat(D3) + dt.timedelta(days=1))
    alert_ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    asset_check_failure_alert_sensor(alert_ctx)
    retrain_ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    retrain(retrain_ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = materialize(
            [model_performance], resources=line.resources(), instance=line.instance,
            tags={"dagster/asset_partition_range_start": line_day_key(LINE, D2),
                  "dagster/asset_partition_range_end": line_day_key(LINE, D3)},
        )  # fmt: skip
    assert result.success
    events = {str(m.partition): m.metadata for m in result.asset_materializations_for_node(OP)}
    good, bad = str(line_day_key(LINE, D2)), str(line_day_key(LINE, D3))
    assert set(events) == {good, bad}
    for pk, date in ((good, D2), (bad, D3)):
        md, row = events[pk], row_of(line, date)
        assert md["dagster/row_count"].value == 1, pk  # its own warehouse row, not the run's two
        assert md["verdict"].value == row["verdict"] and md["judged_version"].value == row["judged_version"]
        assert md["matched_ai_productions"].value == row["matched_ai_productions"]
        assert f"| {date} |" in md["summary"].value and (D2 if date == D3 else D3) not in md["summary"].value
        assert md["ai_vs_craftsmen"].value.startswith("![AI vs craftsmen](data:image/png;base64,")
    assert events[good]["verdict"].value == "pass" and events[bad]["verdict"].value == "fail"
    assert events[good]["predicted_vs_realized"].value != events[bad]["predicted_vs_realized"].value
    # The check, judged per day: the passing and the failing day of the same run apart.
    by_partition = {
        e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME
    }
    assert set(by_partition) == {good, bad}
    assert by_partition[good].passed and not by_partition[bad].passed
    assert by_partition[bad].metadata["judged_version"].value == f"model:v{max(line.versions)}"
    assert by_partition[bad].metadata["partition"].value == bad and bad in by_partition[bad].description
    check_key = AssetCheckKey(MODEL_PERFORMANCE_KEY, CHECK_NAME)
    state = line.instance.event_log_storage.get_asset_check_state(
        [(check_key, model_performance.partitions_def)]
    )
    subsets = {
        s.value: set(map(str, v.subset_value.get_partition_keys()))
        for s, v in state[check_key].subsets.items()
    }
    assert subsets["SUCCEEDED"] >= {good} and good not in subsets["FAILED"]
    assert subsets["FAILED"] >= {bad} and bad not in subsets["SUCCEEDED"]
    # The alert names the failing day; the retrain sensor requests the serving version's retrain.
    alert_ctx2 = build_sensor_context(
        instance=line.instance, resources=resources, cursor=alert_ctx.cursor, definitions=defs
    )
    asset_check_failure_alert_sensor(alert_ctx2)
    (message,) = [m for m in topic.messages(expected=2) if m["Subject"].endswith(CHECK_NAME)]
    assert f"Failed partitions: {bad}." in message["Message"] and good not in message["Message"]
    requested = retrain(
        build_sensor_context(
            instance=line.instance, resources=resources, cursor=retrain_ctx.cursor, definitions=defs
        )
    )
    assert isinstance(requested, SensorResult)
    (request,) = [r for r in requested.run_requests if r.run_key.startswith("retrain:")]  # the record check's
    assert request.run_key == f"retrain:2026-01-01:model:v{max(line.versions)}"
    assert request.tags["factory/failed-partition"] == bad


def test_retrain_follows_the_serving_versions_failure_among_a_ranged_runs_failed_days(line: Line) -> None:
    """With a tolerance no model meets, D2 fails for v1 (no longer serving) and D3 for v2 (serving) in one
    run: the days' records carry no order, and the retrain is still requested for the serving version."""
    resources = line.resources()
    retrain = build_retrain_sensor(today=lambda: dt.date.fromisoformat(D3) + dt.timedelta(days=1))
    retrain_ctx = build_sensor_context(instance=line.instance, resources=resources, definitions=defs)
    retrain(retrain_ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = materialize(
            [model_performance], resources=resources, instance=line.instance,
            run_config=RunConfig(ops={OP: ModelPerformanceConfig(tolerance=-100.0)}),
            tags={"dagster/asset_partition_range_start": line_day_key(LINE, D2),
                  "dagster/asset_partition_range_end": line_day_key(LINE, D3)},
        )  # fmt: skip
    record_checks = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME]
    judged = {e.partition: e.metadata["judged_version"].value for e in record_checks}
    assert all(not e.passed for e in record_checks)
    serving = f"model:v{max(line.versions)}"
    assert judged == {
        str(line_day_key(LINE, D2)): f"model:v{min(line.versions)}",
        str(line_day_key(LINE, D3)): serving,
    }
    requested = retrain(
        build_sensor_context(
            instance=line.instance, resources=resources, cursor=retrain_ctx.cursor, definitions=defs
        )
    )
    assert isinstance(requested, SensorResult), requested
    (request,) = [r for r in requested.run_requests if r.run_key.startswith("retrain:")]  # the record check's
    assert request.run_key == f"retrain:2026-01-01:{serving}"
    assert request.tags["factory/failed-partition"] == str(line_day_key(LINE, D3))
