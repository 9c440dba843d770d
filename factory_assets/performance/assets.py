"""`performance/model_performance`: the AI's daily record per (line, day), in the warehouse and the UI.

Why an asset downstream of the production table and the decision log: the record is only as good as its
two sources, so it sits in the graph with their lineage, runs when a day's table is complete (the daily
aggregates' condition) and again when late decisions or a refreshed table arrive; a re-materialization
replaces the partition's warehouse row (delete + insert in one transaction), so it is idempotent.

The glue reads; performance/compute.py decides (join rule, counting, comparable craftsmen: see there).
Day D reads the decision log of D-1 (its last `max_lead_s`) and D, the production table of D, and the
production tables of the trailing window (and further back for the craftsmen while any of them has too
few productions). The asset check `model_performance_beats_best_craftsman` (ERROR) is judged per partition
(factory_assets/partition_checks.py): it fails on a day whose trailing window shows the serving model's
realized quality below the best craftsman's on the same lots; the alerting sensor pages on it and
performance/retrain.py requests a retrain. So is `model_performance_own_refusals` (WARN, refusals.py).
Every partition's materialization carries its own row, verdict and plots, also in ranged runs and backfills.
"""

import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import polars as pl
from dagster import (
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Config,
    DimensionPartitionMapping,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    MultiPartitionMapping,
    Output,
    TableColumn,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)
from pydantic import Field

from factory_assets.aggregates.automation import aggregates_condition
from factory_assets.decisions.assets import DECISION_LOG_KEY
from factory_assets.markdown import md_table
from factory_assets.model.versions_table import json_safe
from factory_assets.partition_checks import Verdict, partition_check_spec, report
from factory_assets.performance import compute, plots, refusals
from factory_assets.performance.tables import MODEL_PERFORMANCE
from factory_assets.production.assets import MAX_PARTITIONS_PER_RUN, PRODUCTIONS_KEY
from factory_assets.production.plots import png_markdown
from factory_assets.raw.partitions import LINE_DAY_PARTITIONS, configured_start_date, split_key
from factory_assets.resources.object_store import ObjectStoreResource
from factory_assets.resources.warehouse import WarehouseResource
from factory_core.decisionlog import DecisionFormatError, decode_decisions
from factory_core.layout import decisions_date_prefix, processed_key
from factory_core.store import ObjectNotFoundError, ObjectStore

MODEL_PERFORMANCE_KEY = AssetKey(["performance", "model_performance"])
CHECK_NAME = "model_performance_beats_best_craftsman"
REFUSALS_CHECK_NAME = "model_performance_own_refusals"

# Day D reads decisions logged on D-1 (a decision for a run starting just after midnight) and on D.
DECISIONS_TO_PERFORMANCE = MultiPartitionMapping(
    {
        "date": DimensionPartitionMapping(
            "date", TimeWindowPartitionMapping(start_offset=-1, allow_nonexistent_upstream_partitions=True)
        ),
        "line": DimensionPartitionMapping("line", IdentityPartitionMapping()),
    }
)


class ModelPerformanceConfig(Config):
    window_days: int = Field(
        default=28, description="Trailing window (days, ending with the partition's day)"
    )
    min_craftsman_productions: int = Field(
        default=50, description="Extend the craftsmen's window until each has this many productions"
    )
    max_lookback_days: int = Field(default=364, description="Never look back further than this for craftsmen")
    min_ai_productions: int = Field(default=50, description="Judge the serving version from this many on")
    neighbours: int = Field(default=5, description="Nearest craftsman lots averaged per AI lot")
    tolerance: float = Field(default=0.0, description="Quality points the AI may trail the best craftsman by")
    max_lead_s: float = Field(default=300.0, description="A decision at most this long before its production")
    max_lag_s: float = Field(default=5.0, description="... or at most this long after its recorded start")
    lot_rtol: float = Field(default=1e-6, description="Relative tolerance on each lot figure")
    refusal_window_days: int = Field(
        default=refusals.RefusalRule.window_days,
        description="Trailing window (days) over which the serving version's own refusals count",
    )
    max_refusals: int = Field(
        default=refusals.RefusalRule.max_refusals,
        description="Own refusals and far answers of the serving version the window tolerates (more: retrain)",
    )
    far_answer_distance: float = Field(
        default=refusals.RefusalRule.far_answer_distance,
        gt=0.0,
        description="An answer whose support.lot_distance exceeds this counts like a refusal (x history's q99)",
    )

    def match_rule(self) -> compute.MatchRule:
        return compute.MatchRule(self.max_lead_s, self.max_lag_s, self.lot_rtol)

    def refusal_rule(self) -> refusals.RefusalRule:
        return refusals.RefusalRule(
            self.refusal_window_days, self.max_refusals, far_answer_distance=self.far_answer_distance
        )

    def window_rule(self) -> compute.WindowRule:
        return compute.WindowRule(
            self.window_days, self.min_craftsman_productions, self.max_lookback_days, self.min_ai_productions,
            self.neighbours, self.tolerance,
        )  # fmt: skip


