"""`quality_model`: the quarterly XGBoost quality/fault model, trained, evaluated, published, registered.

Why the asset only glues: what a model is lives in quality_model.training, which history it learns from
and the gate that decides whether it serves in quality_model.retraining (the same code the backtest
runs), and how it is stored and promoted in quality_model.registry. This asset picks every complete
line-day of history up to the quarter's end (daily aggregates + the production table's own verdict),
reads their production tables (Parquet via polars from the object store resource), trains on all of it,
evaluates the recipe on the gate's held-out tail, publishes with the judged-decisions gate, and registers
the decision in the warehouse. A rejected version stays in models/versions/ and in model_versions, with why.
"""

import datetime as dt
import time
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    asset,
)
from pydantic import Field

from factory_assets.aggregates.assets import AGGREGATES_KEY
from factory_assets.aggregates.tables import DAILY_LINE_AGGREGATES, DAILY_SET_BY_BREAKDOWN
from factory_assets.model import report
from factory_assets.model.data import (
    TrainingSet,
    best_baseline,
    holdout_baselines,
    load_training_set,
    shuffle_quality,
    window_baselines,
    window_bounds,
)
from factory_assets.model.partitions import QUARTERLY_PARTITIONS
from factory_assets.model.versions_table import json_safe, register_version
from factory_assets.production.completeness import PRODUCTIONS_KEY, reported_day
from factory_assets.raw.partitions import line_day_key
from factory_assets.resources.object_store import ObjectStoreResource
from factory_assets.resources.warehouse import WarehouseResource
from factory_core.layout import POINTER_KEY, VERSIONS_PREFIX
from quality_model import retraining
from quality_model.registry import PublishResult, publish, read_pointer
from quality_model.training import TrainedModel, TrainingDataError, evaluate, to_pandas, train

QUALITY_MODEL_KEY = AssetKey(["model", "quality_model"])
# A quarter depends on every (line, day) of its days: the date dimension mapped by time window.
QUARTER_TO_LINE_DAYS = MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")


class QualityModelConfig(Config):
    window_days: int | None = Field(
        default=None,
        description="Train on the trailing N days before the quarter's end (default: all history so far)",
    )
    quality_rounds: int = Field(default=150, description="Boosting rounds of the quality regressor")
    fault_rounds: int = Field(default=150, description="Boosting rounds of the fault classifier")
    seed: int = Field(default=0, description="Training seed (same data + seed = same version)")
    promote_if_not_worse: bool = Field(default=True, description="False: publish without promoting")
    promotion_tolerance: float = Field(
        default=0.02,
        description="Only for a history too short to judge decisions: relative held-out RMSE margin",
    )
    shuffle_quality_drill: bool = Field(
        default=False,
        description="Drill: train on QA scores permuted across rows (held-out scores stay true); the "
        "resulting model must be rejected by the promotion gate",
    )


