"""The AI's record, computed: decisions joined to the productions they set, and the craftsmen on comparable lots.

Pure polars/numpy (no Dagster, no store): `performance/assets.py` reads the decision log and the production
tables and hands frames to these functions, so every rule below is testable on plain frames.

**Join rule (decision -> production).** The control system asks the inference server when a lot is about
to run and dials the answer in; the decision log records the request time `ts`, the line, the lot's four
figures, the model version and the answer (200 with parameters and predicted quality, or 503 with the
fallback reason). The production table records, per run, its start on the machine_state grid, the lot
figures, and who set it (`set_by_code`: 1000 + N for model version N, 1..99 a craftsman). A decision and a
production are a candidate pair when

* they are on the same line,
* the decision lies at most `max_lead_s` (300 s) before the production's start, or at most `max_lag_s` (5 s)
  after it (the recorded start is the first RUNNING sample, one sample period late at worst; clocks differ),
* all four lot figures agree within `lot_rtol` (relative, 1e-6: the same lot, read back from the sensor),
* and the setter agrees with the answer: a 200 of version N with a production set by model vN ("model"),
  a 503 with a production set by a craftsman ("fallback": the operator decided), or a 200 with a craftsman's
  production ("overridden": the control system did not apply the answer, e.g. its own deadline expired
  or it refused the parameters).

Pairs are then assigned one-to-one, greedily: model and fallback pairs before overridden ones, and the
smallest |start - ts| first. A retried request therefore matches once; its twin stays unmatched.

**Counting, per (line, day) partition.** Productions are the day's table (a production belongs to the day
it starts). Decisions read are those with `ts` in [day - max_lead_s, day + 1): a decision for a run starting
just after midnight was logged the day before. A decision left unmatched counts for the day of its `ts`
(`unmatched_decisions`), except in the day's last `max_lead_s`, where its production may start the next
day (`decisions_near_day_end`, matched there if it does); unmatched ones from before midnight belong to the
previous day and are not counted. AI productions (set by a model) without a matching 200 decision are
`unmatched_ai_productions` (a decision lost or not yet uploaded).

**Comparable craftsmen.** Over a trailing window (`window_days`, 28, ending with the partition's day) the
AI is the serving model: the model version of the newest AI production in the window, judged on its own
productions with a QA score (not on a predecessor's record). Each craftsman's quality is estimated on the
AI's lots: for every AI lot, the mean QA of that craftsman's `k` (5) nearest lots in lot-figure space
(each figure divided by its standard deviation over the window's lots), averaged over the AI lots. A
season or supplier change that shifts the lots therefore does not flatter or penalise either side. The
craftsmen's window starts as long as the AI's and is extended by `window_days` at a time while any
craftsman seen has fewer than `min_craftsman_productions` (50) productions (when the AI runs the line
craftsmen only set fallbacks), up to `max_lookback_days`; the window used is reported. The verdict fails
when the AI's realized mean quality is below the best eligible craftsman's comparable quality (minus
`tolerance`); it is "not_judged" while the serving version has fewer than `min_ai_productions` (50) QA'd
productions or no craftsman is eligible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.spatial import cKDTree

from factory_core.machine import MODEL_CODE_BASE

LOT_FIGURES = ("moisture", "hardness", "density", "impurity")
LOT_COLUMNS = tuple(f"lot_{f}" for f in LOT_FIGURES)
TS = pl.Datetime("us", "UTC")
PRODUCTION_COLUMNS = ("line", "production_id", "start", *LOT_COLUMNS, "set_by", "set_by_code", "qa_quality",
                      "fault_code")  # fmt: skip

DECISION_SCHEMA: dict[str, Any] = {
    "ts": TS,
    "request_id": pl.String,
    "line": pl.String,
    "lot_id": pl.String,
    **{f: pl.Float64 for f in LOT_FIGURES},
    "model_version": pl.String,
    "model_version_number": pl.Int64,
    "status": pl.Int64,
    "outcome": pl.String,
    "predicted_quality": pl.Float64,
    "predicted_fault_risk": pl.Float64,
    "lot_distance": pl.Float64,  # an answer's support.lot_distance (x history's q99); null on refusals
}
MATCH_KINDS = ("model", "fallback", "overridden")


@dataclass(frozen=True)
class MatchRule:
    """How a decision is paired with the production it set (see the module docstring)."""

    max_lead_s: float = 300.0
    max_lag_s: float = 5.0
    lot_rtol: float = 1e-6


@dataclass(frozen=True)
class WindowRule:
    """How the AI is compared with the craftsmen over the trailing window."""

    window_days: int = 28
    min_craftsman_productions: int = 50
    max_lookback_days: int = 364
    min_ai_productions: int = 50
    neighbours: int = 5
    tolerance: float = 0.0


# ------------------------------------------------------------------------------------------------ decisions
def _parse_ts(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def decisions_frame(records: Iterable[Mapping[str, Any]]) -> tuple[pl.DataFrame, int]:
    """Decision-log records as a typed frame, and how many were unreadable (no parseable ts or lot)."""
    rows: list[dict[str, Any]] = []
    unreadable = 0
    for r in records:
        ts = _parse_ts(r.get("ts"))
        lot = r.get("lot") if isinstance(r.get("lot"), Mapping) else {}
        support = r.get("support") if isinstance(r.get("support"), Mapping) else {}
        figures = {f: _num(lot.get(f)) for f in LOT_FIGURES}
        if ts is None or None in figures.values():
            unreadable += 1
            continue
        rows.append(
            {
                "ts": ts,
                "request_id": str(r.get("request_id") or ""),
                "line": str(r.get("line_id") or ""),
                "lot_id": None if r.get("lot_id") is None else str(r.get("lot_id")),
                **figures,
                "model_version": None if r.get("model_version") is None else str(r.get("model_version")),
                "model_version_number": _int(r.get("model_version_number")),
                "status": _int(r.get("status")),
                "outcome": None if r.get("outcome") is None else str(r.get("outcome")),
                "predicted_quality": _num(r.get("predicted_quality")),
                "predicted_fault_risk": _num(r.get("predicted_fault_risk")),
                "lot_distance": _num(support.get("lot_distance")),
            }
        )
    return pl.DataFrame(rows, schema=DECISION_SCHEMA), unreadable


def productions_for_matching(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns of a production table this module needs, typed (start in UTC microseconds)."""
    return frame.select(PRODUCTION_COLUMNS).with_columns(
        pl.col("start").cast(TS), pl.col("set_by_code").cast(pl.Int64), pl.col("fault_code").cast(pl.Int64)
    )