class Tables:
    """Production tables of one line read once per run (a ranged run shares the trailing windows)."""

    def __init__(self, store: ObjectStore, line: str) -> None:
        self.store, self.line = store, line
        self._frames: dict[dt.date, pl.DataFrame | None] = {}

    def day(self, date: dt.date) -> pl.DataFrame | None:
        if date not in self._frames:
            try:
                data = self.store.get(processed_key(self.line, date))
            except ObjectNotFoundError:
                self._frames[date] = None
            else:
                self._frames[date] = compute.productions_for_matching(pl.read_parquet(io.BytesIO(data)))
        return self._frames[date]

    def span(self, first: dt.date, last: dt.date) -> tuple[pl.DataFrame, list[dt.date]]:
        """Rows of [first, last] (inclusive) and the days without a table (from the first partition on)."""
        frames, missing = [], []
        earliest = dt.date.fromisoformat(configured_start_date())
        day = max(first, earliest)
        while day <= last:
            frame = self.day(day)
            if frame is None:
                missing.append(day)
            else:
                frames.append(frame)
            day += dt.timedelta(days=1)
        if not frames:
            return compute.productions_for_matching(pl.DataFrame(schema=EMPTY_SCHEMA)), missing
        return pl.concat(frames), missing


EMPTY_SCHEMA: dict[str, Any] = {
    "line": pl.String, "production_id": pl.Int64, "start": compute.TS,
    **{c: pl.Float64 for c in compute.LOT_COLUMNS},
    "set_by": pl.String, "set_by_code": pl.Int64, "qa_quality": pl.Float64, "fault_code": pl.Int64,
}  # fmt: skip


class DecisionDays:
    """Decision-log records of one line read once per run, per logged day: the join reads D-1 and D, the
    refusal window the 7 days up to D, so consecutive partitions of a ranged run share most of them."""

    def __init__(self, store: ObjectStore, line: str) -> None:
        self.store, self.line = store, line
        self._days: dict[dt.date, tuple[list[dict[str, Any]], list[str]]] = {}

    def day(self, day: dt.date) -> tuple[list[dict[str, Any]], list[str]]:
        """Records logged on `day` and the keys that did not decode."""
        if day not in self._days:
            records: list[dict[str, Any]] = []
            bad: list[str] = []
            for key in self.store.list(decisions_date_prefix(self.line, day)):
                try:
                    records.extend(decode_decisions(self.store.get(key)))
                except DecisionFormatError:
                    bad.append(key)  # the decision-log sensor quarantines it with the reason
            self._days[day] = (records, bad)
        return self._days[day]

    def span(self, first: dt.date, last: dt.date) -> tuple[list[dict[str, Any]], list[str]]:
        """Records logged on the days [first, last] and the keys that did not decode."""
        records: list[dict[str, Any]] = []
        bad: list[str] = []
        for i in range((last - first).days + 1):
            day_records, day_bad = self.day(first + dt.timedelta(days=i))
            records += day_records
            bad += day_bad
        return records, bad


def refusals_partition(
    decisions: DecisionDays, line: str, date: str, config: ModelPerformanceConfig
) -> refusals.RefusalVerdict:
    """The serving version's own refusals on `line` over the refusal window ending `date`."""
    rule = config.refusal_rule()
    day = dt.date.fromisoformat(date)
    records, _ = decisions.span(rule.window_first(day), day)
    decisions, _ = compute.decisions_frame(records)
    return refusals.judge(decisions, line, day, rule)


