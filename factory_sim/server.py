"""The simulated sensor system: an asyncio TCP server speaking factory_core.protocol for one line.

A virtual clock runs at `speed` x real time from `start_ns`. As it advances, the server generates each
channel's new samples with factory_sim.signals.generate (the same function the history generator uses,
so served samples are byte-identical to history) and keeps exactly the last `retention_s` of every
channel in a ring buffer: with head = next seq to be produced, the oldest retained seq is
max(0, head - retention_s * rate_hz). At start-up the ring is pre-filled with that window, as if the
system had been running. Reads older than the window get what remains, flagged GAP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from factory_core.protocol import (
    MAX_PAYLOAD,
    READ_CHANNEL_HEADER_SIZE,
    SAMPLE_DTYPE,
    SAMPLE_SIZE,
    ChannelInfo,
    ErrorCode,
    ErrorResponse,
    Frame,
    FrameDecoder,
    ListChannelsRequest,
    ListChannelsResponse,
    Message,
    ProtocolError,
    ReadRequest,
    RecordRead,
    StatusRequest,
    StatusResponse,
    decode_message,
    encode_message,
    encode_read_response_frame,
)
from factory_sim.channels import Channel, build_channels, seq_at
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.faults import Fault, FaultConfig, FaultPlan, add_fault_arguments, fault_config_from_args
from factory_sim.schedule import LineTimeline
from factory_sim.signals import generate

log = logging.getLogger("factory_sim.server")

MAX_REQUEST_PAYLOAD = 1 << 20  # requests are small; anything bigger is refused with TOO_LARGE
SYSTEM_NAME = "factory-sim"
CLOSE_TIMEOUT_S = 5.0  # longest a closing connection may take to flush before it is aborted


class VirtualClock:
    """Virtual time = start_ns + speed * (real monotonic time elapsed since construction)."""

    def __init__(self, start_ns: int, speed: float, monotonic_ns: Callable[[], int] = time.monotonic_ns):
        if not speed > 0 or not math.isfinite(speed):
            raise ValueError(f"speed: must be a finite number > 0, got {speed!r}")
        self.start_ns = start_ns
        self.speed = speed
        self._mono = monotonic_ns
        self._t0 = monotonic_ns()

    def now_ns(self) -> int:
        return self.start_ns + int((self._mono() - self._t0) * self.speed)


class ChannelRing:
    """Exactly the last `capacity` samples of one channel, stored in wire format at index seq % capacity.

    Keeping the ring as big-endian (t_ns, value) records makes a READ a slice copy, no per-sample work.
    """

    def __init__(self, channel: Channel, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity for {channel.name} must be >= 1, got {capacity}")
        self.channel = channel
        self.capacity = capacity
        self.rec = np.zeros(capacity, dtype=SAMPLE_DTYPE)
        self.head = 0  # next seq to be produced
        self.oldest = 0  # oldest retained seq

    def append(self, seq0: int, t_ns: np.ndarray, values: np.ndarray) -> None:
        """Store samples seq0 .. seq0+n-1; seq0 must be the head or beyond (skipped seqs are dropped)."""
        n = len(t_ns)
        if seq0 < self.head:
            raise ValueError(f"{self.channel.name}: append at seq {seq0} behind head {self.head}")
        if n > self.capacity:  # only the newest `capacity` survive
            skip = n - self.capacity
            seq0, t_ns, values, n = seq0 + skip, t_ns[skip:], values[skip:], self.capacity
        i = seq0 % self.capacity
        first = min(n, self.capacity - i)
        self.rec["t_ns"][i : i + first] = t_ns[:first]
        self.rec["value"][i : i + first] = values[:first]
        if first < n:
            self.rec["t_ns"][: n - first] = t_ns[first:]
            self.rec["value"][: n - first] = values[first:]
        new_head = seq0 + n
        self.oldest = max(self.oldest if seq0 == self.head else seq0, new_head - self.capacity, 0)
        self.head = new_head

    def read(self, since: int, max_samples: int) -> tuple[bool, int, tuple[np.ndarray, ...]]:
        """(gap, first_seq, record chunks) for samples from `since`, at most max_samples.

        The chunks are views into the ring (two when the range wraps); copy them before the ring moves.
        """
        gap = since < self.oldest
        first = self.oldest if gap else since
        count = max(0, min(max_samples, self.head - first))
        if count == 0:
            return gap, first, ()
        i = first % self.capacity
        end = i + count
        if end <= self.capacity:
            return gap, first, (self.rec[i:end],)
        return gap, first, (self.rec[i:], self.rec[: end - self.capacity])


def ring_capacity(channel: Channel, retention_s: float) -> int:
    """retention_s * rate_hz, which must be a whole number of samples so retention is exact."""
    exact = retention_s * channel.rate_hz
    cap = round(exact)
    if cap < 1 or abs(exact - cap) > 1e-6:
        raise ValueError(
            f"retention_s: {retention_s} s x {channel.rate_hz} Hz ({channel.name}) must be a whole number "
            "of samples (>= 1)"
        )
    return cap


class SensorServer:
    """One line's sensor system on one TCP port. Use as `async with SensorServer(...) as srv:`."""

    def __init__(
        self,
        cfg: SimConfig,
        line: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        start_ns: int | None = None,
        faults: FaultConfig | None = None,
        policy: Any = None,
        tick_s: float = 0.25,
        clock: Callable[[], int] | None = None,
        system: str = SYSTEM_NAME,
    ) -> None:
        self.cfg = cfg
        self.line = line if line is not None else cfg.lines[0]
        if self.line not in cfg.lines:
            raise ValueError(f"line: {self.line!r} is not one of the configured lines {cfg.lines}")
        if not tick_s > 0:
            raise ValueError(f"tick_s: must be > 0, got {tick_s!r}")
        self.host = host
        self._port = port
        self.speed = speed
        self.tick_s = tick_s
        self.system = system
        self.channels = build_channels(cfg)
        self._by_id = {ch.id: ch for ch in self.channels}
        self.rings = {ch.id: ChannelRing(ch, ring_capacity(ch, cfg.retention_s)) for ch in self.channels}
        if clock is None:
            start = time.time_ns() if start_ns is None else start_ns
            clock = VirtualClock(start, speed).now_ns
        self.clock = clock
        # Productions before the server started are history (craftsman-decided, identical to the
        # history generator); the policy only decides productions starting from now on.
        self.timeline = LineTimeline(
            cfg, self.line, policy=policy, policy_since_ns=clock() if policy is not None else None
        )
        self.faults = FaultPlan(faults or FaultConfig())
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._list_reply = ListChannelsResponse(
            tuple(ChannelInfo(ch.id, ch.name, ch.unit, ch.rate_hz) for ch in self.channels)
        )
        self.stats = {"connections": 0, "requests": 0, "errors_sent": 0, "protocol_errors": 0}

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Fill the retention window, start the virtual-clock ticker and listen."""
        self.advance()
        self._ticker = asyncio.create_task(self._tick_loop(), name=f"sensor-ticker-{self.line}")
        self._server = await asyncio.start_server(self._on_connection, self.host, self._port)
        log.info(
            "sensor system listening",
            extra={"fields": {"line": self.line, "host": self.host, "port": self.port, "speed": self.speed}},
        )

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._stopping = True
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("sensor server %s: connections still attached after stop", self.line)
            self._server = None
            self._stopping = False

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> SensorServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------------------------- generation

    def advance(self) -> None:
        """Generate every sample whose timestamp is <= virtual now (only what the ring can keep)."""
        self._store(self._generate(self.clock()))

    def _generate(self, now_ns: int) -> list[tuple[ChannelRing, int, np.ndarray, np.ndarray]]:
        """New samples of every channel up to now_ns; reads ring heads but does not modify the rings,
        so it can run in a worker thread (a live policy may block on an HTTP call inside generate)."""
        out = []
        for ch in self.channels:
            ring = self.rings[ch.id]
            head = max(0, seq_at(ch, now_ns + 1))  # first seq strictly after now
            if head <= ring.head:
                continue
            seq0 = max(ring.head, head - ring.capacity, 0)
            t_ns, values = generate(self.timeline, ch, seq0, head)
            out.append((ring, seq0, t_ns, values))
        return out

    @staticmethod
    def _store(batch: list[tuple[ChannelRing, int, np.ndarray, np.ndarray]]) -> None:
        for ring, seq0, t_ns, values in batch:
            ring.append(seq0, t_ns, values)

    async def _tick_loop(self) -> None:
        """Generation runs in a worker thread; rings are only written here, on the event loop."""
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self._store(await asyncio.to_thread(self._generate, self.clock()))
            except Exception:
                log.exception("sample generation failed; retrying next tick")

    # ----------------------------------------------------------------------------------- requests

    def respond(self, msg: Message, request_id: int) -> bytes | bytearray:
        """The complete reply frame for a decoded request."""
        if isinstance(msg, ReadRequest):
            return self._read_reply(msg, request_id)
        if isinstance(msg, ListChannelsRequest):
            return encode_message(self._list_reply, request_id)
        if isinstance(msg, StatusRequest):
            status = StatusResponse(
                system=self.system,
                line=self.line,
                now_ns=self.clock(),
                retention_s=self.cfg.retention_s,
                speed=self.speed,
                channel_count=len(self.channels),
            )
            return encode_message(status, request_id)
        return self._error(
            request_id, ErrorCode.BAD_REQUEST, f"{type(msg).__name__} is a response, not a request"
        )

    def _read_reply(self, req: ReadRequest, request_id: int) -> bytes | bytearray:
        unknown = sorted({cid for cid, _ in req.channels if cid not in self._by_id})
        if unknown:
            return self._error(
                request_id,
                ErrorCode.UNKNOWN_CHANNEL,
                f"unknown channel id(s) {unknown[:16]}; see LIST_CHANNELS",
            )
        n = len(req.channels)
        # Keep the reply within MAX_PAYLOAD by lowering the per-channel cap; readers continue from
        # first_seq + count, so a smaller batch loses nothing.
        budget = (MAX_PAYLOAD - 2 - n * READ_CHANNEL_HEADER_SIZE) // (n * SAMPLE_SIZE)
        cap = min(req.max_samples, budget)
        reads = []
        for cid, since in req.channels:
            ring = self.rings[cid]
            gap, first, chunks = ring.read(since, cap)
            reads.append(RecordRead(cid, gap, since, first, ring.head, chunks))
        return encode_read_response_frame(request_id, reads)

    def _error(self, request_id: int, code: ErrorCode, message: str) -> bytes:
        self.stats["errors_sent"] += 1
        return encode_message(ErrorResponse(code, message), request_id)

    def _reply_to_frame(self, msg_type: int, request_id: int, payload: bytes) -> bytes | bytearray:
        try:
            msg = decode_message(Frame(msg_type, request_id, payload))
        except ProtocolError as exc:
            return self._error(request_id, exc.code, str(exc))
        try:
            return self.respond(msg, request_id)
        except Exception as exc:
            log.exception("internal error answering request %d", request_id)
            return self._error(request_id, ErrorCode.INTERNAL, f"internal error: {type(exc).__name__}")

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.stats["connections"] += 1
        peer = writer.get_extra_info("peername")
        decoder = FrameDecoder(max_payload=MAX_REQUEST_PAYLOAD)
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    return
                try:
                    frames = decoder.feed(data)
                except ProtocolError as exc:
                    # Framing is lost: say why (best effort) and close; the stream cannot be resynced.
                    self.stats["protocol_errors"] += 1
                    log.warning("closing %s after protocol error: %s", peer, exc)
                    writer.write(self._error(exc.request_id, exc.code, str(exc)))
                    await writer.drain()
                    return
                for frame in frames:
                    self.stats["requests"] += 1
                    reply = self._reply_to_frame(frame.msg_type, frame.request_id, frame.payload)
                    if not await self._send(writer, reply):
                        return
        except (ConnectionError, OSError) as exc:
            log.info("connection %s lost: %s", peer, exc)
        except asyncio.CancelledError:
            # stop() cancels open connections; ending quietly avoids asyncio 3.11's streams callback
            # logging the cancellation as an error.
            log.debug("connection %s closed by server shutdown", peer)
        finally:
            self._connections.discard(task)
            await self._close_writer(writer)

    async def _close_writer(self, writer: asyncio.StreamWriter) -> None:
        """Close gracefully (flushing what was sent), but never wait on a peer that stopped reading:
        a stuck flush would also hang stop() through Server.wait_closed."""
        writer.close()
        try:
            async with asyncio.timeout(0.0 if self._stopping else CLOSE_TIMEOUT_S):
                await writer.wait_closed()
        except (TimeoutError, OSError, asyncio.CancelledError):
            writer.transport.abort()

    async def _send(self, writer: asyncio.StreamWriter, frame: bytes | bytearray) -> bool:
        """Send one reply, applying the configured fault; False when the connection must end."""
        fault = self.faults.next_fault()
        if fault is Fault.DELAY:
            await asyncio.sleep(self.faults.config.delay_s)
        elif fault is Fault.DROP:
            writer.write(self.faults.drop_prefix(frame))
            await writer.drain()
            writer.transport.abort()
            return False
        elif fault is Fault.TRUNCATE:
            frame = self.faults.truncate(frame)
        elif fault is Fault.CORRUPT:
            frame = self.faults.corrupt(frame)
        writer.write(frame)
        await writer.drain()
        return True


# ------------------------------------------------------------------------------------------------ CLI


def _parse_start(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--start: {text!r} is not an ISO 8601 timestamp (e.g. 2026-03-01T06:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    t_ns = (delta.days * 86400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000
    if t_ns < ORIGIN_NS:
        raise ValueError(
            f"--start: must be at or after 2026-01-01T00:00:00Z (seq 0 of every channel), got {text!r}"
        )
    return t_ns


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="factory-sim serve",
        description="Run the simulated sensor system (binary TCP protocol, docs/protocol.md): one server per "
        "line, on --port, --port+1, ... (port 0: each ephemeral). Prints one JSON line per listening server.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="first TCP port; 0 = ephemeral (default 0)")
    p.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    p.add_argument(
        "--lines", nargs="+", default=["L1"], help="line names, space or comma separated (default L1)"
    )
    p.add_argument("--speed", type=float, default=1.0, help="virtual seconds per real second (default 1)")
    p.add_argument("--start", default=None, help="virtual start time, ISO 8601 (default: now)")
    p.add_argument("--retention-s", type=float, default=600.0, help="seconds kept per channel (default 600)")
    p.add_argument("--fast-rate-hz", type=float, default=10.0, help="fast channel rate (default 10)")
    p.add_argument("--slow-rate-hz", type=float, default=1.0, help="slow channel rate (default 1)")
    p.add_argument(
        "--extra-channels", type=int, default=0, help="extra vib_band_XX fast channels (default 0)"
    )
    p.add_argument(
        "--tick-ms", type=float, default=250.0, help="real ms between generation ticks (default 250)"
    )
    p.add_argument("--endpoint", default=None, help="recommendation endpoint URL for the live line's policy")
    p.add_argument(
        "--api-key-env",
        default="FACTORY_API_KEY",
        help="env var holding the endpoint's API key (with --endpoint)",
    )
    p.add_argument("--deadline-ms", type=float, default=200.0, help="endpoint deadline per production (ms)")
    p.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    add_fault_arguments(p)
    return p


def _build_policy(args: argparse.Namespace, line: str) -> Any:
    """factory_sim.control.HttpPolicy for `line` when --endpoint is given (None: craftsman on shift)."""
    if args.endpoint is None:
        return None
    api_key = os.environ.get(args.api_key_env)
    if not api_key:
        raise ValueError(f"--api-key-env: environment variable {args.api_key_env} is not set or empty")
    if not args.deadline_ms > 0:
        raise ValueError(f"--deadline-ms: must be > 0, got {args.deadline_ms}")
    from factory_sim.control import HttpPolicy

    return HttpPolicy(args.endpoint, api_key, args.deadline_ms / 1000.0, line)


def _configure_logging(level: str) -> None:
    try:
        from factory_core.logs import configure_json_logging
    except ImportError:
        logging.basicConfig(level=level.upper(), stream=sys.stderr)
    else:
        configure_json_logging(level.upper())


async def _serve(servers: Sequence[SensorServer]) -> None:
    for srv in servers:
        await srv.start()
        print(
            json.dumps({"event": "listening", "line": srv.line, "host": srv.host, "port": srv.port}),
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for srv in servers:
            await srv.stop()


def cli(argv: list[str]) -> int:
    """`factory-sim serve`: run one sensor-system server per line until SIGINT/SIGTERM."""
    args = _build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    lines = tuple(name for item in args.lines for name in item.split(",") if name)
    try:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port: {args.port} outside 0..65535")
        if args.port and args.port + len(lines) - 1 > 65535:
            raise ValueError(f"--port: {args.port} + {len(lines)} lines exceeds 65535")
        cfg = SimConfig(
            seed=args.seed,
            lines=lines,
            fast_rate_hz=args.fast_rate_hz,
            slow_rate_hz=args.slow_rate_hz,
            extra_channels=args.extra_channels,
            retention_s=args.retention_s,
        )
        start_ns = _parse_start(args.start)
        faults = fault_config_from_args(args)
        common = {"host": args.host, "speed": args.speed, "faults": faults, "tick_s": args.tick_ms / 1000.0}
        # One virtual clock for all lines so they agree on "now".
        clock = VirtualClock(time.time_ns() if start_ns is None else start_ns, args.speed).now_ns
        policies = {line: _build_policy(args, line) for line in lines}
        servers = [
            SensorServer(
                cfg,
                line,
                port=args.port + i if args.port else 0,
                policy=policies[line],
                clock=clock,
                **common,
            )
            for i, line in enumerate(lines)
        ]
    except ValueError as exc:
        print(f"factory-sim serve: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(servers))
    except OSError as exc:
        print(f"factory-sim serve: cannot listen: {exc}", file=sys.stderr)
        return 1
    finally:
        for policy in policies.values():
            if policy is not None:
                policy.close()
    return 0
