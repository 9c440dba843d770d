"""Automation of the production table: refresh a partition whenever its raw inputs gain objects.

Why not `eager()`: eager only considers the latest time window, but a late raw object must re-materialize
the (older) partitions it touches; and it skips partitions with a missing dependency, while today's table
must refresh before tomorrow's raw partition exists. So: any dependency updated since the partition was
last handled, nothing in progress. Raw events arrive from the raw-objects sensor (every 30 s), the
automation sensor evaluates every 30 s, so a production shows up within a few minutes of its object.
"""

from __future__ import annotations

from dagster import AutomationCondition

PRODUCTIONS_CONDITION = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("raw_objects_landed")
