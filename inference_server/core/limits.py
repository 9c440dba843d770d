"""Connection limits enforced in the server process: header size and count, URL, timeouts, a connection cap.

Why a protocol subclass: uvicorn's httptools protocol (the one the image runs) has no header limit at all
(httptools accumulates one header value in Python bytes, so a 64 MiB header cost seconds of event-loop
CPU and memory never given back), no timeout before the first request or while headers or a body
trickle in, and no connection cap. An ASGI middleware only sees a request once its headers are complete,
too late for all of these. ``guarded_protocol(limits)`` returns uvicorn's ``HttpToolsProtocol`` with:

* the head of a request (request line + headers) counted in raw bytes BEFORE they reach the parser:
  above ``max_header_bytes`` -> 431; more than ``max_headers`` fields -> 431; a URL above
  ``max_url_bytes`` -> 414;
* one deadline per phase: a connection with no request in progress is closed after ``idle_timeout_s``
  (uvicorn's keep-alive timer after a response, ours before the first request); a started head must
  be complete within ``header_timeout_s`` (else 408), a body within ``body_timeout_s`` of its headers;
* at ``max_connections`` open connections, a new one evicts the least recently active connection that
  has no request running in the app (idle or still sending its head), else it is refused (503).

Every refusal is the contract's JSON error body with a request id (body and ``X-Request-ID``) and
``Connection: close``. Requests in the app are never cut by these limits (the deadline covers them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from inference_server.api.errors import new_request_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    """The INFERENCE_* limit settings (docs/configuration.md), as the protocol uses them."""

    max_header_bytes: int = 16_384
    max_headers: int = 64
    max_url_bytes: int = 2048
    idle_timeout_s: float = 5.0
    header_timeout_s: float = 5.0
    body_timeout_s: float = 5.0
    max_connections: int = 512


class _Refuse(Exception):
    """Raised from a parser callback: answer ``status`` and close (the parser is abandoned)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def refusal(status: int, error: str, detail: str) -> bytes:
    """A complete HTTP/1.1 response in the contract's error shape, closing the connection."""
    rid = new_request_id()
    body = json.dumps(
        {"error": error, "fallback": "operator", "detail": detail, "request_id": rid}, separators=(",", ":")
    ).encode()
    head = (
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\nx-request-id: {rid}\r\n"
        "connection: close\r\n\r\n"
    )
    return STATUS_LINE[status] + head.encode() + body


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with ``limits`` (one class per server: it holds the LRU of connections)."""
    lru: OrderedDict[GuardedProtocol, None] = OrderedDict()  # least recently active first

    class GuardedProtocol(HttpToolsProtocol):
        _limits = limits

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._in_head, self._head_bytes, self._header_count = True, 0, 0
            self._head_started = False
            self._deadline: asyncio.TimerHandle | None = None
            lru[self] = None
            if len(self.connections) > limits.max_connections and not self._evict_one():
                self._refuse(503, "too_many_connections", f"{limits.max_connections} connections open, "
                             "all with a request running", announce=True)  # fmt: skip
                return
            self._arm(limits.idle_timeout_s, 408, "idle connection")

        def connection_lost(self, exc: Exception | None) -> None:
            lru.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

        # -- limits on the head -------------------------------------------------------------------
        def data_received(self, data: bytes) -> None:
            if self._in_head:
                if not self._head_started:
                    self._head_started = True
                    self._arm(limits.header_timeout_s, 408, f"request head not complete within "
                              f"{limits.header_timeout_s:g} s")  # fmt: skip
                room = limits.max_header_bytes - self._head_bytes
                if len(data) > room:  # feed what fits; the head must end inside it
                    head, rest = data[: room + 1], data[room + 1 :]
                    self._head_bytes += len(head)
                    self._feed(head)
                    if self._in_head and not self.transport.is_closing():
                        self._refuse(431, "headers_too_large",
                                     f"request line + headers larger than {limits.max_header_bytes} bytes")  # fmt: skip
                    elif rest and not self.transport.is_closing():
                        self.data_received(rest)
                    return
                self._head_bytes += len(data)
            self._feed(data)

        def _feed(self, data: bytes) -> None:
            self._unset_keepalive_if_required()
            try:
                self.parser.feed_data(data)
            except _Refuse as exc:
                self._refuse(exc.status, exc.error, exc.detail)
            except httptools.HttpParserCallbackError as exc:
                cause = exc.__context__
                if isinstance(cause, _Refuse):
                    self._refuse(cause.status, cause.error, cause.detail)
                else:
                    self._refuse(400, "bad_request", "malformed HTTP request")
            except httptools.HttpParserError:
                self._refuse(400, "bad_request", "malformed HTTP request")
            except httptools.HttpParserUpgrade:
                self._refuse(400, "bad_request", "protocol upgrades are not served")

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            if len(self.url) > limits.max_url_bytes:
                raise _Refuse(414, "uri_too_long", f"request target longer than {limits.max_url_bytes} bytes")

        def on_header(self, name: bytes, value: bytes) -> None:
            self._header_count += 1
            if self._header_count > limits.max_headers:
                raise _Refuse(431, "headers_too_large", f"more than {limits.max_headers} header fields")
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._arm(
                limits.body_timeout_s, 408, f"request body not complete within {limits.body_timeout_s:g} s"
            )
            lru.move_to_end(self)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            self._in_head, self._head_bytes, self._header_count, self._head_started = True, 0, 0, False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            lru.move_to_end(self)
            super().on_response_complete()

        # -- timers, eviction, refusals -----------------------------------------------------------
        def _arm(self, delay: float, status: int, detail: str) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(delay, self._expired, status, detail)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self, status: int, detail: str) -> None:
            self._deadline = None
            self._refuse(status, "request_timeout", detail)

        def _busy(self) -> bool:
            """A request is in the app (from its headers until its response is complete)."""
            return self.cycle is not None and not self.cycle.response_complete and not self._in_head

        def _evict_one(self) -> bool:
            for victim in lru:
                if victim is not self and not victim._busy():
                    victim._refuse(503, "too_many_connections",
                                   f"closed for a new connection: {limits.max_connections} open")  # fmt: skip
                    return True
            return False

        def _refuse(self, status: int, error: str, detail: str, announce: bool = False) -> None:
            """Close the connection; answer first when a request is waiting for one (or ``announce``).

            A connection with no request started (idle, or just opened) is closed without a word: an
            unsolicited response would be read as the answer to the client's next request."""
            self._disarm()
            lru.pop(self, None)
            if self.transport.is_closing():
                return
            waiting = self._in_head and self._head_started
            if announce or waiting or (self.cycle is not None and not self.cycle.response_started):
                self.transport.write(refusal(status, error, detail))
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # the app sees http.disconnect, its writes are dropped
                self.cycle.message_event.set()
            log.info("connection closed by a limit", extra={"fields": {"event": "connection_limit",
                     "status": status, "error": error, "detail": detail, "client": _peer(self)}})  # fmt: skip
            self.transport.close()

    return GuardedProtocol


def _peer(protocol: Any) -> str | None:
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else None
