"""The refusal rule (factory_assets/performance/refusals.py) on plain decision frames: what counts as the
serving version's own refusal, over which days, and how often a retrain may be requested."""

from __future__ import annotations

import datetime as dt

import polars as pl

from factory_assets.performance import compute, refusals

RULE = refusals.RefusalRule(window_days=7, max_refusals=3)
DAY = dt.date(2026, 4, 20)


def decisions(*rows: tuple) -> pl.DataFrame:
    """(line, ISO time, version number, status, outcome[, the answer's lot distance]) as the decision
    log's typed frame, each row a lot of its own; the distance is logged as the server logs it."""
    records = [
        {"ts": ts, "line_id": line, "lot": {"moisture": 1, "hardness": 1, "density": 1, "impurity": 1},
         "lot_id": f"lot-{i}", "model_version_number": v, "status": status, "outcome": outcome,
         **({"support": {"lot_distance": far[0], "leverage": 1.0}} if far else {})}
        for i, (line, ts, v, status, outcome, *far) in enumerate(rows)
    ]  # fmt: skip
    frame, unreadable = compute.decisions_frame(records)
    assert unreadable == 0
    return frame


def refusal(ts: str, version: int = 2, line: str = "L1", reason: str = "out_of_support") -> tuple:
    return (line, ts, version, 503, reason)


def answer(ts: str, version: int = 2, line: str = "L1", lot_distance: float = 1.0) -> tuple:
    return (line, ts, version, 200, "ok", lot_distance)


def test_four_own_refusals_in_the_window_fail_and_three_pass() -> None:
    three = [refusal(f"2026-04-{d}T08:00:00Z") for d in (14, 17, 20)]
    verdict = refusals.judge(decisions(*three, answer("2026-04-20T09:00:00Z")), "L1", DAY, RULE)
    assert verdict.passed and verdict.refusals == 3 and verdict.answered == 1 and verdict.version_number == 2
    four = decisions(*three, refusal("2026-04-20T23:59:59Z"), answer("2026-04-20T09:00:00Z"))
    failed = refusals.judge(four, "L1", DAY, RULE)
    assert not failed.passed and failed.refusals == 4
    assert failed.description == (
        "model:v2 refused 4 lots of its own accord in 2026-04-14..2026-04-20 (out_of_support 4; 1 answered, "
        "0 of them beyond 4x history's lot distance): beyond the tolerated 3"
    )


def test_only_the_window_days_count_its_first_day_included() -> None:
    frame = decisions(
        *[refusal("2026-04-13T23:59:59Z")] * 5,  # the day before the window
        *[refusal("2026-04-21T00:00:00Z")] * 5,  # the day after
        refusal("2026-04-14T00:00:00Z"),
    )
    assert refusals.judge(frame, "L1", DAY, RULE).refusals == 1


def test_the_models_own_reasons_count_operational_ones_other_lines_and_answers_do_not() -> None:
    frame = decisions(
        refusal("2026-04-19T10:00:00Z", reason="out_of_support"),
        refusal("2026-04-19T10:00:00Z", reason="low_predicted_quality"),
        refusal("2026-04-19T10:00:00Z", reason="no_feasible_setting"),
        *[refusal("2026-04-19T10:00:00Z", reason="deadline_exceeded")] * 5,
        *[refusal("2026-04-19T10:00:00Z", reason="model_unavailable")] * 5,
        *[refusal("2026-04-19T10:00:00Z", line="L2")] * 5,
        *[answer("2026-04-19T11:00:00Z")] * 50,
    )
    verdict = refusals.judge(frame, "L1", DAY, RULE)
    assert verdict.passed and verdict.refusals == 3 and verdict.answered == 50
    assert verdict.by_reason == {"out_of_support": 1, "low_predicted_quality": 1, "no_feasible_setting": 1}


def test_answers_beyond_the_far_distance_count_like_refusals_and_nearer_ones_do_not() -> None:
    """A lot answered from the prior's extrapolation beyond 4x history's q99 distance is a lot the model
    is about to stop knowing: it counts towards a retrain like a refusal (once per lot)."""
    far = [answer("2026-04-19T10:00:00Z", lot_distance=d) for d in (4.5, 5.9)]
    near = [answer("2026-04-19T11:00:00Z", lot_distance=d) for d in (0.2, 3.99, 4.0)]
    verdict = refusals.judge(decisions(*far, *near, refusal("2026-04-19T12:00:00Z")), "L1", DAY, RULE)
    assert (verdict.refusals, verdict.far_answers, verdict.answered) == (1, 2, 5)
    assert verdict.by_reason == {"out_of_support": 1, "far_answer": 2}
    assert verdict.passed  # 3 counted, 3 tolerated
    strict = refusals.RefusalRule(window_days=7, max_refusals=0)
    assert not refusals.judge(decisions(far[0], *near), "L1", DAY, strict).passed
    assert refusals.judge(decisions(*near), "L1", DAY, strict).passed
    never = refusals.RefusalRule(window_days=7, max_refusals=0, far_answer_distance=float("inf"))
    assert refusals.judge(decisions(*far), "L1", DAY, never).passed
    assert "2 of them beyond 4x history's lot distance" in verdict.description


def test_a_predecessors_refusals_do_not_count_against_the_version_now_serving() -> None:
    frame = decisions(
        *[refusal("2026-04-15T10:00:00Z", version=1)] * 20,
        answer("2026-04-18T10:00:00Z", version=2),
        refusal("2026-04-19T10:00:00Z", version=2),
    )
    verdict = refusals.judge(frame, "L1", DAY, RULE)
    assert verdict.version_number == 2 and verdict.refusals == 1 and verdict.passed


def test_no_model_decision_in_the_window_passes_with_no_version() -> None:
    verdict = refusals.judge(decisions(refusal("2026-03-01T10:00:00Z")), "L1", DAY, RULE)
    assert verdict.passed and verdict.version_number is None and "no model" in verdict.description


def test_a_retrain_is_requested_at_most_once_per_version_per_window() -> None:
    assert refusals.should_request(DAY, [], RULE)
    assert not refusals.should_request(DAY, [DAY], RULE)
    assert not refusals.should_request(DAY, [DAY - dt.timedelta(days=6)], RULE)
    assert refusals.should_request(DAY, [DAY - dt.timedelta(days=7)], RULE)
    assert refusals.should_request(DAY, [DAY + dt.timedelta(days=1)], RULE)  # a later request is not "before"


def test_a_lot_refused_twice_counts_once_and_lots_without_an_id_each_count() -> None:
    frame = decisions(*[refusal("2026-04-19T10:00:00Z")] * 4)
    twice = frame.with_columns(pl.Series("lot_id", ["a", "a", None, None]))
    assert refusals.judge(twice, "L1", DAY, RULE).refusals == 3