# --------------------------------------------------------------------------------------------------- match
@dataclass
class Match:
    """Productions with their decision (null where none), and the decisions that matched nothing."""

    productions: pl.DataFrame  # production columns + decision columns + match, lead_s
    unmatched: pl.DataFrame  # decisions


def match_decisions(productions: pl.DataFrame, decisions: pl.DataFrame, rule: MatchRule) -> Match:
    """Pair decisions with productions one-to-one by line, lot figures and time (module docstring)."""
    p = productions.with_row_index("p_idx").with_columns(
        (pl.col("start") - pl.duration(microseconds=round(rule.max_lead_s * 1e6))).alias("lo"),
        (pl.col("start") + pl.duration(microseconds=round(rule.max_lag_s * 1e6))).alias("hi"),
    )
    d = decisions.with_row_index("d_idx")
    pairs = (
        p.select("p_idx", "line", "start", "lo", "hi", "set_by_code", *LOT_COLUMNS)
        .join_where(
            d.select(
                "d_idx", pl.col("line").alias("d_line"), "ts", "status", "model_version_number", *LOT_FIGURES
            ),
            pl.col("ts") >= pl.col("lo"),
            pl.col("ts") <= pl.col("hi"),
        )
        .filter(pl.col("line") == pl.col("d_line"))
    )
    same_lot = [
        (pl.col(f"lot_{f}") - pl.col(f)).abs() <= rule.lot_rtol * pl.max_horizontal(pl.col(f).abs(), 1e-9)
        for f in LOT_FIGURES
    ]
    by_model = pl.col("set_by_code") >= MODEL_CODE_BASE
    by_person = (pl.col("set_by_code") > 0) & ~by_model
    kind = (
        pl.when((pl.col("status") == 200) & (pl.col("set_by_code") == MODEL_CODE_BASE + pl.col("model_version_number")))
        .then(pl.lit("model"))
        .when((pl.col("status") != 200) & by_person)
        .then(pl.lit("fallback"))
        .when((pl.col("status") == 200) & by_person)
        .then(pl.lit("overridden"))
    )  # fmt: skip
    pairs = (
        pairs.filter(pl.all_horizontal(same_lot))
        .with_columns(kind.alias("match"), ((pl.col("start") - pl.col("ts")).dt.total_microseconds() / 1e6).alias("lead_s"))
        .filter(pl.col("match").is_not_null())
        .with_columns((pl.col("match") == "overridden").alias("late_priority"), pl.col("lead_s").abs().alias("gap"))
        .sort("late_priority", "gap", "p_idx", "d_idx")
    )  # fmt: skip
    used_p: set[int] = set()
    used_d: set[int] = set()
    chosen: list[tuple[int, int, str, float]] = []
    for pi, di, kind_, lead in pairs.select("p_idx", "d_idx", "match", "lead_s").iter_rows():
        if pi in used_p or di in used_d:
            continue
        used_p.add(pi)
        used_d.add(di)
        chosen.append((pi, di, kind_, lead))
    links = pl.DataFrame(
        chosen, schema={"p_idx": pl.UInt32, "d_idx": pl.UInt32, "match": pl.String, "lead_s": pl.Float64},
        orient="row",
    )  # fmt: skip
    decision_cols = d.select(
        "d_idx",
        pl.col("ts").alias("decision_ts"),
        "request_id",
        "status",
        "outcome",
        "model_version",
        "model_version_number",
        "predicted_quality",
        "predicted_fault_risk",
    )
    joined = (
        p.drop("lo", "hi")
        .join(links, on="p_idx", how="left")
        .join(decision_cols, on="d_idx", how="left")
        .sort("p_idx")
        .drop("p_idx", "d_idx")
    )
    unmatched = d.filter(~pl.col("d_idx").is_in(list(used_d))).drop("d_idx")
    return Match(joined, unmatched)