@asset(
    key=QUALITY_MODEL_KEY,
    description=(
        "Quarterly model (XGBoost forward models of QA quality and fault risk, UBJ, and the best "
        "producers' prior) trained on every complete line-day of history up to the quarter's end, "
        "evaluated on the gate's held-out last weeks, published to models/versions/{version}/ and promoted "
        "to models/serving.json only if a judge fitted on those weeks rates its decisions not worse than "
        "the serving model's. Registered in the warehouse table model_versions (promoted or rejected, "
        "with the reason)."
    ),
    partitions_def=QUARTERLY_PARTITIONS,
    deps=[
        AssetDep(PRODUCTIONS_KEY, partition_mapping=QUARTER_TO_LINE_DAYS),
        AssetDep(AGGREGATES_KEY, partition_mapping=QUARTER_TO_LINE_DAYS),
    ],
    group_name="model",
    kinds={"xgboost", "polars"},
    owners=["team:data-platform"],
    code_version="1",
)
def quality_model(
    context: AssetExecutionContext,
    config: QualityModelConfig,
    object_store: ObjectStoreResource,
    warehouse: WarehouseResource,
) -> MaterializeResult:
    quarter = context.partition_key
    tw = context.partition_time_window
    history_start = QUARTERLY_PARTITIONS.start.date()
    start, end = window_bounds(history_start, tw.end.date(), config.window_days)
    store = object_store.get_store()
    training = load_training_set(
        store,
        warehouse.fetch(DAILY_LINE_AGGREGATES),
        start,
        end,
        incomplete=lambda days: _incomplete_days(context.instance, days),
    )
    used = training.used_days
    if not used:
        raise Failure(
            description=f"quarter {quarter}: no complete line-day with daily aggregates in [{start}, {end}); "
            "materialize productions and daily_line_aggregates for its days first",
            metadata={"line_days": MetadataValue.md(report.days_table(training))},
        )
    context.log.info(f"{quarter}: training on {training.frame.height} productions of {len(used)} line-days")
    frame = shuffle_quality(training.frame, config.seed) if config.shuffle_quality_drill else training.frame
    rounds = {"quality_rounds": config.quality_rounds, "fault_rounds": config.fault_rounds}
    try:
        rows = retraining.training_window(to_pandas(frame), None)
        truth = retraining.training_window(to_pandas(training.frame), None)
        model = train(rows, holdout_fraction=0.0, seed=config.seed, **rounds)
        # the recipe trained before the gate's tail, judged and evaluated on it (the true QA)
        gated = retraining.gate_candidate(rows, config.seed, **rounds)
        evaluated = gated if gated is not None else model
        if gated is not None:
            evaluated.holdout = retraining.tail_split(truth)[1]
        started = time.perf_counter()
        evaluation = evaluate(evaluated, evaluated.holdout if len(evaluated.holdout) else truth.tail(500))
        eval_seconds = time.perf_counter() - started
        model.metadata["metrics"] = evaluated.metadata.get("metrics", {})
    except TrainingDataError as exc:
        raise Failure(
            description=f"quarter {quarter}: {exc}",
            metadata={"line_days": MetadataValue.md(report.days_table(training))},
        ) from exc
    # The artefact's metadata is strict JSON (NaN refused): e.g. fault AUC is NaN without held-out faults.
    model.metadata["metrics"] = json_safe(model.metadata["metrics"])
    held_out = holdout_baselines(model.holdout)
    in_window = window_baselines(warehouse.fetch(DAILY_SET_BY_BREAKDOWN), set(used))
    best = best_baseline(in_window)
    lines = sorted({line for line, _ in used})
    model.metadata["training_context"] = json_safe(
        {
            "partition": quarter,
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "line_days": len(used),
            "lines": lines,
            "shuffle_quality_drill": config.shuffle_quality_drill,
            "best_craftsman": best,
            "versus_craftsmen": retraining.versus_craftsmen(gated, truth, config.seed, **rounds),
        }
    )
    before = read_pointer(store)
    model.holdout = evaluated.holdout
    result = publish(
        store,
        model,
        promote_if_not_worse=config.promote_if_not_worse,
        tolerance=config.promotion_tolerance,
        judge=(lambda serving: retraining.judge(gated, serving, truth, config.seed, **rounds))
        if gated is not None
        else None,
    )
    after = read_pointer(store)
    (context.log.info if result.promoted else context.log.warning)(f"{result.version}: {result.reason}")
    replay = evaluation["replay"]
    registered = register_version(
        warehouse,
        {
            "version": result.version,
            "version_number": result.version_number,
            "partition": quarter,
            "trained_at": dt.datetime.now(dt.UTC),
            "window_start": start,
            "window_end": end,
            "lines": ",".join(lines),
            "days": len(used),
            "rows_train": model.metadata["rows"]["train"],
            "rows_holdout": model.metadata["rows"]["holdout"],
            "quality_rmse": json_safe(float(evaluation["quality_rmse"])),
            "quality_mae": json_safe(float(evaluation["quality_mae"])),
            "predicted_uplift": json_safe(float(replay["predicted_uplift"])),
            "metrics": {**model.metadata["metrics"], "publish": result.metrics},
            "promoted": result.promoted,
            "reason": result.reason,
        },
    )
    return MaterializeResult(
        metadata=_metadata(
            training, model, evaluation, eval_seconds, result, before, after, held_out, in_window, best
        )
        | {
            "warehouse_row": MetadataValue.json(
                json_safe({k: str(v) for k, v in registered.items() if k != "metrics"})
            )
        }
    )


def _incomplete_days(instance: Any, days: list[tuple[str, dt.date]]) -> dict[tuple[str, dt.date], str]:
    """Line-days whose latest production table reports them incomplete, with what is missing."""
    reports = {day: reported_day(instance, str(line_day_key(day[0], day[1].isoformat()))) for day in days}
    return {day: r.what_is_missing() for day, r in reports.items() if not r.complete}


def _metadata(
    training: TrainingSet,
    model: TrainedModel,
    evaluation: dict[str, Any],
    eval_seconds: float,
    result: PublishResult,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    held_out: list[dict[str, Any]],
    in_window: dict[str, dict[str, Any]],
    best: dict[str, Any] | None,
) -> dict[str, Any]:
    extra = {"best_craftsman_quality": float(best["window_quality_mean"])} if best else {}
    serving_before = before["version"] if before else None
    serving_after = after["version"] if after else None
    replay = evaluation["replay"]
    return {
        "version": result.version,
        "version_number": result.version_number,
        "promoted": result.promoted,
        "reason": result.reason,
        "decision": MetadataValue.md(report.decision_table(result, serving_before, serving_after)),
        "serving_version": serving_after or "",
        "previous_serving_version": serving_before or "",
        "artefact": MetadataValue.path(f"{VERSIONS_PREFIX}{result.version}/"),
        "serving_pointer": MetadataValue.path(POINTER_KEY),
        "training_window": MetadataValue.json(
            {
                "start": training.start.isoformat(),
                "end": training.end.isoformat(),
                "line_days": len(training.used_days),
            }
        ),
        "line_days": MetadataValue.md(report.days_table(training)),
        "rows_train": model.metadata["rows"]["train"],
        "rows_holdout": model.metadata["rows"]["holdout"],
        "train_seconds": round(model.train_seconds, 3),
        "evaluate_seconds": round(eval_seconds, 3),
        "quality_rmse": float(evaluation["quality_rmse"]),
        "quality_mae": float(evaluation["quality_mae"]),
        "predicted_quality_recommended": float(replay["mean_predicted_recommended"]),
        "predicted_quality_operator": float(replay["mean_predicted_operator"]),
        "metrics": report.metrics_json(evaluation),
        "publish_metrics": MetadataValue.json(json_safe(result.metrics)),
        "errors": MetadataValue.md(report.errors_table(evaluation)),
        "replay": MetadataValue.md(report.replay_table(evaluation)),
        "fault_calibration": MetadataValue.md(report.calibration_table(evaluation)),
        "feature_importance": MetadataValue.md(report.importance_table(evaluation)),
        "craftsman_baselines": MetadataValue.md(report.baseline_table(held_out, in_window)),
        "predicted_vs_actual": report.plot_markdown(evaluation),
        **extra,
    }
