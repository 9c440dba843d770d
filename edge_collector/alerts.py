"""The collector's own alerts: a recorded gap, an upload backlog that keeps growing.

Why apart from the notifier (factory_core.alerting): what is worth paging for, and how it is worded, is
the collector's business; delivery (SNS, e-mail, rate limits) is shared with Dagster and the server.
"""

from __future__ import annotations

import time

from factory_core.alerting import Alert, Notifier, Severity, build_alert
from factory_core.rawformat import GapRecord


def _utc_text(t_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_ns / 1e9))


def gap_alert(gap: GapRecord, *, source: str = "edge-collector") -> Alert:
    """The collector's alert for a recorded gap; one dedup key per (line, channel)."""
    lost = gap.lost_to_seq - gap.lost_from_seq
    return build_alert(
        f"Gap on line {gap.line}: {gap.channel_name} lost {lost} samples",
        f"Samples [{gap.lost_from_seq}, {gap.lost_to_seq}) of {gap.channel_name} (channel {gap.channel_id}) "
        f"from {_utc_text(gap.lost_from_ns)} to {_utc_text(gap.lost_to_ns)} were lost ({gap.reason}). "
        "They are listed in gaps/ of the object store.",
        severity=Severity.WARNING,
        dedup_key=f"gap:{gap.line}:{gap.channel_name}",
        source=source,
        details={"line": gap.line, "channel": gap.channel_name, "lost_samples": lost, "reason": gap.reason},
    )


def backlog_alert(
    line: str,
    oldest_age_s: float,
    threshold_s: float,
    *,
    backlog_files: int | None = None,
    backlog_bytes: int | None = None,
    critical_after_s: float | None = None,
    source: str = "edge-collector",
) -> Alert:
    """The collector's alert when the oldest un-uploaded spool file is older than a threshold."""
    critical = critical_after_s is not None and oldest_age_s >= critical_after_s
    details: dict[str, object] = {
        "line": line,
        "oldest_age_s": f"{oldest_age_s:.0f}",
        "threshold_s": threshold_s,
    }
    if backlog_files is not None:
        details["backlog_files"] = backlog_files
    if backlog_bytes is not None:
        details["backlog_bytes"] = backlog_bytes
    return build_alert(
        f"Upload backlog on line {line} is {oldest_age_s / 60:.0f} min old",
        f"The oldest spool file of line {line} has waited {oldest_age_s:.0f} s for the object store "
        f"(threshold {threshold_s:.0f} s). Samples are safe in the spool; check the uplink and S3 "
        "credentials (edge_upload_errors_total).",
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        dedup_key=f"backlog:{line}",
        source=source,
        details=details,
    )


def notify_gap(notifier: Notifier, gap: GapRecord) -> bool:
    """Alert for a gap record the collector just wrote to its ledger. Never raises."""
    return notifier.build_and_send(lambda: gap_alert(gap, source=notifier.source), f"gap:{gap.line}")


def notify_backlog(
    notifier: Notifier,
    line: str,
    oldest_age_s: float,
    threshold_s: float,
    *,
    backlog_files: int | None = None,
    backlog_bytes: int | None = None,
    critical_after_s: float | None = None,
) -> bool:
    """Alert for an upload backlog older than ``threshold_s`` (critical past ``critical_after_s``)."""
    return notifier.build_and_send(
        lambda: backlog_alert(
            line,
            oldest_age_s,
            threshold_s,
            backlog_files=backlog_files,
            backlog_bytes=backlog_bytes,
            critical_after_s=critical_after_s,
            source=notifier.source,
        ),
        f"backlog:{line}",
    )
