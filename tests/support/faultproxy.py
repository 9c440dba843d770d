"""Fault-injecting proxies for collector tests: a raw TCP proxy and an S3 (HTTP) proxy.

Why: durability claims only mean something against real sockets failing in real ways. Both proxies
listen on 127.0.0.1 (ephemeral port) and their fault knobs can be changed while traffic flows.

TcpFaultProxy (collector <-> sensor): ``drop_prob`` resets a connection mid-stream, ``corrupt_prob``
flips a byte in a server->client chunk, ``delay_s`` delays each chunk, ``blackhole`` swallows all
bytes (connections stay open, nothing arrives), ``refuse`` closes new connections at once;
``reset_all()`` kills every live connection.

HttpFaultProxy (collector <-> moto): forwards each request to the upstream endpoint; ``error_rate``
answers that fraction with 500 InternalError / 503 SlowDown instead, ``down`` resets every request's
connection without an answer (an outage), ``delay_s`` slows every answer.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse


class TcpFaultProxy:
    """Threaded TCP proxy with live-switchable faults."""

    def __init__(self, target_host: str, target_port: int, seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.drop_prob = 0.0
        self.corrupt_prob = 0.0
        self.delay_s = 0.0
        self.blackhole = False
        self.refuse = False
        self.stats = {"connections": 0, "dropped": 0, "corrupted": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-fault-proxy", daemon=True)
        self._thread.start()

    def _roll(self, p: float) -> bool:
        with self._lock:
            return p > 0 and self._rng.random() < p

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _abort(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self.stats["connections"] += 1
                self._conns |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Shuttle both directions in one thread; faults apply per chunk."""
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if self.blackhole:
                        continue
                    if self._roll(self.drop_prob):
                        with self._lock:
                            self.stats["dropped"] += 1
                        return
                    if src is upstream and self._roll(self.corrupt_prob):
                        buf = bytearray(data)
                        buf[self._rng.randrange(len(buf))] ^= 0xFF
                        data = bytes(buf)
                        with self._lock:
                            self.stats["corrupted"] += 1
                    if self.delay_s:
                        time.sleep(self.delay_s)
                    peers[src].sendall(data)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                _abort(s)
                with self._lock:
                    self._conns.discard(s)

    def reset_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            _abort(s)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.reset_all()


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a reset, like a crashed network path."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade", "trailer"}

_ERRORS = (
    (500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"),
    (503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
)


class HttpFaultProxy:
    """HTTP forwarder in front of an S3 endpoint (moto) injecting 500/503 answers and outages."""

    def __init__(self, upstream_url: str, seed: int = 0) -> None:
        parsed = urlparse(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.error_rate = 0.0
        self.down = False
        self.delay_s = 0.0
        self.stats = {"forwarded": 0, "injected": 0, "refused": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.down:
                    with proxy._lock:
                        proxy.stats["refused"] += 1
                    self.close_connection = True
                    _abort(self.connection)
                    return
                with proxy._lock:
                    inject = proxy.error_rate > 0 and proxy._rng.random() < proxy.error_rate
                    status, payload = proxy._rng.choice(_ERRORS)
                if proxy.delay_s:
                    time.sleep(proxy.delay_s)
                if inject:
                    with proxy._lock:
                        proxy.stats["injected"] += 1
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                with proxy._lock:
                    proxy.stats["forwarded"] += 1
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
