"""Hostile clients over real sockets against `inference-server serve` (httptools + uvloop, as the image runs).

The bound stated in docs/inference.md: while any ONE of these attacks runs, a well-behaved authenticated
caller on a keep-alive connection gets every answer, with p99 latency under 250 ms (a few ms without
attack); the attacker's connections are closed by the limits; the server's memory returns to baseline.
Asserted here with generous margins (a loaded 2-core CI machine): p99 < 1 s, max < 2 s, RSS within
+40 MB. Before issue 14 the header bomb stalled callers for seconds and slow connections were never closed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from quality_model import registry
from tests.support import hostile
from tests.support.inference import trained

ATTACK_S = 4.0


@pytest.fixture(scope="module")
def server() -> Iterator[hostile.Server]:
    with hostile.served(registry.serialize(trained(7.0), 1)) as srv:
        hostile.measure(srv, None, 1.0)  # warm up (first requests, allocator)
        yield srv


def _assert_bound(r: dict) -> None:
    assert r["failures"] == 0, r["failures_seen"]
    assert r["requests"] >= 20, r
    assert r["p99_ms"] < 1000 and r["max_ms"] < 2000, r


def _under(server: hostile.Server, attack: Callable[..., None]) -> hostile.AttackResult:
    baseline = server.rss_mb()
    r = hostile.measure(server, attack, ATTACK_S)
    _assert_bound(r)
    time.sleep(1.5)  # the last attacker connections time out
    assert server.rss_mb() < baseline + 40, (baseline, server.rss_mb())
    return r["attack"]


def test_a_header_bomb_is_refused_431_without_stalling_other_callers(server: hostile.Server) -> None:
    result = _under(server, hostile.header_bomb)
    assert result.connections >= 2 and result.answers.get("431", 0) >= 1, result


def test_slowloris_headers_are_cut_at_the_header_timeout(server: hostile.Server) -> None:
    result = _under(server, hostile.slowloris_headers)
    assert result.closed_by_server >= 100, result  # every round of 100 closed after ~1 s


def test_slowloris_bodies_are_cut_at_the_body_timeout(server: hostile.Server) -> None:
    result = _under(server, hostile.slowloris_body)
    assert result.closed_by_server >= 100, result


def test_idle_sockets_are_closed_at_the_idle_timeout(server: hostile.Server) -> None:
    result = _under(server, hostile.idle_sockets)
    assert result.closed_by_server >= 100, result


def test_a_connection_flood_beyond_the_cap_never_holds_more_than_the_cap(server: hostile.Server) -> None:
    result = _under(server, hostile.connection_flood)
    cap = int(hostile.LIMITS["INFERENCE_MAX_CONNECTIONS"])
    assert result.connections > cap and result.closed_by_server >= cap, result


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(100)) + b"\r\n",
         b"431"),
        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    ],
)  # fmt: skip
def test_limit_refusals_follow_the_error_contract(
    server: hostile.Server, request_bytes: bytes, status: bytes
) -> None:
    with socket.create_connection((hostile.HOST, server.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 " + status), answer[:300]
    assert (
        b"x-request-id: " in head.lower() and b'"request_id":"' in body and b'"fallback":"operator"' in body
    )