# ---------------------------------------------------------------------------------------------- day summary
def _mean(series: pl.Series) -> float | None:
    s = series.drop_nulls()
    return float(s.mean()) if s.len() else None  # type: ignore[arg-type]


def _day_start(date: str) -> dt.datetime:
    return dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC)


def decisions_in_scope(decisions: pl.DataFrame, date: str, rule: MatchRule) -> pl.DataFrame:
    """The decisions partition `date` reads: ts in [day - max_lead_s, day + 1)."""
    d0 = _day_start(date)
    lo, hi = d0 - dt.timedelta(seconds=rule.max_lead_s), d0 + dt.timedelta(days=1)
    return decisions.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))


def day_summary(line: str, date: str, match: Match, rule: MatchRule) -> dict[str, Any]:
    """Counts and qualities of one (line, day): the warehouse row's day part (module docstring)."""
    d0 = _day_start(date)
    d1 = d0 + dt.timedelta(days=1)
    tail = d1 - dt.timedelta(seconds=rule.max_lead_s)
    prods = match.productions
    ai = prods.filter(pl.col("set_by_code") >= MODEL_CODE_BASE)
    people = prods.filter((pl.col("set_by_code") > 0) & (pl.col("set_by_code") < MODEL_CODE_BASE))
    matched_ai = ai.filter(pl.col("match") == "model")
    scored = matched_ai.filter(pl.col("qa_quality").is_not_null() & pl.col("predicted_quality").is_not_null())
    errors = scored["qa_quality"] - scored["predicted_quality"]
    fallback_prods = prods.filter(pl.col("match") == "fallback")
    own = pl.col("ts") >= d0
    un = match.unmatched
    # decisions logged on this day (by ts): what the server answered and why it refused
    logged = pl.concat(
        [
            prods.filter(pl.col("decision_ts") >= d0).select(pl.col("status"), pl.col("outcome")),
            un.filter(own).select("status", "outcome"),
        ]
    )
    refused = logged.filter(pl.col("status") != 200)
    reasons = {str(k): int(n) for k, n in refused.group_by("outcome").len().sort("outcome").iter_rows()}
    versions: dict[str, dict[str, Any]] = {}
    for (who,), part in ai.sort("set_by").group_by(["set_by"], maintain_order=True):
        part_scored = part.filter(pl.col("match") == "model")
        versions[str(who)] = {
            "productions": part.height,
            "quality_mean": _mean(part["qa_quality"]),
            "predicted_mean": _mean(part_scored["predicted_quality"]),
            "faults": int((part["fault_code"] != 0).sum()),
        }
    n, n_ai = prods.height, ai.height
    return {
        "line": line,
        "date": dt.date.fromisoformat(date),
        "productions": n,
        "ai_productions": n_ai,
        "ai_share": n_ai / n if n else None,
        "craftsman_productions": people.height,
        "decisions": logged.height,
        "answered": int((logged["status"] == 200).sum()),
        "fallbacks": refused.height,
        "fallbacks_by_reason": reasons,
        "matched_ai_productions": matched_ai.height,
        "unmatched_ai_productions": n_ai - matched_ai.height,
        "unmatched_decisions": un.filter(own & (pl.col("ts") < tail)).height,
        "decisions_near_day_end": un.filter(pl.col("ts") >= tail).height,
        "overridden": prods.filter(pl.col("match") == "overridden").height,
        "fallback_productions": fallback_prods.height,
        "ai_quality_mean": _mean(ai["qa_quality"]),
        "ai_predicted_mean": _mean(scored["predicted_quality"]),
        "ai_error_mean": _mean(errors),
        "ai_abs_error_mean": _mean(errors.abs()),
        "ai_faults": int((ai["fault_code"] != 0).sum()),
        "ai_fault_rate": float((ai["fault_code"] != 0).mean()) if n_ai else None,  # type: ignore[arg-type]
        "craftsman_quality_mean": _mean(people["qa_quality"]),
        "fallback_quality_mean": _mean(fallback_prods["qa_quality"]),
        "model_versions": versions,
    }


