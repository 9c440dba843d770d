"""Reading the inference server's decision log: one zstd JSON-lines object per segment.

Why in the core: the server writes segments (inference_server.serving.decision_log) and the data platform
reads them back (the Dagster decision-log sensor and the `model_performance` asset), and neither may import
the other, so the one decoder lives here. Objects are treated as untrusted: decompression is streamed and
capped, and a malformed object raises DecisionFormatError naming the problem instead of a zstd/JSON error.
"""

from __future__ import annotations

import io
import json
from typing import Any

import zstandard

MAX_SEGMENT_BYTES = 256 * 1024 * 1024
"""Decompressed size beyond which a segment is refused (the writer caps segments at a few MiB)."""


class DecisionFormatError(ValueError):
    """A decision-log object is not a zstd frame of JSON object lines."""


def decode_decisions(payload: bytes, max_bytes: int = MAX_SEGMENT_BYTES) -> list[dict[str, Any]]:
    """The decisions of one segment (stored object or spool payload), in the order they were written."""
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload), read_across_frames=False)
        data = reader.read(max_bytes + 1)
    except zstandard.ZstdError as exc:
        raise DecisionFormatError(f"not a zstd frame: {exc}") from None
    if len(data) > max_bytes:
        raise DecisionFormatError(f"decompresses to more than {max_bytes} bytes")
    out: list[dict[str, Any]] = []
    for n, line in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DecisionFormatError(f"line {n}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise DecisionFormatError(f"line {n}: not a JSON object")
        out.append(record)
    return out
