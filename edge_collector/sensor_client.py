"""Async client for the sensor system's binary protocol: one TCP connection, many in-flight requests.

Responses are matched to requests by request id, so callers may issue requests concurrently. Failure
modes are kept distinct because the collector reacts differently to each:
- SensorError: the server answered with a structured ERROR frame (connection stays usable);
- ProtocolError: bytes on the wire were malformed (bad CRC, bad framing); the stream cannot be
  re-synchronised, so the connection is closed and every pending request fails;
- ConnectionError: the connection dropped (pending requests fail, later calls fail until reconnect);
- TimeoutError: no response within the per-request timeout (asyncio.timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterable
from typing import TypeVar

from factory_core.protocol import (
    MAX_REQUEST_ID,
    ChannelInfo,
    ChannelRead,
    ErrorCode,
    ErrorResponse,
    FrameDecoder,
    ListChannelsRequest,
    ListChannelsResponse,
    Message,
    ProtocolError,
    ReadRequest,
    ReadResponse,
    StatusRequest,
    StatusResponse,
    decode_message,
    encode_message,
)

__all__ = ["ChannelInfo", "ChannelRead", "ProtocolError", "SensorClient", "SensorError", "StatusResponse"]

_T = TypeVar("_T")

# READ responses are megabytes: small reads (and the StreamReader's default 64 KiB limit, which pauses the
# socket at 128 KiB buffered and re-registers it with epoll on every resume) cost more CPU per sample
# than decoding. Up to 2 x 1 MiB may be buffered per connection before the transport pauses.
_READ_CHUNK = 1 << 20


class SensorError(Exception):
    """Structured ERROR frame from the server: `code` (ErrorCode or int) and the server's message."""

    def __init__(self, code: int, message: str) -> None:
        name = code.name if isinstance(code, ErrorCode) else f"code {code}"
        super().__init__(f"sensor system error {name}: {message}")
        self.code = code
        self.message = message


class SensorClient:
    """One connection to a sensor system; safe for concurrent requests from several tasks."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._recv_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._ids = itertools.count(1)
        self._broken: BaseException | None = None
        self._send_lock = asyncio.Lock()

    async def __aenter__(self) -> SensorClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._broken is None

    async def connect(self) -> None:
        """Open the TCP connection and start the receive loop."""
        if self._writer is not None:
            raise RuntimeError("SensorClient is already connected; close() it first")
        async with asyncio.timeout(self.connect_timeout):
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=_READ_CHUNK
            )
        self._broken = None
        self._recv_task = asyncio.create_task(self._receive_loop(self._reader, FrameDecoder()))

    async def close(self) -> None:
        """Close the connection; pending requests fail with ConnectionError."""
        writer, task = self._writer, self._recv_task
        self._writer = self._reader = None
        self._recv_task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._fail_pending(ConnectionError("client closed the connection"))
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def status(self) -> StatusResponse:
        msg = await self._request(StatusRequest())
        return _expect(msg, StatusResponse)

    async def list_channels(self) -> list[ChannelInfo]:
        msg = await self._request(ListChannelsRequest())
        return list(_expect(msg, ListChannelsResponse).channels)

    async def read(self, requests: Iterable[tuple[int, int]], max_samples: int) -> list[ChannelRead]:
        """Read samples since `since_seq` for each (channel_id, since_seq), at most max_samples each."""
        req = ReadRequest(tuple((int(c), int(s)) for c, s in requests), int(max_samples))
        msg = await self._request(req)
        reads = list(_expect(msg, ReadResponse).reads)
        asked = [c for c, _ in req.channels]
        got = [r.channel_id for r in reads]
        if got != asked:
            raise ProtocolError(f"READ response channels {got[:8]} do not match the request {asked[:8]}")
        return reads

    async def _request(self, msg: Message) -> Message:
        if self._broken is not None:
            raise ConnectionError(f"connection unusable: {self._broken}") from self._broken
        writer = self._writer
        if writer is None:
            raise ConnectionError("not connected; call connect() first")
        rid = self._next_id()
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            async with asyncio.timeout(self.timeout):
                async with self._send_lock:
                    writer.write(encode_message(msg, rid))
                    await writer.drain()
                reply = await fut
        except TimeoutError:
            raise  # a subclass of OSError, but the connection is not known to be broken
        except OSError as exc:
            self._mark_broken(ConnectionError(f"send failed: {exc}"))
            raise ConnectionError(f"send failed: {exc}") from exc
        finally:
            self._pending.pop(rid, None)
        if isinstance(reply, ErrorResponse):
            raise SensorError(reply.code, reply.message)
        return reply

    def _next_id(self) -> int:
        while True:
            rid = next(self._ids) % (MAX_REQUEST_ID + 1)
            if rid != 0 and rid not in self._pending:
                return rid

    async def _receive_loop(self, reader: asyncio.StreamReader, decoder: FrameDecoder) -> None:
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    partial = f" with {decoder.buffered} bytes of a frame unread" if decoder.buffered else ""
                    raise ConnectionError(f"server closed the connection{partial}")
                for frame in decoder.feed(data):
                    msg = decode_message(frame)
                    fut = self._pending.get(frame.request_id)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    elif frame.request_id == 0 and isinstance(msg, ErrorResponse):
                        # Connection-level error (server could not read our frame): it closes next.
                        raise SensorError(msg.code, msg.message)
                    # Otherwise a late reply to a request that already timed out: dropped.
        except asyncio.CancelledError:
            raise
        except (ProtocolError, SensorError, ConnectionError) as exc:
            self._mark_broken(exc)
        except OSError as exc:
            self._mark_broken(ConnectionError(f"connection lost: {exc}"))

    def _mark_broken(self, exc: BaseException) -> None:
        """Fail every pending request and refuse new ones: the stream cannot be trusted any more."""
        if self._broken is None:
            self._broken = exc
        self._fail_pending(exc)
        if self._writer is not None:
            self._writer.transport.abort()

    def _fail_pending(self, exc: BaseException) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()


def _expect(msg: Message, kind: type[_T]) -> _T:
    if not isinstance(msg, kind):
        raise ProtocolError(f"expected {kind.__name__}, server sent {type(msg).__name__}")
    return msg
