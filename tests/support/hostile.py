"""Hostile clients against a real `inference-server serve` process, and a well-behaved client timing it.

Why shared: the hostile-client test suite asserts the latency bound stated in docs/inference.md and the
benchmark (benchmarks/bench_hostile.py) measures the table printed there, with the same attacks. Every
attack is bounded in connections and time and only ever talks to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from factory_sim.demo.services import free_port, wait_for
from tests.support.inference import ADMIN_KEY, API_KEY, lot_body

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
# Limits the suite runs with: the defaults, but shorter timeouts so each attack cycles several times.
LIMITS = {
    "INFERENCE_HEADER_TIMEOUT_S": "1",
    "INFERENCE_BODY_TIMEOUT_S": "1",
    "INFERENCE_IDLE_TIMEOUT_S": "1",
    "INFERENCE_MAX_CONNECTIONS": "128",
}


@dataclass
class Server:
    """A running `inference-server serve` (httptools + uvloop, as in the image)."""

    proc: subprocess.Popen[bytes]
    port: int
    limits: dict[str, str]

    def rss_mb(self) -> float:
        """Resident memory of the server process (VmRSS)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def served(files: dict[str, bytes], limits: dict[str, str] | None = None) -> Iterator[Server]:
    """`inference-server serve` on a free loopback port with ``files`` as its cached model."""
    from inference_server.serving.models import ModelCache
    from quality_model import registry

    limits = {**LIMITS, **(limits or {})}
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        ModelCache(Path(tmp) / "cache").store(files, registry.verify(files))
        port = free_port()
        env = {**os.environ, "INFERENCE_API_KEYS": API_KEY, "INFERENCE_ADMIN_KEYS": ADMIN_KEY,
               "INFERENCE_CACHE_DIR": f"{tmp}/cache", "INFERENCE_SPOOL_DIR": f"{tmp}/spool",
               "INFERENCE_LOG_LEVEL": "WARNING", **limits}  # fmt: skip
        cmd = [sys.executable, "-m", "inference_server.cli", "serve", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for("server ready", lambda: _ready(port), 120, 0.1)
            yield Server(proc, port, limits)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://{HOST}:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Probe:
    """A well-behaved caller: authenticated recommendations on one keep-alive connection, timed."""

    port: int
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event, pause_s: float = 0.01) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=f"http://{HOST}:{self.port}", timeout=10) as client:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    r = client.post("/v1/recommendations", json=lot_body(), headers=headers)
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies_ms.append((time.perf_counter() - started) * 1e3)
                stop.wait(pause_s)

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latencies_ms)
        if not lat:
            return {"requests": 0}
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
        return {"requests": len(lat), "failures": len(self.failures), "p50_ms": q[49], "p99_ms": q[98],
                "max_ms": lat[-1]}  # fmt: skip


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """The server closed it (EOF or reset); what it said first is drained and ignored."""
    sock.settimeout(0)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@dataclass
class AttackResult:
    name: str
    connections: int = 0
    closed_by_server: int = 0
    answers: dict[str, int] = field(default_factory=dict)

    def answered(self, status: bytes) -> None:
        key = status.decode(errors="replace")
        self.answers[key] = self.answers.get(key, 0) + 1


def header_bomb(port: int, stop: threading.Event, result: AttackResult, size: int = 64 << 20) -> None:
    """One header of ``size`` bytes per connection, streamed as fast as the socket takes it, again and again."""
    chunk = b"a" * 65536
    while not stop.is_set():
        with _connect(port) as sock:
            result.connections += 1
            try:
                sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: ")
                sent = 0
                while sent < size and not stop.is_set():
                    sock.sendall(chunk)
                    sent += len(chunk)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                result.closed_by_server += 1
            with contextlib.suppress(OSError):
                sock.settimeout(2)
                result.answered(sock.recv(12)[9:12])


def _hold(port: int, stop: threading.Event, result: AttackResult, count: int,
          opening: bytes, trickle: bytes | None, every_s: float = 0.2) -> None:  # fmt: skip
    """Keep ``count`` connections that sent ``opening`` and then ``trickle`` every ``every_s``; a
    connection the server closes is counted and replaced."""
    socks: list[socket.socket] = []
    try:
        while not stop.is_set():
            while len(socks) < count and not stop.is_set():
                try:
                    sock = _connect(port)
                    if opening:
                        sock.sendall(opening)
                except OSError:
                    result.answered(b"ERR")
                    break
                socks.append(sock)
                result.connections += 1
            stop.wait(every_s)
            alive = []
            for sock in socks:
                if _closed_by_server(sock):
                    result.closed_by_server += 1
                    sock.close()
                    continue
                if trickle:
                    with contextlib.suppress(OSError):
                        sock.sendall(trickle)
                alive.append(sock)
            socks = alive
    finally:
        for sock in socks:
            sock.close()


def slowloris_headers(port: int, stop: threading.Event, result: AttackResult, count: int = 100) -> None:
    _hold(port, stop, result, count, b"GET /health/live HTTP/1.1\r\nHost: x\r\n", b"X: y\r\n")


def slowloris_body(port: int, stop: threading.Event, result: AttackResult, count: int = 100) -> None:
    head = (
        "POST /v1/recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    _hold(port, stop, result, count, head + b"{", b" ")


def idle_sockets(port: int, stop: threading.Event, result: AttackResult, count: int = 100) -> None:
    _hold(port, stop, result, count, b"", None)


def connection_flood(port: int, stop: threading.Event, result: AttackResult, count: int = 0) -> None:
    """Twice the connection cap, each sending a slow head (so none completes a request)."""
    cap = int(LIMITS["INFERENCE_MAX_CONNECTIONS"])
    _hold(port, stop, result, count or 2 * cap, b"GET /health/live HTTP/1.1\r\n", b"X: y\r\n")


ATTACKS: dict[str, Callable[..., None]] = {
    "header bomb (64 MiB header, repeated)": header_bomb,
    "slowloris on headers (100 connections)": slowloris_headers,
    "slowloris on body (100 connections)": slowloris_body,
    "idle sockets (100 connections)": idle_sockets,
    "connection flood (2 x the cap)": connection_flood,
}


def measure(server: Server, attack: Callable[..., None] | None, seconds: float) -> dict[str, Any]:
    """The probe's latency while ``attack`` runs (None: no attack), plus the server's RSS after it."""
    stop = threading.Event()
    probe = Probe(server.port)
    result = AttackResult(getattr(attack, "__name__", "none"))
    threads = [threading.Thread(target=probe.run, args=(stop,), daemon=True)]
    if attack is not None:
        threads.append(threading.Thread(target=attack, args=(server.port, stop, result), daemon=True))
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(30)
    return {**probe.summary(), "failures_seen": probe.failures[:3], "attack": result}