def compute_partition(
    decision_days: DecisionDays, tables: Tables, line: str, date: str, config: ModelPerformanceConfig
) -> tuple[dict[str, Any], compute.Match, compute.Comparison, list[str]]:
    """The warehouse row of one (line, day), the match behind it, the comparison and undecodable keys."""
    match_rule, window = config.match_rule(), config.window_rule()
    day = dt.date.fromisoformat(date)
    today = tables.day(day)
    if today is None:
        raise RuntimeError(
            f"{line}|{date}: production table {processed_key(line, date)!r} is missing; materialize "
            "production/productions first"
        )
    records, bad = decision_days.span(day - dt.timedelta(days=1), day)
    decisions, unreadable = compute.decisions_frame(records)
    decisions = compute.decisions_in_scope(decisions.filter(pl.col("line") == line), date, match_rule)
    match = compute.match_decisions(today, decisions, match_rule)
    row = compute.day_summary(line, date, match, match_rule)
    # trailing window: the AI's days, and the craftsmen's (extended while any has too few productions)
    ai_start = compute.window_start(date, window.window_days)
    span, missing = tables.span(ai_start, day)
    ai_rows = span.filter(pl.col("set_by_code") >= compute.MODEL_CODE_BASE)
    earliest = dt.date.fromisoformat(configured_start_date())
    craftsmen, craftsman_start = compute.craftsman_window(
        lambda start: tables.span(start, day)[0], ai_start, day, earliest, window
    )
    missing = sorted(set(missing) | set(tables.span(craftsman_start, day)[1]))
    comparison = compute.compare(ai_rows, craftsmen, window)
    best = comparison.best or {}
    row.update(
        unreadable_decisions=unreadable,
        window_start=ai_start,
        craftsman_window_start=craftsman_start,
        judged_version=comparison.judged_version,
        ai_window_productions=comparison.ai_productions,
        ai_window_quality=comparison.ai_quality,
        ai_window_fault_rate=comparison.ai_fault_rate,
        best_craftsman=best.get("set_by"),
        best_craftsman_quality=best.get("comparable_quality"),
        best_craftsman_fault_rate=best.get("comparable_fault_rate"),
        margin=comparison.margin,
        verdict=comparison.verdict,
        craftsmen=comparison.craftsmen,
        missing_days=[d.isoformat() for d in missing],
        rules={"match": vars(match_rule), "window": vars(window)},
    )
    return json_safe(row), match, comparison, bad


def _schema() -> TableSchema:
    return TableSchema(columns=[TableColumn(c.name, str(c.type)) for c in MODEL_PERFORMANCE.columns])


SUMMARY_COLUMNS = ("line", "date", "productions", "ai_share", "matched_ai_productions", "unmatched_ai_productions",
                   "unmatched_decisions", "fallbacks", "ai_quality_mean", "ai_predicted_mean", "ai_error_mean",
                   "judged_version", "ai_window_quality", "best_craftsman", "best_craftsman_quality", "verdict")  # fmt: skip


def _summary(rows: list[dict[str, Any]]) -> str:
    return md_table(pl.DataFrame([{k: _text(r[k]) for k in SUMMARY_COLUMNS} for r in rows]))


