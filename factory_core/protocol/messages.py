"""Messages of the sensor system's wire protocol: LIST_CHANNELS, READ, STATUS, ERROR (docs/protocol.md).

Each message is a dataclass with its payload codec; framing (header, length, CRC) is `framer`'s job.
Every payload read from the network is untrusted: the decoders check every count and length against
what the payload holds and raise ProtocolError naming the field.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from factory_core.protocol.framer import (
    CRC,
    CRC_SIZE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    MAX_REQUEST_ID,
    VERSION,
    ErrorCode,
    Frame,
    FrameDecoder,
    MsgType,
    ProtocolError,
    encode_frame,
)

MAX_READ_CHANNELS = 4096
MAX_U64 = 2**64 - 1
SAMPLE_DTYPE = np.dtype([("t_ns", ">i8"), ("value", ">f8")])
SAMPLE_SIZE = SAMPLE_DTYPE.itemsize  # 16
_U16 = struct.Struct(">H")
_U8 = struct.Struct(">B")
_READ_ENTRY = struct.Struct(">HQ")  # channel_id, since_seq
_U32 = struct.Struct(">I")
_CHANNEL_FIXED = struct.Struct(">Hd")  # id, rate_hz
_READ_CHANNEL = struct.Struct(">HBBQQQI")  # channel_id, status, reserved, requested, first, next, count
_STATUS_FIXED = struct.Struct(">qddH")  # now_ns, retention_s, speed, channel_count
_ERROR_FIXED = struct.Struct(">HH")  # code, message_len
READ_CHANNEL_HEADER_SIZE = _READ_CHANNEL.size  # 32
_KNOWN_ERROR_CODES = frozenset(int(c) for c in ErrorCode)


class ReadStatus(IntEnum):
    """Per-channel status of a READ response."""

    OK = 0
    GAP = 1  # requested_seq is older than the oldest retained sample: [requested_seq, first_seq) is lost


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    name: str
    unit: str
    rate_hz: float


@dataclass(frozen=True)
class ListChannelsRequest:
    """LIST_CHANNELS has an empty payload."""


@dataclass(frozen=True)
class ListChannelsResponse:
    channels: tuple[ChannelInfo, ...]


@dataclass(frozen=True)
class ReadRequest:
    """Read several channels at once: (channel_id, since_seq) pairs and a per-channel sample cap."""

    channels: tuple[tuple[int, int], ...]
    max_samples: int


@dataclass(frozen=True, eq=False)
class ChannelRead:
    """One channel of a READ response; samples have seqs first_seq .. first_seq+len-1 (contiguous).

    next_seq is the server's head (next seq it will produce); a reader continues from first_seq + count.
    """

    channel_id: int
    gap: bool
    requested_seq: int
    first_seq: int
    next_seq: int
    t_ns: np.ndarray  # int64
    values: np.ndarray  # float64

    @property
    def count(self) -> int:
        return len(self.t_ns)

    def same_as(self, other: ChannelRead) -> bool:
        """Field-by-field equality including array contents (NaN-aware, bit-exact for values)."""
        return (
            self.channel_id == other.channel_id
            and self.gap == other.gap
            and self.requested_seq == other.requested_seq
            and self.first_seq == other.first_seq
            and self.next_seq == other.next_seq
            and np.array_equal(self.t_ns, other.t_ns)
            and self.values.tobytes() == np.asarray(other.values, dtype=np.float64).tobytes()
        )


@dataclass(frozen=True, eq=False)
class ReadResponse:
    reads: tuple[ChannelRead, ...]

    def same_as(self, other: ReadResponse) -> bool:
        return len(self.reads) == len(other.reads) and all(
            a.same_as(b) for a, b in zip(self.reads, other.reads, strict=True)
        )


@dataclass(frozen=True)
class StatusRequest:
    """STATUS has an empty payload."""


@dataclass(frozen=True)
class StatusResponse:
    system: str
    line: str
    now_ns: int  # virtual clock of the sensor system
    retention_s: float
    speed: float  # virtual seconds per real second
    channel_count: int


@dataclass(frozen=True)
class ErrorResponse:
    code: int  # an ErrorCode value; unknown codes from newer peers are kept as plain ints
    message: str


Message = (
    ListChannelsRequest
    | ListChannelsResponse
    | ReadRequest
    | ReadResponse
    | StatusRequest
    | StatusResponse
    | ErrorResponse
)


# ------------------------------------------------------------------------------------------- encoding


def _short_str(value: str, field: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{field} is {len(raw)} UTF-8 bytes; the limit is 255")
    return _U8.pack(len(raw)) + raw


def _check_u16(value: int, field: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{field}={value} outside u16")


def _check_u64(value: int, field: str) -> None:
    if not 0 <= value <= MAX_U64:
        raise ValueError(f"{field}={value} outside u64")


def encode_samples(t_ns: np.ndarray, values: np.ndarray) -> bytes:
    """Pack samples into the big-endian record block of a READ response."""
    if len(t_ns) != len(values):
        raise ValueError(f"t_ns has {len(t_ns)} samples, values has {len(values)}")
    rec = np.empty(len(t_ns), dtype=SAMPLE_DTYPE)
    rec["t_ns"] = t_ns
    rec["value"] = values
    return rec.tobytes()


def pack_read_channel_header(
    channel_id: int, gap: bool, count: int, requested_seq: int, first_seq: int, next_seq: int
) -> bytes:
    """The 32-byte per-channel header of a READ response (the server appends the sample block itself)."""
    _check_u16(channel_id, "channel_id")
    for name, value in (("requested_seq", requested_seq), ("first_seq", first_seq), ("next_seq", next_seq)):
        _check_u64(value, name)
    status = ReadStatus.GAP if gap else ReadStatus.OK
    return _READ_CHANNEL.pack(channel_id, status, 0, requested_seq, first_seq, next_seq, count)


@dataclass(frozen=True)
class RecordRead:
    """A channel read whose samples are already SAMPLE_DTYPE records (e.g. views of a ring buffer)."""

    channel_id: int
    gap: bool
    requested_seq: int
    first_seq: int
    next_seq: int
    chunks: tuple[np.ndarray, ...]  # SAMPLE_DTYPE arrays, concatenated in order


def encode_read_response_frame(request_id: int, reads: list[RecordRead]) -> bytearray:
    """A whole READ_RESP frame built in one buffer: each record chunk is copied exactly once.

    Serving is dominated by memory traffic, so this avoids the intermediate bytes objects and joins of
    the generic encoder (same bytes as encode_message(ReadResponse(...))).
    """
    if len(reads) > 0xFFFF:
        raise ValueError(f"{len(reads)} channel reads exceed u16")
    counts = []
    for r in reads:
        for c in r.chunks:
            if c.dtype != SAMPLE_DTYPE:
                raise ValueError(f"channel {r.channel_id}: chunk dtype {c.dtype} is not SAMPLE_DTYPE")
        counts.append(sum(len(c) for c in r.chunks))
    payload_len = 2 + len(reads) * _READ_CHANNEL.size + SAMPLE_SIZE * sum(counts)
    if payload_len > MAX_PAYLOAD:
        raise ValueError(f"READ response of {payload_len} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ValueError(f"request_id {request_id} outside u32")
    buf = bytearray(HEADER_SIZE + payload_len + CRC_SIZE)
    HEADER.pack_into(buf, 0, MAGIC, VERSION, MsgType.READ_RESP, request_id, payload_len)
    _U16.pack_into(buf, HEADER_SIZE, len(reads))
    pos = HEADER_SIZE + 2
    for r, count in zip(reads, counts, strict=True):
        buf[pos : pos + _READ_CHANNEL.size] = pack_read_channel_header(
            r.channel_id, r.gap, count, r.requested_seq, r.first_seq, r.next_seq
        )
        pos += _READ_CHANNEL.size
        for chunk in r.chunks:
            if len(chunk):
                np.frombuffer(buf, dtype=SAMPLE_DTYPE, count=len(chunk), offset=pos)[:] = chunk
                pos += len(chunk) * SAMPLE_SIZE
    body_end = HEADER_SIZE + payload_len
    CRC.pack_into(buf, body_end, zlib.crc32(memoryview(buf)[:body_end]))
    return buf


def encode_channel_read(read: ChannelRead) -> bytes:
    head = pack_read_channel_header(
        read.channel_id, read.gap, read.count, read.requested_seq, read.first_seq, read.next_seq
    )
    return head + encode_samples(read.t_ns, read.values)


def encode_payload(msg: Message) -> tuple[int, bytes]:
    """(msg_type, payload) for a message."""
    if isinstance(msg, ListChannelsRequest):
        return MsgType.LIST_CHANNELS, b""
    if isinstance(msg, StatusRequest):
        return MsgType.STATUS, b""
    if isinstance(msg, ReadRequest):
        if not 1 <= len(msg.channels) <= MAX_READ_CHANNELS:
            raise ValueError(f"READ needs 1..{MAX_READ_CHANNELS} channels, got {len(msg.channels)}")
        if not 0 <= msg.max_samples <= 0xFFFFFFFF:
            raise ValueError(f"max_samples={msg.max_samples} outside u32")
        parts = [_U16.pack(len(msg.channels))]
        for channel_id, since in msg.channels:
            _check_u16(channel_id, "channel_id")
            _check_u64(since, "since_seq")
            parts.append(_READ_ENTRY.pack(channel_id, since))
        parts.append(_U32.pack(msg.max_samples))
        return MsgType.READ, b"".join(parts)
    if isinstance(msg, ListChannelsResponse):
        if len(msg.channels) > 0xFFFF:
            raise ValueError(f"{len(msg.channels)} channels exceed u16")
        parts = [_U16.pack(len(msg.channels))]
        for ch in msg.channels:
            _check_u16(ch.id, "channel id")
            parts.append(_CHANNEL_FIXED.pack(ch.id, ch.rate_hz))
            parts.append(_short_str(ch.name, "channel name"))
            parts.append(_short_str(ch.unit, "channel unit"))
        return MsgType.LIST_CHANNELS_RESP, b"".join(parts)
    if isinstance(msg, ReadResponse):
        if len(msg.reads) > 0xFFFF:
            raise ValueError(f"{len(msg.reads)} channel reads exceed u16")
        parts = [_U16.pack(len(msg.reads))]
        parts.extend(encode_channel_read(r) for r in msg.reads)
        return MsgType.READ_RESP, b"".join(parts)
    if isinstance(msg, StatusResponse):
        _check_u16(msg.channel_count, "channel_count")
        fixed = _STATUS_FIXED.pack(msg.now_ns, msg.retention_s, msg.speed, msg.channel_count)
        return MsgType.STATUS_RESP, fixed + _short_str(msg.system, "system") + _short_str(msg.line, "line")
    if isinstance(msg, ErrorResponse):
        _check_u16(msg.code, "error code")
        raw = msg.message.encode("utf-8")[:1024]
        # Cutting at 1024 bytes may split a character; drop the partial tail so the text stays valid UTF-8.
        raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
        return MsgType.ERROR, _ERROR_FIXED.pack(msg.code, len(raw)) + raw
    raise TypeError(f"not a protocol message: {type(msg).__name__}")


def encode_message(msg: Message, request_id: int) -> bytes:
    """A complete frame for the message."""
    msg_type, payload = encode_payload(msg)
    return encode_frame(msg_type, request_id, payload)


# ------------------------------------------------------------------------------------------- decoding


class _Reader:
    """Bounds-checked cursor over a payload; every short read raises ProtocolError."""

    def __init__(self, data: bytes, what: str, request_id: int) -> None:
        self.data = data
        self.pos = 0
        self.what = what
        self.request_id = request_id

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(f"{self.what}: {message}", ErrorCode.BAD_REQUEST, self.request_id)

    def need(self, n: int, field: str) -> None:
        if len(self.data) - self.pos < n:
            raise self.fail(f"truncated at {field}: need {n} bytes, {len(self.data) - self.pos} left")

    def unpack(self, st: struct.Struct, field: str) -> tuple:
        self.need(st.size, field)
        out = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return out

    def take(self, n: int, field: str) -> bytes:
        self.need(n, field)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def short_str(self, field: str) -> str:
        (n,) = self.unpack(_U8, f"{field} length")
        raw = self.take(n, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{field} is not valid UTF-8 ({exc.reason})") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} trailing bytes after the message")


def _decode_read_request(r: _Reader) -> ReadRequest:
    (n,) = r.unpack(_U16, "channel count")
    if not 1 <= n <= MAX_READ_CHANNELS:
        raise r.fail(f"channel count {n} outside 1..{MAX_READ_CHANNELS}")
    r.need(n * _READ_ENTRY.size + _U32.size, "channel list")
    entries = tuple(r.unpack(_READ_ENTRY, "channel entry") for _ in range(n))
    (max_samples,) = r.unpack(_U32, "max_samples")
    return ReadRequest(tuple((int(c), int(s)) for c, s in entries), max_samples)


def _decode_list_response(r: _Reader) -> ListChannelsResponse:
    (n,) = r.unpack(_U16, "channel count")
    # Each entry is at least 12 bytes, so a lying count fails here before we loop over it.
    r.need(n * (_CHANNEL_FIXED.size + 2), "channel list")
    channels = []
    for _ in range(n):
        cid, rate = r.unpack(_CHANNEL_FIXED, "channel id/rate")
        name = r.short_str("channel name")
        unit = r.short_str("channel unit")
        channels.append(ChannelInfo(cid, name, unit, rate))
    return ListChannelsResponse(tuple(channels))


def _decode_read_response(r: _Reader) -> ReadResponse:
    (n,) = r.unpack(_U16, "channel count")
    r.need(n * _READ_CHANNEL.size, "channel reads")
    reads = []
    for i in range(n):
        cid, status, reserved, requested, first, nxt, count = r.unpack(_READ_CHANNEL, f"read[{i}] header")
        if status not in (ReadStatus.OK, ReadStatus.GAP):
            raise r.fail(f"read[{i}] status {status} is neither OK(0) nor GAP(1)")
        if reserved != 0:
            raise r.fail(f"read[{i}] reserved byte is {reserved}, must be 0")
        # Length checked against what is really there before numpy looks at it; then a view, no copy.
        r.need(count * SAMPLE_SIZE, f"read[{i}] samples ({count} x {SAMPLE_SIZE} bytes)")
        rec = np.frombuffer(r.data, dtype=SAMPLE_DTYPE, count=count, offset=r.pos)
        r.pos += count * SAMPLE_SIZE
        reads.append(
            ChannelRead(
                channel_id=cid,
                gap=status == ReadStatus.GAP,
                requested_seq=requested,
                first_seq=first,
                next_seq=nxt,
                t_ns=rec["t_ns"].astype(np.int64),
                values=rec["value"].astype(np.float64),
            )
        )
    return ReadResponse(tuple(reads))


def _decode_status_response(r: _Reader) -> StatusResponse:
    now_ns, retention_s, speed, count = r.unpack(_STATUS_FIXED, "status fields")
    system = r.short_str("system")
    line = r.short_str("line")
    return StatusResponse(system, line, now_ns, retention_s, speed, count)


def _decode_error(r: _Reader) -> ErrorResponse:
    code, n = r.unpack(_ERROR_FIXED, "error code/length")
    raw = r.take(n, "error message")
    try:
        message = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise r.fail(f"error message is not valid UTF-8 ({exc.reason})") from None
    if code in _KNOWN_ERROR_CODES:
        code = ErrorCode(code)  # unknown codes from a newer peer stay plain ints so nothing is lost
    return ErrorResponse(code, message)


def decode_message(frame: Frame) -> Message:
    """Interpret a frame's payload; malformed payloads raise ProtocolError carrying the request id."""
    try:
        msg_type = MsgType(frame.msg_type)
    except ValueError:
        raise ProtocolError(
            f"unknown message type 0x{frame.msg_type:02x}", ErrorCode.UNKNOWN_TYPE, frame.request_id
        ) from None
    r = _Reader(frame.payload, msg_type.name, frame.request_id)
    msg: Message
    if msg_type is MsgType.LIST_CHANNELS:
        msg = ListChannelsRequest()
    elif msg_type is MsgType.STATUS:
        msg = StatusRequest()
    elif msg_type is MsgType.READ:
        msg = _decode_read_request(r)
    elif msg_type is MsgType.LIST_CHANNELS_RESP:
        msg = _decode_list_response(r)
    elif msg_type is MsgType.READ_RESP:
        msg = _decode_read_response(r)
    elif msg_type is MsgType.STATUS_RESP:
        msg = _decode_status_response(r)
    else:
        msg = _decode_error(r)
    r.end()
    return msg


def decode_frames(data: bytes) -> list[Message]:
    """Decode a byte string holding whole frames (tests and tools); leftovers are an error."""
    dec = FrameDecoder()
    frames = dec.feed(data)
    if dec.buffered:
        raise ProtocolError(f"{dec.buffered} bytes of an incomplete frame at end of data")
    return [decode_message(f) for f in frames]
