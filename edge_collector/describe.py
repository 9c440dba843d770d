"""Decode raw objects, gap objects and spool files into rows for humans and scripts.

Why: operators must be able to answer "what exactly is in this object / spool file?" without
Python; rows are (channel, seq, time, value) for samples and one row per gap record.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from factory_core.outbox.spool import MAGIC as SPOOL_MAGIC
from factory_core.outbox.spool import decode_file
from factory_core.rawformat import GAPS_MAGIC, MAGIC, decode_batch, decode_gaps

SAMPLE_FIELDS = ("line", "group", "channel_id", "channel", "seq", "t_ns", "time", "value")
GAP_FIELDS = (
    "line",
    "channel_id",
    "channel",
    "lost_from_seq",
    "lost_to_seq",
    "lost_from_ns",
    "lost_to_ns",
    "detected_at_ns",
    "reason",
)


def _iso(t_ns: int) -> str:
    when = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=t_ns // 1000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_bytes(target: str, endpoint_url: str | None = None) -> bytes:
    """A local file, or ``s3://bucket/key`` fetched through the store abstraction."""
    if target.startswith("s3://"):
        from factory_core.store import S3Store

        parsed = urlparse(target)
        return S3Store(parsed.netloc, endpoint_url=endpoint_url).get(parsed.path.lstrip("/"))
    return Path(target).read_bytes()


def rows(data: bytes) -> tuple[str, Iterator[dict[str, Any]]]:
    """("samples" | "gaps", row iterator); spool files are unwrapped to their payload first."""
    if data.startswith(SPOOL_MAGIC):
        _, data = decode_file(data)
    if data.startswith(GAPS_MAGIC):
        gaps = decode_gaps(data)
        return "gaps", (
            {
                "line": g.line,
                "channel_id": g.channel_id,
                "channel": g.channel_name,
                "lost_from_seq": g.lost_from_seq,
                "lost_to_seq": g.lost_to_seq,
                "lost_from_ns": g.lost_from_ns,
                "lost_to_ns": g.lost_to_ns,
                "detected_at_ns": g.detected_at_ns,
                "reason": g.reason,
            }
            for g in gaps
        )
    if data.startswith(MAGIC):
        batch = decode_batch(data)

        def sample_rows() -> Iterator[dict[str, Any]]:
            for block in batch.blocks:
                for i in range(block.count):
                    t = int(block.t_ns[i])
                    yield {
                        "line": batch.line,
                        "group": batch.group,
                        "channel_id": block.channel_id,
                        "channel": block.name,
                        "seq": block.first_seq + i,
                        "t_ns": t,
                        "time": _iso(t),
                        "value": float(block.values[i]),
                    }

        return "samples", sample_rows()
    raise ValueError("not a raw (.fsr) object, gap (.fsg) object or collector spool file (unknown magic)")


def write_rows(kind: str, it: Iterator[dict[str, Any]], fmt: str, out: TextIO = sys.stdout) -> int:
    n = 0
    if fmt == "jsonl":
        for row in it:
            out.write(json.dumps(row, allow_nan=True) + "\n")
            n += 1
        return n
    writer = csv.DictWriter(out, fieldnames=SAMPLE_FIELDS if kind == "samples" else GAP_FIELDS)
    writer.writeheader()
    for row in it:
        writer.writerow(row)
        n += 1
    return n
