"""Automation of the daily aggregates: only for complete days, re-run when the day's table changes.

Why a custom condition: `on_cron` alone fires on half days. A day is complete when every channel is covered
to midnight or the missing span is recorded as a gap; the production table computes exactly that and
records the complete partitions in its materialization metadata (`complete_partitions`). This condition
reads that metadata for the few candidate partitions left by the cheap built-in conditions before it, so it
runs on the user-code server (`use_user_code_server=True` on the automation sensor).
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
)


class UpstreamDayComplete(AutomationCondition):
    """True for partitions whose latest `upstream` materialization lists them as complete."""

    def __init__(self, upstream: AssetKey) -> None:
        self.upstream = upstream

    @property
    def name(self) -> str:
        return f"day_complete({self.upstream.to_user_string()})"

    @property
    def description(self) -> str:
        return "the day's production table reports every channel covered to midnight (or gap-recorded)"

    def evaluate(self, context: AutomationContext) -> AutomationResult:  # type: ignore[override]
        instance = context.asset_graph_view.instance
        complete: set[str] = set()
        for pk in context.candidate_subset.expensively_compute_partition_keys():
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=self.upstream, asset_partitions=[pk]), limit=1
            ).records
            if not records:
                continue
            mat = records[0].asset_materialization
            listed = mat.metadata.get("complete_partitions") if mat else None
            if listed is not None and pk in (listed.value or []):
                complete.add(pk)
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(complete)
        return AutomationResult(context=context, true_subset=true_subset)


def aggregates_condition(upstream: AssetKey) -> AutomationCondition:
    """Upstream updated since last handled, nothing in progress, and the day complete."""
    return (
        AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
        & UpstreamDayComplete(upstream)
    ).with_label("complete_day_updated")