# --------------------------------------------------------------------------------------- trailing window
def window_start(date: str, days: int) -> dt.date:
    """First day of the `days`-day window ending with `date` (inclusive)."""
    return dt.date.fromisoformat(date) - dt.timedelta(days=days - 1)


def craftsman_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Productions set by a craftsman, with a QA score."""
    code = pl.col("set_by_code")
    return frame.filter((code > 0) & (code < MODEL_CODE_BASE) & pl.col("qa_quality").is_not_null())


def needs_more_history(craftsmen: pl.DataFrame, minimum: int) -> bool:
    """True while no craftsman was seen, or any craftsman seen has fewer than `minimum` productions."""
    if craftsmen.height == 0:
        return True
    counts = craftsmen.group_by("set_by").len()
    return bool((counts["len"] < minimum).any())


def craftsman_window(
    rows_since: Callable[[dt.date], pl.DataFrame], ai_start: dt.date, day: dt.date, earliest: dt.date,
    rule: WindowRule,
) -> tuple[pl.DataFrame, dt.date]:  # fmt: skip
    """The craftsmen's rows for the comparison on `day` and the first day they come from.

    `rows_since(start)` gives the productions of [start, day]. The window starts with the AI's (`ai_start`)
    and is extended by `window_days` at a time while any craftsman seen has fewer than
    `min_craftsman_productions`, up to `max_lookback_days`, never before `earliest` (the first partition).
    """
    start = ai_start
    while True:
        craftsmen = craftsman_rows(rows_since(start))
        further = start - dt.timedelta(days=rule.window_days)
        if (
            not needs_more_history(craftsmen, rule.min_craftsman_productions)
            or (day - further).days + 1 > rule.max_lookback_days
            or start <= earliest
        ):
            return craftsmen, max(start, earliest)
        start = further


@dataclass
class Comparison:
    """The AI (serving version) against every craftsman on the AI's lots over the trailing window."""

    judged_version: str | None
    ai_productions: int
    ai_quality: float | None
    ai_fault_rate: float | None
    craftsmen: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    verdict: str = "not_judged"  # pass | fail | not_judged
    reason: str = ""

    @property
    def margin(self) -> float | None:
        if self.best is None or self.ai_quality is None:
            return None
        return self.ai_quality - self.best["comparable_quality"]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "margin": self.margin}


