"""What landed in a partition, from the objects' headers: per-object summaries and the partition manifest.

Why headers only: the raw sensor describes every object that lands (keys, channels, sequence ranges,
sample counts), and all of that is in the object's header (`factory_core.rawformat.read_header`), which
one small ranged read returns. Decoding the body (zstd + SHA-256 + timestamps) cost ~8 ms per 5-minute
object and was repeated by the production table anyway, which verifies every body it reads and
quarantines a damaged one. Gap objects are a few hundred bytes and are decoded whole.

Why a manifest: one event per (line, day) partition and tick names up to thousands of objects; the event
carries totals and merged sequence ranges, the manifest object (`layout.manifest_key`, deterministic from
the keys it lists) carries every object's key, group, size and per-channel ranges. Pure functions apart
from the store reads; the sensor (raw/sensors.py) turns them into Dagster events.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from factory_core.layout import manifest_key, parse_key
from factory_core.rawformat import (
    HEADER_PROBE_BYTES,
    GapRecord,
    RawFormatError,
    decode_gaps,
    header_bytes_needed,
    read_header,
)
from factory_core.store import ObjectStore, read_head

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ChannelRange:
    name: str
    first_seq: int
    count: int
    t_first_ns: int | None
    t_last_ns: int | None


@dataclass(frozen=True)
class RawObjectSummary:
    """One raw object as its header describes it."""

    key: str
    line: str
    date: str
    group: str
    bytes: int
    channels: tuple[ChannelRange, ...]

    @property
    def samples(self) -> int:
        return sum(c.count for c in self.channels)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "group": self.group,
            "bytes": self.bytes,
            "samples": self.samples,
            "channels": {c.name: [c.first_seq, c.first_seq + c.count, c.t_first_ns, c.t_last_ns]
                         for c in self.channels},
        }  # fmt: skip


@dataclass(frozen=True)
class GapObjectSummary:
    """One gap object, decoded whole (they are tiny)."""

    key: str
    line: str
    date: str
    bytes: int
    records: tuple[GapRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "bytes": self.bytes,
            "lost": [
                {"channel": g.channel_name, "from_seq": g.lost_from_seq, "to_seq": g.lost_to_seq,
                 "from_ns": g.lost_from_ns, "to_ns": g.lost_to_ns, "reason": g.reason}
                for g in self.records
            ],
        }  # fmt: skip


def _key_partition(key: str, kind: str) -> tuple[str, str]:
    info = parse_key(key)  # RawFormatError for a key outside the layout
    if info.kind != kind or info.line is None or info.date is None:
        raise RawFormatError(f"key {key!r} is not a {kind} object key")
    return info.line, info.date.isoformat()


def describe_raw(store: ObjectStore, key: str) -> RawObjectSummary:
    """Summary of a raw object from its first bytes (one read of HEADER_PROBE_BYTES, a second one only
    for a header longer than that). Raises RawFormatError naming what is wrong with the object."""
    line, date = _key_partition(key, "raw")
    head, size = read_head(store, key, HEADER_PROBE_BYTES)
    needed = header_bytes_needed(head)
    if needed > len(head) and size > len(head):
        head, size = read_head(store, key, needed)
    header = read_header(head, object_size=size)
    if header.line != line:
        raise RawFormatError(f"object line {header.line!r} differs from the key's line {line!r}")
    channels = tuple(
        ChannelRange(c.name, c.first_seq, c.count, c.t_first_ns, c.t_last_ns) for c in header.channels
    )
    return RawObjectSummary(key, line, date, header.group, size, channels)


def describe_gaps(store: ObjectStore, key: str) -> tuple[GapObjectSummary, bytes]:
    """Summary of a gap object (decoded whole) and its bytes. Raises RawFormatError."""
    line, date = _key_partition(key, "gaps")
    data = store.get(key)
    return GapObjectSummary(key, line, date, len(data), tuple(decode_gaps(data))), data


def merged_ranges(summaries: Iterable[RawObjectSummary]) -> dict[str, list[list[int]]]:
    """Per channel, the [from_seq, to_seq) ranges covered by the objects, adjacent ones merged."""
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for s in summaries:
        for c in s.channels:
            if c.count:
                spans[c.name].append((c.first_seq, c.first_seq + c.count))
    out: dict[str, list[list[int]]] = {}
    for name in sorted(spans):
        merged: list[list[int]] = []
        for lo, hi in sorted(spans[name]):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        out[name] = merged
    return out


def manifest_document(
    kind: str, line: str, date: str, summaries: Sequence[RawObjectSummary] | Sequence[GapObjectSummary]
) -> tuple[str, bytes]:
    """(key, bytes) of the manifest of objects recorded on one partition in one tick. Deterministic:
    objects sorted by key, no timestamps, so a retried tick writes the same bytes under the same key."""
    objects = sorted(summaries, key=lambda s: s.key)
    keys = [s.key for s in objects]
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "kind": kind,
        "line": line,
        "date": date,
        "objects": [s.to_json() for s in objects],
    }
    if kind == "raw":
        doc["read"] = "header"  # body checksums are verified by the production table when it decodes
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return manifest_key(kind, line, date, keys), data


def read_manifest(store: ObjectStore, key: str) -> dict[str, Any]:
    """A manifest's document (what a data team member or a script reads back)."""
    doc = json.loads(store.get(key))
    if doc.get("version") != MANIFEST_VERSION:
        raise ValueError(f"manifest {key!r}: version {doc.get('version')!r} is not {MANIFEST_VERSION}")
    return doc
