"""The bucket layout: every prefix of the object store, and every key builder and parser.

Why one module: the edge collector, the history generator, the Dagster assets, the model registry, the
inference server's decision log and the quarantine all write or list keys in one bucket. Each builds
and parses them here, so a key written by one part is read by the others (docs/data-layout.md is
tested against this module).

Every key is deterministic: a function of what the object holds, so a retried write lands on the same
key and stays idempotent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factory_core.rawformat import GapRecord, RawBatch, RawFormatError, check_name

RAW_PREFIX = "raw/"
"""Sensor samples as uploaded by the edge collector: raw/line=/date=/hour=/*.fsr"""
GAPS_PREFIX = "gaps/"
"""Gap records (samples the collector could not save): gaps/line=/date=/*.fsg"""
PROCESSED_PREFIX = "processed/"
"""Per-production tables written by Dagster: processed/line=/date=/productions.parquet"""
MODELS_PREFIX = "models/"
"""Model artefacts (models/versions/{version}/) and the serving pointer (models/serving.json)."""
DECISIONS_PREFIX = "decisions/"
"""The inference server's decision log: decisions/line=/date=/*.jsonl.zst"""
QUARANTINE_PREFIX = "quarantine/"
"""Corrupt raw/gap objects, copied with a reason file: quarantine/{original key}"""
MANIFESTS_PREFIX = "manifests/"
"""What the raw sensor recorded per partition and tick: manifests/{raw|gaps}/line=/date=/{digest}.json"""
MASTER_PREFIX = "master/"
"""The factory's master data (not sensor data): master/crew.csv, the crew roster (factory_core/crew.py)"""
PREFIXES: dict[str, str] = {
    "raw": RAW_PREFIX,
    "gaps": GAPS_PREFIX,
    "processed": PROCESSED_PREFIX,
    "models": MODELS_PREFIX,
    "decisions": DECISIONS_PREFIX,
    "quarantine": QUARANTINE_PREFIX,
    "manifests": MANIFESTS_PREFIX,
    "master": MASTER_PREFIX,
}
"""Every top-level prefix of the bucket, by kind (docs/data-layout.md lists each one)."""

RAW_SUFFIX = ".fsr"
GAPS_SUFFIX = ".fsg"
PRODUCTIONS_FILE = "productions.parquet"
VERSIONS_PREFIX = f"{MODELS_PREFIX}versions/"
POINTER_KEY = f"{MODELS_PREFIX}serving.json"
CREW_KEY = f"{MASTER_PREFIX}crew.csv"
"""The crew roster the factory maintains: code (as on the machine's set_by channel), name, skill."""
_VERSION_RE = re.compile(r"^v(\d{5})-[0-9a-f]{12}$")


@dataclass(frozen=True)
class KeyInfo:
    """What an object key says about its object (parsed by `parse_key`)."""

    kind: str  # "raw" | "gaps" | "processed" | "models" | "master"
    line: str | None
    date: dt.date | None
    hour: int | None  # raw only
    group: str | None  # raw only
    start_ns: int | None  # raw/gaps: earliest sample (lost sample for gaps), microsecond precision
    digest: str | None
    key: str


def _utc(t_ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=t_ns // 1000)


def _digest(obj: object) -> str:
    canonical = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def batch_start_ns(batch: RawBatch) -> int:
    """Timestamp of the batch's earliest sample; this decides the object's date/hour partition."""
    firsts = [int(np.asarray(b.t_ns[0])) for b in batch.blocks if len(b.t_ns)]
    if not firsts:
        raise RawFormatError("batch has no samples: an empty batch has no partition and is never stored")
    return min(firsts)


def batch_key(batch: RawBatch) -> str:
    """raw/line=/date=/hour=/{line}_{group}_{start}_{digest}.fsr; digest over (line, group, seq ranges)."""
    check_name("line", batch.line)
    check_name("group", batch.group)
    start = _utc(batch_start_ns(batch))
    ranges = sorted([b.channel_id, b.first_seq, len(b.t_ns)] for b in batch.blocks)
    digest = _digest({"line": batch.line, "group": batch.group, "channels": ranges})
    return (
        f"{RAW_PREFIX}line={batch.line}/date={start:%Y-%m-%d}/hour={start:%H}/"
        f"{batch.line}_{batch.group}_{start:%Y%m%dT%H%M%S%f}_{digest}{RAW_SUFFIX}"
    )


def gap_key(line: str, gaps: Sequence[GapRecord]) -> str:
    """gaps/line=/date=/{line}_{start}_{digest}.fsg; date of the earliest lost sample."""
    check_name("line", line)
    if not gaps:
        raise RawFormatError("a gap object needs at least one gap record")
    start = _utc(min(g.lost_from_ns for g in gaps))
    ranges = sorted([g.channel_id, g.lost_from_seq, g.lost_to_seq] for g in gaps)
    digest = _digest({"line": line, "gaps": ranges})
    return (
        f"{GAPS_PREFIX}line={line}/date={start:%Y-%m-%d}/{line}_{start:%Y%m%dT%H%M%S%f}_{digest}{GAPS_SUFFIX}"
    )


def _date_str(date: dt.date | str) -> str:
    if isinstance(date, dt.datetime):
        raise RawFormatError("date must be a datetime.date or 'YYYY-MM-DD', not a datetime")
    if isinstance(date, dt.date):
        return date.isoformat()
    if isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(date).isoformat()
    raise RawFormatError(f"date {date!r} is not a valid 'YYYY-MM-DD' date")


def date_prefix(kind: str, line: str, date: dt.date | str) -> str:
    """Prefix listing every object of one line-day partition: 'raw' | 'gaps' | 'processed'."""
    if kind not in ("raw", "gaps", "processed"):
        raise RawFormatError(f"kind {kind!r} has no date partitions (expected raw, gaps or processed)")
    return f"{kind}/line={check_name('line', line)}/date={_date_str(date)}/"


def hour_prefix(line: str, date: dt.date | str, hour: int) -> str:
    """Prefix of one hour of raw objects (for narrow listings)."""
    if not 0 <= hour <= 23:
        raise RawFormatError(f"hour {hour} is outside 0..23")
    return f"{date_prefix('raw', line, date)}hour={hour:02d}/"


def processed_key(line: str, date: dt.date | str) -> str:
    """Where Dagster writes a line-day's production table."""
    return f"{date_prefix('processed', line, date)}{PRODUCTIONS_FILE}"


_RAW_KEY_RE = re.compile(
    r"^raw/line=(?P<line>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
    r"(?P<line2>[^/]+)_(?P<group>[^/_]+)_(?P<start>\d{8}T\d{12})_(?P<digest>[0-9a-f]{16})\.fsr$"
)
_GAP_KEY_RE = re.compile(
    r"^gaps/line=(?P<line>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"(?P<line2>[^/]+)_(?P<start>\d{8}T\d{12})_(?P<digest>[0-9a-f]{16})\.fsg$"
)
_PROCESSED_KEY_RE = re.compile(r"^processed/line=(?P<line>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/[^/]+$")


def _start_ns(text: str, key: str) -> int:
    try:
        start = dt.datetime.strptime(text, "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise RawFormatError(f"key {key!r}: start {text!r} is not a valid timestamp") from exc
    delta = start - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def parse_key(key: str) -> KeyInfo:
    """Inverse of the key layout; checks the partition agrees with the start embedded in the name."""
    if m := _RAW_KEY_RE.match(key):
        if m["line"] != m["line2"]:
            raise RawFormatError(f"key {key!r}: line in the partition and the file name differ")
        start_ns = _start_ns(m["start"], key)
        start = _utc(start_ns)
        if f"{start:%Y-%m-%d}" != m["date"] or start.hour != int(m["hour"]):
            raise RawFormatError(f"key {key!r}: date/hour partition does not match the start timestamp")
        return KeyInfo("raw", m["line"], start.date(), start.hour, m["group"], start_ns, m["digest"], key)
    if m := _GAP_KEY_RE.match(key):
        if m["line"] != m["line2"]:
            raise RawFormatError(f"key {key!r}: line in the partition and the file name differ")
        start_ns = _start_ns(m["start"], key)
        start = _utc(start_ns)
        if f"{start:%Y-%m-%d}" != m["date"]:
            raise RawFormatError(f"key {key!r}: date partition does not match the start timestamp")
        return KeyInfo("gaps", m["line"], start.date(), None, None, start_ns, m["digest"], key)
    if m := _PROCESSED_KEY_RE.match(key):
        return KeyInfo("processed", m["line"], dt.date.fromisoformat(m["date"]), None, None, None, None, key)
    if key.startswith(MODELS_PREFIX):
        return KeyInfo("models", None, None, None, None, None, None, key)
    if key.startswith(MASTER_PREFIX):
        return KeyInfo("master", None, None, None, None, None, None, key)
    raise RawFormatError(
        f"key {key!r} does not follow the raw/, gaps/, processed/, models/ or master/ layout"
    )


# ------------------------------------------------------------------------------------------------ models


def check_version(version: str) -> str:
    """Versions are 'vNNNNN-<12 hex>' (number + content digest): refuse anything else (no path games)."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ValueError(f"version: {version!r} is not of the form vNNNNN-<12 hex digits>")
    return version


def is_version(text: str) -> bool:
    """True for a well-formed version string (listing filters with it instead of raising)."""
    return bool(_VERSION_RE.match(text))


def version_key(version: str, name: str) -> str:
    """models/versions/{version}/{file}: one artefact file of one model version."""
    return f"{VERSIONS_PREFIX}{version}/{name}"


# --------------------------------------------------------------------------------------------- decisions


def decision_key(line: str, date: str, instance_id: str, first_ts: str, jsonl: bytes) -> str:
    """Deterministic object key of one decision-log segment: its line, date, first decision time and
    content hash (decisions/line=/date=/{instance}-{HHMMSS}-{sha256[:16]}.jsonl.zst)."""
    clock = first_ts[11:19].replace(":", "") or "000000"
    digest = hashlib.sha256(jsonl).hexdigest()[:16]
    return f"{DECISIONS_PREFIX}line={line}/date={date}/{instance_id}-{clock}-{digest}.jsonl.zst"


def decisions_date_prefix(line: str, date: dt.date | str) -> str:
    """Prefix of one line-day of the decision log."""
    return f"{DECISIONS_PREFIX}line={check_name('line', line)}/date={_date_str(date)}/"


# -------------------------------------------------------------------------------------------- quarantine


def quarantine_key(key: str) -> str:
    """Where a corrupt object's bytes are kept: quarantine/{its original key}."""
    return f"{QUARANTINE_PREFIX}{key}"


def quarantine_reason_key(key: str) -> str:
    """The JSON reason file next to a quarantined copy."""
    return f"{quarantine_key(key)}.reason.json"


# --------------------------------------------------------------------------------------------- manifests


def manifest_prefix(kind: str, line: str, date: dt.date | str) -> str:
    """Prefix of every manifest the raw sensor wrote for one (kind, line, date) partition: listing it
    finds every object recorded on the partition (kind 'raw' or 'gaps')."""
    if kind not in ("raw", "gaps"):
        raise RawFormatError(f"manifest kind {kind!r} must be 'raw' or 'gaps'")
    return f"{MANIFESTS_PREFIX}{kind}/line={check_name('line', line)}/date={_date_str(date)}/"


def manifest_key(kind: str, line: str, date: dt.date | str, object_keys: Sequence[str]) -> str:
    """manifests/{kind}/line=/date=/{digest}.json; digest over the sorted object keys it describes, so
    a tick retried after a crash rewrites the same manifest under the same key."""
    if not object_keys:
        raise RawFormatError("a manifest describes at least one object")
    return f"{manifest_prefix(kind, line, date)}{_digest(sorted(object_keys))}.json"
