"""External asset `decisions/decision_log`: what the inference server decided, one event per landed segment.

Why external (AssetSpec), like the raw data: no Dagster run writes decisions; the inference server spools
every request/answer and ships zstd JSON-lines segments to decisions/line={line}/date={day}/. The
`decision_log_sensor` records each new segment as a materialization of its (line, date) partition, so the
AI's record (`performance/model_performance`) sits in the asset graph with its lineage, and its automation
can react to decisions landing.
"""

from __future__ import annotations

from dagster import AssetKey, AssetSpec

from factory_assets.raw.partitions import LINE_DAY_PARTITIONS

DECISION_LOG_KEY = AssetKey(["decisions", "decision_log"])

decision_log = AssetSpec(
    key=DECISION_LOG_KEY,
    description=(
        "The inference server's decision log: every POST /v1/recommendations with its lot, model version, "
        "status (200 recommendation / 503 fallback to the operator with the reason), parameters and "
        "predicted quality, as zstd JSON-lines segments under decisions/line={line}/date={YYYY-MM-DD}/ "
        "(the date of the decision's UTC timestamp). One materialization per landed segment, recorded by "
        "the `decision_log_sensor` with decision counts, fallback reasons and model versions."
    ),
    partitions_def=LINE_DAY_PARTITIONS,
    group_name="decisions",
    kinds={"s3", "zstd"},
    owners=["team:data-platform"],
    metadata={
        "key_layout": "decisions/line={line}/date={YYYY-MM-DD}/{instance}-{HHMMSS}-{sha256[:16]}.jsonl.zst"
    },
)
