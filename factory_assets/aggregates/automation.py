"""Automation of the daily aggregates: only for complete days, re-run when the day's table changes.

Why a custom condition: `on_cron` alone fires on half days. A day is complete when every channel is covered
to midnight or the missing span is recorded as a gap; the production table computes exactly that and
records it on each partition's own materialization (`day_complete`, see production/completeness.py). This
condition reads that verdict for the few candidate partitions left by the cheap built-in conditions before
it, so it runs on the user-code server (`use_user_code_server=True` on the automation sensor). The asset
itself refuses an incomplete day too (whoever launches it); this condition only avoids launching such runs.
"""

from __future__ import annotations

from dagster import (
    AssetKey,
    AutomationCondition,
    AutomationContext,
    AutomationResult,
)

from factory_assets.production.completeness import reported_day


class UpstreamDayComplete(AutomationCondition):
    """True for partitions whose latest `upstream` materialization reports the day complete."""

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
            if reported_day(instance, pk, self.upstream).complete:
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