def _knn_mean(tree: cKDTree, values: np.ndarray, queries: np.ndarray, k: int) -> float:
    k = min(k, len(values))
    _, idx = tree.query(queries, k=k)
    idx = idx.reshape(len(queries), k)
    return float(values[idx].mean(axis=1).mean())


def compare(ai_window: pl.DataFrame, craftsmen: pl.DataFrame, rule: WindowRule) -> Comparison:
    """The serving version's realized quality vs each craftsman's on the same lots (module docstring).

    `ai_window`: AI productions of the window; `craftsmen`: craftsman productions of the (possibly longer)
    craftsman window. Both need set_by, start, lot_* , qa_quality, fault_code.
    """
    ai_all = ai_window.filter(pl.col("qa_quality").is_not_null())
    if ai_all.height == 0:
        return Comparison(None, 0, None, None, reason="no AI production with a QA score in the window")
    judged = str(ai_all.sort("start")["set_by"][-1])
    ai = ai_all.filter(pl.col("set_by") == judged)
    ai_quality = float(ai["qa_quality"].mean())  # type: ignore[arg-type]
    ai_faults = float((ai["fault_code"] != 0).mean())  # type: ignore[arg-type]
    out = Comparison(judged, ai.height, ai_quality, ai_faults)
    people = craftsman_rows(craftsmen)
    lots = pl.concat([ai.select(LOT_COLUMNS), people.select(LOT_COLUMNS)]).to_numpy().astype(float)
    scale = lots.std(axis=0, ddof=1) if len(lots) > 1 else np.ones(len(LOT_COLUMNS))
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    queries = ai.select(LOT_COLUMNS).to_numpy().astype(float) / scale
    for (who,), part in people.sort("set_by").group_by(["set_by"], maintain_order=True):
        tree = cKDTree(part.select(LOT_COLUMNS).to_numpy().astype(float) / scale)
        q = part["qa_quality"].to_numpy().astype(float)
        f = (part["fault_code"] != 0).to_numpy().astype(float)
        out.craftsmen.append(
            {
                "set_by": str(who),
                "productions": part.height,
                "quality_mean": float(q.mean()),
                "comparable_quality": _knn_mean(tree, q, queries, rule.neighbours),
                "comparable_fault_rate": _knn_mean(tree, f, queries, rule.neighbours),
                "eligible": part.height >= rule.min_craftsman_productions,
            }
        )
    eligible = [c for c in out.craftsmen if c["eligible"]]
    out.best = max(eligible, key=lambda c: c["comparable_quality"]) if eligible else None
    if ai.height < rule.min_ai_productions:
        out.reason = (
            f"{judged}: {ai.height} productions with QA in the window, fewer than {rule.min_ai_productions}"
        )
    elif out.best is None:
        out.reason = f"no craftsman with {rule.min_craftsman_productions} productions in the craftsman window"
    else:
        best = out.best
        failed = ai_quality < best["comparable_quality"] - rule.tolerance
        out.verdict = "fail" if failed else "pass"
        out.reason = (
            f"{judged} realized {ai_quality:.2f} on {ai.height} productions "
            f"{'<' if failed else '>='} best craftsman {best['set_by']} {best['comparable_quality']:.2f} "
            "on the same lots"
        )
    return out
