"""Raw object format (.fsr) and gap-record format (.fsg): the codecs of what the collector uploads.

One module is shared by the edge collector (live data) and the history generator (back-filled data), so
both write byte-identical objects for identical samples; where they live is `factory_core.layout`. The
cloud side (Dagster) reads through `decode_batch` and `decode_gaps`. The byte layout is documented in
docs/data-layout.md; keep the two in step.

Everything read from an object is untrusted: `decode_batch`/`decode_gaps` validate magic, version,
header schema, body length and checksum, and raise `RawFormatError` naming the problem. They never
allocate by a size taken from the object beyond what the data itself decompresses to.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

__all__ = [
    "FORMAT_VERSION",
    "GAPS_MAGIC",
    "GAPS_VERSION",
    "MAGIC",
    "ChannelBlock",
    "ChannelSummary",
    "GapRecord",
    "RawBatch",
    "RawFormatError",
    "RawHeader",
    "check_name",
    "decode_batch",
    "decode_gaps",
    "encode_batch",
    "encode_gaps",
    "header_bytes_needed",
    "read_header",
]

MAGIC = b"\x89FSR\r\n\x1a\n"  # PNG-style: catches text-mode mangling and truncation at byte 1
GAPS_MAGIC = b"\x89FSG\r\n\x1a\n"
FORMAT_VERSION = 1
GAPS_VERSION = 1
# magic, format version u16, header length u32, CRC-32 of the header bytes u32 (all little-endian)
_PREAMBLE = struct.Struct("<8sHII")
MAX_HEADER_BYTES = 4 * 1024 * 1024
MAX_BODY_BYTES = 2 * 1024 * 1024 * 1024  # a 300 s object is a few MiB; this only bounds a lying header
MAX_GAPS_BYTES = 64 * 1024 * 1024
_DECOMPRESS_CHUNK = 4 * 1024 * 1024
ZSTD_FRAME_HEADER_MAX = 18  # magic (4) + frame header (2..14): where the frame declares its content size
HEADER_PROBE_BYTES = 16 * 1024  # one read that holds the preamble, header and frame header of ~100 channels
ZSTD_LEVEL = 1  # measured: level 3 costs 2x the CPU for ~1.5-2% smaller objects (noise dominates)
VALUE_ENCODINGS = ("shuffle8", "plain")  # shuffle8: byte-plane transpose of the float64 values
DEFAULT_VALUE_ENCODING = "shuffle8"


_LINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # SimConfig allows '_' in line names
_GROUP_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"
)  # no '_': file names are split at '_' from the right
_U63 = 2**63


class RawFormatError(Exception):
    """An object (or a batch about to be written) violates the raw/gap format; message names the problem."""


def check_name(what: str, value: object) -> str:
    """Line and group names become key segments; reject anything that would make keys ambiguous."""
    pattern, chars = (_GROUP_RE, "[A-Za-z0-9-]") if what == "group" else (_LINE_RE, "[A-Za-z0-9_-]")
    if not isinstance(value, str) or not pattern.match(value):
        raise RawFormatError(
            f"{what} {value!r} is invalid: must be 1-64 chars of {chars} starting alphanumeric "
            "(it becomes part of object keys)"
        )
    return value


@dataclass(frozen=True, eq=False)
class ChannelBlock:
    """Contiguous samples of one channel: seqs first_seq .. first_seq + len(t_ns) - 1."""

    channel_id: int
    name: str
    unit: str
    rate_hz: float
    first_seq: int
    t_ns: np.ndarray  # int64
    values: np.ndarray  # float64

    @property
    def count(self) -> int:
        return len(self.t_ns)

    def __eq__(self, other: object) -> bool:
        """Bit-exact equality (NaN payloads included), so round-trip tests mean what they say."""
        if not isinstance(other, ChannelBlock):
            return NotImplemented
        return (
            (self.channel_id, self.name, self.unit, self.rate_hz, self.first_seq)
            == (other.channel_id, other.name, other.unit, other.rate_hz, other.first_seq)
            and np.array_equal(np.asarray(self.t_ns, np.int64), np.asarray(other.t_ns, np.int64))
            and np.asarray(self.values, "<f8").tobytes() == np.asarray(other.values, "<f8").tobytes()
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class RawBatch:
    """One raw object: samples of several channels of one line (a channel group) over one window."""

    line: str
    group: str
    blocks: tuple[ChannelBlock, ...]


@dataclass(frozen=True)
class ChannelSummary:
    """What the header says about one channel of an object (no sample is decoded to know it)."""

    channel_id: int
    name: str
    unit: str
    rate_hz: float
    first_seq: int
    count: int
    t_first_ns: int | None
    t_last_ns: int | None


@dataclass(frozen=True)
class RawHeader:
    """A raw object's validated header: line, group, body length and checksum, channels' ranges."""

    line: str
    group: str
    value_encoding: str
    body_len: int
    body_sha256: str
    channels: tuple[ChannelSummary, ...]
    body_offset: int  # where the zstd frame starts

    @property
    def samples(self) -> int:
        return sum(ch.count for ch in self.channels)


@dataclass(frozen=True)
class GapRecord:
    """Samples [lost_from_seq, lost_to_seq) of a channel that were lost (never reached the store)."""

    line: str
    channel_id: int
    channel_name: str
    lost_from_seq: int
    lost_to_seq: int  # exclusive
    lost_from_ns: int
    lost_to_ns: int
    detected_at_ns: int
    reason: str


# --------------------------------------------------------------------------------------------- encode


def _prepared_block(block: ChannelBlock) -> tuple[np.ndarray, np.ndarray]:
    """Validate one block before writing (bad input is rejected at the writer, not found by a reader)."""
    cid = block.channel_id
    if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= 0xFFFF:
        raise RawFormatError(f"channel_id {cid!r} is not a u16")
    if not isinstance(block.name, str) or not block.name:
        raise RawFormatError(f"channel {cid}: name must be a non-empty string")
    if not isinstance(block.unit, str):
        raise RawFormatError(f"channel {cid}: unit must be a string")
    rate = block.rate_hz
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not (math.isfinite(rate) and rate > 0):
        raise RawFormatError(f"channel {cid}: rate_hz {rate!r} must be a finite number > 0")
    t = np.asarray(block.t_ns)
    v = np.asarray(block.values)
    if t.ndim != 1 or v.ndim != 1 or len(t) != len(v):
        raise RawFormatError(
            f"channel {cid}: t_ns and values must be 1-D of equal length (got {t.shape} and {v.shape})"
        )
    if t.dtype != np.int64:
        if t.size and not np.issubdtype(t.dtype, np.integer):
            raise RawFormatError(f"channel {cid}: t_ns dtype {t.dtype} is not an integer type")
        t = t.astype(np.int64)
    if v.size and not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
        raise RawFormatError(f"channel {cid}: values dtype {v.dtype} is not numeric")
    seq = block.first_seq
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < _U63 - len(t):
        raise RawFormatError(f"channel {cid}: first_seq {seq!r} must be an int in [0, 2**63 - count)")
    if len(t) > 1 and not bool(np.all(t[1:] > t[:-1])):
        raise RawFormatError(f"channel {cid}: t_ns must be strictly increasing")
    return np.ascontiguousarray(t, "<i8"), np.ascontiguousarray(v, "<f8")


def _unshuffle8(raw: bytes | memoryview, n: int) -> np.ndarray:
    planes = np.frombuffer(raw, np.uint8).reshape(8, n)
    return np.ascontiguousarray(planes.T).view("<f8").reshape(n)


def encode_batch(
    batch: RawBatch, *, value_encoding: str = DEFAULT_VALUE_ENCODING, level: int = ZSTD_LEVEL
) -> bytes:
    """Serialize a batch: preamble + JSON header + zstd(body). Deterministic: same batch, same bytes."""
    check_name("line", batch.line)
    check_name("group", batch.group)
    if value_encoding not in VALUE_ENCODINGS:
        raise RawFormatError(f"value_encoding {value_encoding!r} is not one of {VALUE_ENCODINGS}")
    seen: set[int] = set()
    prepared: list[tuple[np.ndarray, np.ndarray]] = []
    channels: list[dict[str, Any]] = []
    for block in batch.blocks:
        t, v = _prepared_block(block)
        if block.channel_id in seen:
            raise RawFormatError(f"channel_id {block.channel_id} appears twice in one batch")
        seen.add(block.channel_id)
        prepared.append((t, v))
        n = len(t)
        channels.append(
            {
                "id": block.channel_id,
                "name": block.name,
                "unit": block.unit,
                "rate_hz": float(block.rate_hz),
                "first_seq": block.first_seq,
                "count": n,
                "t_first_ns": int(t[0]) if n else None,
                "t_last_ns": int(t[-1]) if n else None,
            }
        )
    # The body is written in place (deltas, then values, per block): one allocation instead of a
    # temporary per block plus a join. Transient allocations are page faults in worker threads.
    body = bytearray(16 * sum(len(t) for t, _ in prepared))
    pos = 0
    for t, v in prepared:
        n = len(t)
        if n:
            deltas = np.frombuffer(body, "<i8", n, pos)
            deltas[0] = t[0]
            np.subtract(t[1:], t[:-1], out=deltas[1:])
            pos += 8 * n
            if value_encoding == "shuffle8":
                planes = np.frombuffer(body, np.uint8, 8 * n, pos).reshape(8, n)
                planes[:] = v.view(np.uint8).reshape(n, 8).T
            else:
                np.frombuffer(body, "<f8", n, pos)[:] = v
            pos += 8 * n
    header = {
        "format": "fsr",
        "version": FORMAT_VERSION,
        "line": batch.line,
        "group": batch.group,
        "compression": "zstd",
        "value_encoding": value_encoding,
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "channels": channels,
    }
    header_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    if len(header_bytes) > MAX_HEADER_BYTES:
        raise RawFormatError(f"header is {len(header_bytes)} bytes, over the {MAX_HEADER_BYTES} limit")
    compressed = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(body)
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes), zlib.crc32(header_bytes))
    return b"".join((preamble, header_bytes, compressed))


# --------------------------------------------------------------------------------------------- decode


def _bounded_decompress(what: str, data: bytes | memoryview, limit: int) -> bytes:
    """Decompress one zstd frame, reading at most limit + 1 bytes: memory follows the real data only."""
    out: list[bytes] = []
    total = 0
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=False)
        while True:
            chunk = reader.read(min(_DECOMPRESS_CHUNK, limit + 1 - total))
            if not chunk:
                break
            out.append(chunk)
            total += len(chunk)
            if total > limit:
                raise RawFormatError(f"{what}: decompressed body is longer than the {limit} bytes declared")
    except zstandard.ZstdError as exc:
        raise RawFormatError(f"{what}: body is not a valid zstd frame ({exc})") from exc
    return b"".join(out)


def _field(obj: dict[str, Any], name: str, types: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise RawFormatError(f"{where}: header field {name!r} is missing")
    value = obj[name]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RawFormatError(f"{where}: header field {name!r} must be {types}, got a bool")
    if not isinstance(value, types):
        raise RawFormatError(f"{where}: header field {name!r} must be {types}, got {type(value).__name__}")
    return value


def _int_field(obj: dict[str, Any], name: str, lo: int, hi: int, where: str) -> int:
    value = _field(obj, name, int, where)
    if not lo <= value <= hi:
        raise RawFormatError(f"{where}: header field {name!r}={value} is outside [{lo}, {hi}]")
    return value


def _read_header(data: bytes | memoryview) -> tuple[dict[str, Any], memoryview]:
    if len(data) < _PREAMBLE.size:
        raise RawFormatError(
            f"object is truncated: {len(data)} bytes, shorter than the {_PREAMBLE.size}-byte preamble"
        )
    magic, version, header_len, header_crc = _PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise RawFormatError(f"bad magic {bytes(magic)!r}: not a raw (.fsr) object")
    if version != FORMAT_VERSION:
        raise RawFormatError(f"unsupported format version {version} (this reader supports {FORMAT_VERSION})")
    if header_len > MAX_HEADER_BYTES:
        raise RawFormatError(f"header length {header_len} is over the {MAX_HEADER_BYTES} limit")
    end = _PREAMBLE.size + header_len
    if end > len(data):
        raise RawFormatError(
            f"object is truncated: header declares {header_len} bytes, only {len(data) - _PREAMBLE.size} present"
        )
    view = memoryview(data)
    header_bytes = bytes(view[_PREAMBLE.size : end])
    if zlib.crc32(header_bytes) != header_crc:
        raise RawFormatError("header checksum mismatch: CRC-32 of the header bytes differs from the preamble")
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int-digits limit
        raise RawFormatError(f"header is not valid UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise RawFormatError("header must be a JSON object")
    return header, view[end:]


def _parse_channels(header: dict[str, Any]) -> list[dict[str, Any]]:
    channels = _field(header, "channels", list, "header")
    seen: set[int] = set()
    out = []
    for i, ch in enumerate(channels):
        where = f"channel[{i}]"
        if not isinstance(ch, dict):
            raise RawFormatError(f"{where}: must be a JSON object")
        cid = _int_field(ch, "id", 0, 0xFFFF, where)
        where = f"channel[{i}] id={cid}"
        if cid in seen:
            raise RawFormatError(f"{where}: channel id appears twice")
        seen.add(cid)
        name = _field(ch, "name", str, where)
        unit = _field(ch, "unit", str, where)
        rate = _field(ch, "rate_hz", (int, float), where)
        try:
            rate = float(rate)
        except OverflowError:
            rate = math.inf
        if not (math.isfinite(rate) and rate > 0):
            raise RawFormatError(f"{where}: rate_hz {rate} must be finite and > 0")
        count = _int_field(ch, "count", 0, MAX_BODY_BYTES // 16, where)
        first_seq = _int_field(ch, "first_seq", 0, _U63 - 1 - count, where)
        t_first = _field(ch, "t_first_ns", (int, type(None)), where)
        t_last = _field(ch, "t_last_ns", (int, type(None)), where)
        if (count == 0) != (t_first is None) or (count == 0) != (t_last is None):
            raise RawFormatError(f"{where}: t_first_ns/t_last_ns must be null exactly when count is 0")
        out.append(
            {"id": cid, "name": name, "unit": unit, "rate_hz": float(rate), "first_seq": first_seq, "count": count,
             "t_first_ns": t_first, "t_last_ns": t_last}
        )  # fmt: skip
    return out


def _validated_header(data: bytes | memoryview) -> tuple[RawHeader, list[dict[str, Any]], memoryview]:
    """Every rule of the format that the preamble and header alone can check (shared by both readers)."""
    header, compressed = _read_header(data)
    fmt = _field(header, "format", str, "header")
    if fmt != "fsr":
        raise RawFormatError(f"header format {fmt!r} is not 'fsr'")
    if _field(header, "version", int, "header") != FORMAT_VERSION:
        raise RawFormatError(
            f"header version {header['version']} does not match preamble version {FORMAT_VERSION}"
        )
    line = check_name("line", _field(header, "line", str, "header"))
    group = check_name("group", _field(header, "group", str, "header"))
    if _field(header, "compression", str, "header") != "zstd":
        raise RawFormatError(f"header compression {header['compression']!r} is not supported (only 'zstd')")
    encoding = _field(header, "value_encoding", str, "header")
    if encoding not in VALUE_ENCODINGS:
        raise RawFormatError(f"header value_encoding {encoding!r} is not one of {VALUE_ENCODINGS}")
    body_len = _int_field(header, "body_len", 0, MAX_BODY_BYTES, "header")
    digest = _field(header, "body_sha256", str, "header")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise RawFormatError("header body_sha256 must be 64 lowercase hex digits")
    channels = _parse_channels(header)
    expected = sum(16 * ch["count"] for ch in channels)
    if expected != body_len:
        raise RawFormatError(
            f"header body_len {body_len} does not match channel counts (16 x samples = {expected})"
        )
    summaries = tuple(
        ChannelSummary(ch["id"], ch["name"], ch["unit"], ch["rate_hz"], ch["first_seq"], ch["count"],
                       ch["t_first_ns"], ch["t_last_ns"])
        for ch in channels
    )  # fmt: skip
    body_offset = len(data) - len(compressed)
    return RawHeader(line, group, encoding, body_len, digest, summaries, body_offset), channels, compressed


def header_bytes_needed(prefix: bytes | memoryview) -> int:
    """How many leading bytes of an object `read_header` needs: preamble, header and the zstd frame
    header (from the preamble's header length; the preamble itself if `prefix` is shorter)."""
    if len(prefix) < _PREAMBLE.size:
        return _PREAMBLE.size
    _, _, header_len, _ = _PREAMBLE.unpack_from(prefix, 0)
    return _PREAMBLE.size + min(header_len, MAX_HEADER_BYTES + 1) + ZSTD_FRAME_HEADER_MAX


def read_header(data: bytes | memoryview, *, object_size: int | None = None) -> RawHeader:
    """Validate and return a raw object's header from its first bytes, without decoding the body.

    `data` is the object's first `header_bytes_needed` bytes (or the whole object); `object_size` its
    full size when known. Checks everything `decode_batch` checks up to the body (magic, version,
    header CRC-32 and schema, body_len = 16 x samples) and the start of the body: a zstd frame whose
    declared content size is body_len, and a body present at all. What it cannot see is a damaged or
    truncated body past the frame header: `decode_batch` (SHA-256 of the body) finds that when the
    production table reads the object, and quarantines it there.
    """
    header, _, compressed = _validated_header(data)
    size = object_size if object_size is not None else len(data)
    if header.body_len and size <= header.body_offset:
        raise RawFormatError(
            f"body is truncated: the object ends at the header ({size} bytes), header declares body_len "
            f"{header.body_len}"
        )
    if len(compressed) >= 4:
        if bytes(compressed[:4]) != b"\x28\xb5\x2f\xfd":
            raise RawFormatError("body is not a valid zstd frame (bad frame magic)")
        try:
            params = zstandard.get_frame_parameters(bytes(compressed[:ZSTD_FRAME_HEADER_MAX]))
        except zstandard.ZstdError as exc:
            if len(compressed) >= ZSTD_FRAME_HEADER_MAX or size == len(data):
                raise RawFormatError(f"body is not a valid zstd frame ({exc})") from exc
        else:
            declared = params.content_size
            if declared not in (zstandard.CONTENTSIZE_UNKNOWN, header.body_len):
                raise RawFormatError(
                    f"body's zstd frame declares {declared} bytes, header declares body_len {header.body_len}"
                )
    return header


def decode_batch(data: bytes | memoryview) -> RawBatch:
    """Parse and fully validate a raw object. Raises RawFormatError naming the first problem found."""
    head, channels, compressed = _validated_header(data)
    line, group, encoding, body_len, digest = (
        head.line, head.group, head.value_encoding, head.body_len, head.body_sha256
    )  # fmt: skip
    body = _bounded_decompress("body", compressed, body_len)
    if len(body) != body_len:
        raise RawFormatError(
            f"body is truncated: decompressed to {len(body)} bytes, header declares {body_len}"
        )
    if hashlib.sha256(body).hexdigest() != digest:
        raise RawFormatError(
            "body checksum mismatch: SHA-256 of the decompressed body differs from body_sha256"
        )
    blocks = []
    pos = 0
    for ch in channels:
        n = ch["count"]
        deltas = np.frombuffer(body, "<i8", count=n, offset=pos)
        pos += 8 * n
        if encoding == "shuffle8":
            values = _unshuffle8(memoryview(body)[pos : pos + 8 * n], n)
        else:
            values = np.frombuffer(body, "<f8", count=n, offset=pos).copy()
        pos += 8 * n
        t = np.cumsum(deltas, dtype=np.int64)
        if n:
            if n > 1 and not bool(np.all(deltas[1:] > 0)):
                raise RawFormatError(f"channel {ch['id']}: timestamps are not strictly increasing")
            if int(t[0]) != ch["t_first_ns"] or int(t[-1]) != ch["t_last_ns"]:
                raise RawFormatError(
                    f"channel {ch['id']}: decoded timestamps disagree with header t_first_ns/t_last_ns"
                )
        blocks.append(
            ChannelBlock(ch["id"], ch["name"], ch["unit"], ch["rate_hz"], ch["first_seq"], t.astype(np.int64, copy=False),
                         values.astype(np.float64, copy=False))
        )  # fmt: skip
    return RawBatch(line=line, group=group, blocks=tuple(blocks))


# ------------------------------------------------------------------------------------------------ gaps

_GAP_FIELDS: dict[str, type] = {
    "line": str,
    "channel_id": int,
    "channel_name": str,
    "lost_from_seq": int,
    "lost_to_seq": int,
    "lost_from_ns": int,
    "lost_to_ns": int,
    "detected_at_ns": int,
    "reason": str,
}


def _check_gap(g: GapRecord, line: str, where: str) -> None:
    for name, typ in _GAP_FIELDS.items():
        value = getattr(g, name)
        if isinstance(value, bool) or not isinstance(value, typ):
            raise RawFormatError(
                f"{where}: field {name!r} must be {typ.__name__}, got {type(value).__name__}"
            )
    if g.line != line:
        raise RawFormatError(f"{where}: line {g.line!r} differs from the object's line {line!r}")
    if not 0 <= g.channel_id <= 0xFFFF:
        raise RawFormatError(f"{where}: channel_id {g.channel_id} is not a u16")
    if not 0 <= g.lost_from_seq < g.lost_to_seq < _U63:
        raise RawFormatError(
            f"{where}: need 0 <= lost_from_seq < lost_to_seq (got {g.lost_from_seq}, {g.lost_to_seq})"
        )
    if g.lost_to_ns < g.lost_from_ns:
        raise RawFormatError(f"{where}: lost_to_ns {g.lost_to_ns} is before lost_from_ns {g.lost_from_ns}")
    for name in ("lost_from_ns", "lost_to_ns", "detected_at_ns"):
        if not -_U63 <= getattr(g, name) < _U63:
            raise RawFormatError(f"{where}: {name} does not fit int64")


def _sorted_gaps(gaps: Iterable[GapRecord]) -> list[GapRecord]:
    return sorted(
        gaps, key=lambda g: (g.channel_id, g.lost_from_seq, g.lost_to_seq, g.detected_at_ns, g.reason)
    )


def encode_gaps(line: str, gaps: Sequence[GapRecord]) -> bytes:
    """Serialize gap records: magic + zstd(JSON lines: one header line, then one record per line)."""
    check_name("line", line)
    if not gaps:
        raise RawFormatError("a gap object needs at least one gap record")
    ordered = _sorted_gaps(gaps)
    for i, g in enumerate(ordered):
        _check_gap(g, line, f"gap[{i}]")
    lines = [
        json.dumps(
            {"format": "fsg", "version": GAPS_VERSION, "line": line, "count": len(ordered)}, sort_keys=True
        )
    ]
    lines += [json.dumps({k: getattr(g, k) for k in _GAP_FIELDS}, sort_keys=True) for g in ordered]
    body = ("\n".join(lines) + "\n").encode()
    return GAPS_MAGIC + zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(body)


def decode_gaps(data: bytes | memoryview) -> list[GapRecord]:
    """Parse and validate a gap object. Raises RawFormatError naming the problem."""
    if len(data) < len(GAPS_MAGIC):
        raise RawFormatError(f"gap object is truncated: {len(data)} bytes")
    if bytes(data[: len(GAPS_MAGIC)]) != GAPS_MAGIC:
        raise RawFormatError(f"bad magic {bytes(data[: len(GAPS_MAGIC)])!r}: not a gap (.fsg) object")
    body = _bounded_decompress("gap body", memoryview(data)[len(GAPS_MAGIC) :], MAX_GAPS_BYTES)
    try:
        rows = [json.loads(s) for s in body.decode().splitlines()]
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, int-digits limit
        raise RawFormatError(f"gap body is not UTF-8 JSON lines ({exc})") from exc
    if not rows or not isinstance(rows[0], dict):
        raise RawFormatError("gap body has no header line")
    head = rows[0]
    if head.get("format") != "fsg":
        raise RawFormatError(f"gap header format {head.get('format')!r} is not 'fsg'")
    if head.get("version") != GAPS_VERSION:
        raise RawFormatError(
            f"unsupported gap format version {head.get('version')!r} (supported: {GAPS_VERSION})"
        )
    line = check_name("line", head.get("line"))
    count = _int_field(head, "count", 1, _U63, "gap header")
    if count != len(rows) - 1:
        raise RawFormatError(f"gap header count {count} does not match {len(rows) - 1} records (truncated?)")
    out = []
    for i, row in enumerate(rows[1:]):
        where = f"gap[{i}]"
        if not isinstance(row, dict) or set(row) != set(_GAP_FIELDS):
            raise RawFormatError(f"{where}: record must have exactly the fields {sorted(_GAP_FIELDS)}")
        for name, typ in _GAP_FIELDS.items():
            _field(row, name, typ, where)
        g = GapRecord(**row)
        _check_gap(g, line, where)
        out.append(g)
    return out