def _text(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def _craftsmen_table(comparison: compute.Comparison) -> str:
    if not comparison.craftsmen:
        return "_no craftsman production in the window_"
    return md_table(pl.DataFrame(comparison.craftsmen))


def _partition_metadata(
    row: dict[str, Any], match: compute.Match, comparison: compute.Comparison
) -> dict[str, Any]:
    title = f"{row['line']} {row['date']}"
    return {
        "verdict": row["verdict"],
        "reason": comparison.reason,
        "judged_version": row["judged_version"] or "",
        "ai_share": MetadataValue.float(row["ai_share"] or 0.0),
        "matched_ai_productions": row["matched_ai_productions"],
        "unmatched_ai_productions": row["unmatched_ai_productions"],
        "unmatched_decisions": row["unmatched_decisions"],
        "decisions_near_day_end": row["decisions_near_day_end"],
        "fallbacks_by_reason": MetadataValue.json(row["fallbacks_by_reason"]),
        "model_versions": MetadataValue.json(row["model_versions"]),
        "windows": MetadataValue.json(
            {
                "ai": [row["window_start"].isoformat(), row["date"].isoformat()],
                "craftsmen": [row["craftsman_window_start"].isoformat(), row["date"].isoformat()],
                "missing_days": row["missing_days"],
            }
        ),
        "craftsmen_on_ai_lots": MetadataValue.md(_craftsmen_table(comparison)),
        "predicted_vs_realized": MetadataValue.md(
            png_markdown(
                plots.predicted_vs_realized_png(match.productions, f"{title} AI productions"),
                "predicted vs realized quality",
            )
        ),
        "ai_vs_craftsmen": MetadataValue.md(
            png_markdown(plots.comparison_png(comparison, f"{title} trailing window"), "AI vs craftsmen")
        ),
    }


@asset(
    key=MODEL_PERFORMANCE_KEY,
    description=(
        "The AI's record per line and day: every decision of the inference server joined with the "
        "production it set (line, lot figures, decision just before the start), realized vs predicted QA "
        "quality, faults, fallbacks by reason, the share of productions the AI set; and over a trailing "
        "window (28 days) the serving model's realized quality against each craftsman's on the AI's own "
        "lots (nearest lots in lot-figure space). Warehouse table model_performance, one row per partition."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    deps=[PRODUCTIONS_KEY, AssetDep(DECISION_LOG_KEY, partition_mapping=DECISIONS_TO_PERFORMANCE)],
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    automation_condition=aggregates_condition(PRODUCTIONS_KEY),
    check_specs=[
        partition_check_spec(
            CHECK_NAME,
            MODEL_PERFORMANCE_KEY,
            "The serving model's realized mean QA quality over the trailing window is at least the best "
            "craftsman's on the same lots, judged per day (ERROR: pages, and requests a retrain).",
        ),
        partition_check_spec(
            REFUSALS_CHECK_NAME,
            MODEL_PERFORMANCE_KEY,
            "The serving model refused of its own accord (out_of_support, low_predicted_quality, "
            "no_feasible_setting) or answered beyond far_answer_distance at most max_refusals lots over the "
            "trailing refusal window, judged per day (WARN: its lots moved beyond its history; requests a "
            "retrain on the history since, at most once per version and window).",
        ),
    ],
    group_name="performance",
    kinds={"polars", "sql"},
    owners=["team:data-platform"],
    code_version="1",
)
def model_performance(
    context: AssetExecutionContext,
    config: ModelPerformanceConfig,
    object_store: ObjectStoreResource,
    warehouse: WarehouseResource,
) -> Iterator[MaterializeResult | Output[None]]:
    store = object_store.get_store()
    tables: dict[str, Tables] = {}
    decision_days: dict[str, DecisionDays] = {}
    keys = list(context.partition_keys)
    verdicts: list[Verdict] = []
    for pk in keys:
        line, date = split_key(pk)
        line_tables = tables.setdefault(line, Tables(store, line))
        line_decisions = decision_days.setdefault(line, DecisionDays(store, line))
        row, match, comparison, bad = compute_partition(line_decisions, line_tables, line, date, config)
        refused = refusals_partition(line_decisions, line, date, config)
        for key in bad:
            context.log.warning(f"{pk}: decision segment {key} does not decode; left out")
        warehouse.replace_partition([(MODEL_PERFORMANCE, {"line": line, "date": row["date"]}, [row])])
        # Each partition's own event carries its own row, verdict and plots (ranged runs and backfills too).
        context.add_asset_metadata(
            {
                "dagster/row_count": 1,
                "summary": MetadataValue.md(_summary([row])),
                **_partition_metadata(row, match, comparison),
            },
            partition_key=pk,
        )
        verdicts += [_verdict(str(pk), row, comparison), _refusal_verdict(str(pk), refused)]
    # Run-scoped metadata lands on every partition's event: only what holds for each of them.
    yield MaterializeResult(
        metadata={
            "dagster/column_schema": _schema(),
            "warehouse": warehouse.describe(),
            "run_partitions": len(keys),
        }
    )
    # Then both checks' verdicts on each partition, recorded on that partition (see partition_checks.py).
    yield from report(context, MODEL_PERFORMANCE_KEY, verdicts)


def _verdict(partition: str, row: dict[str, Any], comparison: compute.Comparison) -> Verdict:
    """The record check on one partition: fails when the day's trailing window judged the serving model
    worse than the best craftsman. Its metadata names the judged version (what the retrain sensor compares
    with the serving pointer)."""
    return Verdict(
        CHECK_NAME,
        partition,
        passed=row["verdict"] != "fail",
        severity=AssetCheckSeverity.ERROR,
        description=f"{partition}: {comparison.reason}",
        metadata={
            "verdict": row["verdict"],
            "judged_version": row["judged_version"] or "",
            **{
                name: MetadataValue.float(row[name])
                for name in ("ai_window_quality", "best_craftsman_quality", "margin")
                if row[name] is not None  # not judged: no figure rather than NaN
            },
            "best_craftsman": row["best_craftsman"] or "",
            "window": f"{row['window_start']}..{row['date']}",
            "craftsman_window": f"{row['craftsman_window_start']}..{row['date']}",
        },
    )


def _refusal_verdict(partition: str, refused: refusals.RefusalVerdict) -> Verdict:
    """The refusal check on one partition: fails when the serving version refused or answered far out too
    many lots over the window ending that day; its metadata names the version (what the retrain sensor
    reads)."""
    return Verdict(
        REFUSALS_CHECK_NAME,
        partition,
        passed=refused.passed,
        severity=AssetCheckSeverity.WARN,
        description=f"{partition}: {refused.description}",
        metadata={
            "judged_version": "" if refused.version_number is None else f"model:v{refused.version_number}",
            "refusals": refused.refusals,
            "far_answers": refused.far_answers,
            "by_reason": MetadataValue.json(refused.by_reason),
            "answered": refused.answered,
            "window": f"{refused.rule.window_first(refused.day)}..{refused.day}",
            "max_refusals": refused.rule.max_refusals,
        },
    )
