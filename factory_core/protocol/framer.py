"""Framing of the sensor system's wire protocol: header, length, CRC, one frame at a time.

Apart from the messages (pymodbus keeps its framers apart the same way): the framer knows magic,
version, type byte, request id, payload length and CRC-32, and nothing of what a payload means.
Everything the network hands us is untrusted: the decoder checks every length against what is actually
buffered and against MAX_PAYLOAD *before* waiting for or allocating anything, and every malformed input
raises ProtocolError (never struct.error, IndexError or ValueError). See docs/protocol.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"\xfa\xc7"
VERSION = 1
HEADER = struct.Struct(">2sBBII")  # magic, version, msg_type, request_id, payload_len
HEADER_SIZE = HEADER.size  # 12
CRC = struct.Struct(">I")
CRC_SIZE = CRC.size  # 4
MAX_PAYLOAD = 16 * 1024 * 1024
MAX_REQUEST_ID = 0xFFFFFFFF


class MsgType(IntEnum):
    """Message type byte; responses are the request type with the high bit set, ERROR is 0xFF."""

    LIST_CHANNELS = 0x01
    LIST_CHANNELS_RESP = 0x81
    READ = 0x02
    READ_RESP = 0x82
    STATUS = 0x03
    STATUS_RESP = 0x83
    ERROR = 0xFF


_KNOWN_TYPES = frozenset(int(t) for t in MsgType)


class ErrorCode(IntEnum):
    """Structured error codes carried by ERROR frames."""

    UNKNOWN_CHANNEL = 1
    BAD_REQUEST = 2
    UNSUPPORTED_VERSION = 3
    UNKNOWN_TYPE = 4
    TOO_LARGE = 5
    INTERNAL = 6


class ProtocolError(Exception):
    """Malformed, oversized, unknown-type, wrong-version or wrong-CRC input.

    `code` is the ErrorCode a server should answer with; `request_id` is the id of the offending frame when
    its header was readable (0 otherwise).
    """

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@dataclass(frozen=True)
class Frame:
    """One CRC-verified frame; the payload is not interpreted yet."""

    msg_type: int
    request_id: int
    payload: bytes


def encode_frame(msg_type: int, request_id: int, payload: bytes) -> bytes:
    """Header + payload + CRC32(header + payload)."""
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise ValueError(f"request_id {request_id} outside u32")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    head = HEADER.pack(MAGIC, VERSION, msg_type, request_id, len(payload))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, CRC.pack(crc)))


class FrameDecoder:
    """Incremental frame decoder for a byte stream.

    Validates magic, version, type and payload length as soon as those bytes arrive, so a bogus length is
    rejected before anything is buffered for it. Any error is fatal: framing cannot be re-synchronised
    after a bad header or CRC, so the decoder stays failed and the caller must close the connection.

    Why it is shaped this way: READ responses are megabytes, received in many chunks. The header is
    collected in a 12-byte buffer; after it validates, payload chunks are kept as they arrived (no growing
    buffer, no re-slicing) and the CRC is updated per chunk while the chunk is still in cache. The payload
    is joined exactly once when the frame is complete, after the CRC matched.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self._max_payload = min(max_payload, MAX_PAYLOAD)
        self._error: ProtocolError | None = None
        self._reset()

    def _reset(self) -> None:
        self._head = bytearray()  # header bytes of the current frame (< HEADER_SIZE until validated)
        self._chunks: list[bytes | memoryview] = []  # payload chunks received so far
        self._payload_have = 0
        self._payload_len = -1  # -1: header not complete yet
        self._msg_type = 0
        self._request_id = 0
        self._crc = 0  # running CRC32 over header + payload received so far
        self._tail = bytearray()  # received bytes of the trailing CRC

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame (never more than one frame's worth)."""
        return len(self._head) + self._payload_have + len(self._tail)

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data: bytes) -> list[Frame]:
        """Append received bytes; return every frame completed by them."""
        if self._error is not None:
            raise ProtocolError(f"stream unusable after earlier error: {self._error}", self._error.code)
        if not isinstance(data, bytes):
            data = bytes(data)  # chunks are kept by reference: never hold a caller's mutable buffer
        frames: list[Frame] = []
        view = memoryview(data)
        pos, n = 0, len(data)
        try:
            while pos < n:
                if self._payload_len < 0:
                    pos = self._take_header(view, pos)
                    continue
                want = self._payload_len - self._payload_have
                if want:
                    k = min(want, n - pos)
                    piece = data if (pos == 0 and k == n) else view[pos : pos + k]
                    self._chunks.append(piece)
                    self._crc = zlib.crc32(piece, self._crc)
                    self._payload_have += k
                    pos += k
                    continue
                k = min(CRC_SIZE - len(self._tail), n - pos)
                self._tail += view[pos : pos + k]
                pos += k
                if len(self._tail) == CRC_SIZE:
                    frames.append(self._finish())
        except ProtocolError as exc:
            self._error = exc
            self._reset()
            raise
        return frames

    def _take_header(self, view: memoryview, pos: int) -> int:
        """Consume header bytes from view[pos:], validating each field as soon as it is complete."""
        head = self._head
        k = min(HEADER_SIZE - len(head), len(view) - pos)
        head += view[pos : pos + k]
        n = len(head)
        # Reject garbage at the first wrong byte instead of waiting for a full header.
        if head[0] != MAGIC[0] or (n >= 2 and head[1] != MAGIC[1]):
            raise ProtocolError(f"bad magic {bytes(head[:2]).hex()}, expected {MAGIC.hex()}")
        if n >= 3 and head[2] != VERSION:
            raise ProtocolError(
                f"unsupported protocol version {head[2]} (this side speaks {VERSION})",
                ErrorCode.UNSUPPORTED_VERSION,
            )
        if n >= 4 and head[3] not in _KNOWN_TYPES:
            raise ProtocolError(f"unknown message type 0x{head[3]:02x}", ErrorCode.UNKNOWN_TYPE)
        if n == HEADER_SIZE:
            _, _, msg_type, request_id, payload_len = HEADER.unpack_from(head, 0)
            if payload_len > self._max_payload:
                raise ProtocolError(
                    f"payload_len {payload_len} exceeds limit {self._max_payload}",
                    ErrorCode.TOO_LARGE,
                    request_id,
                )
            self._msg_type, self._request_id, self._payload_len = msg_type, request_id, payload_len
            self._crc = zlib.crc32(head)
        return pos + k

    def _finish(self) -> Frame:
        """CRC complete: verify it, then hand out the payload (joined once) and start the next frame."""
        (crc_wire,) = CRC.unpack_from(self._tail, 0)
        if crc_wire != self._crc:
            raise ProtocolError(
                f"CRC mismatch: frame says {crc_wire:08x}, computed {self._crc:08x}",
                ErrorCode.BAD_REQUEST,
                self._request_id,
            )
        chunks = self._chunks
        payload = chunks[0] if len(chunks) == 1 and isinstance(chunks[0], bytes) else b"".join(chunks)
        frame = Frame(self._msg_type, self._request_id, payload)
        self._reset()
        return frame
