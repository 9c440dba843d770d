"""The simulated sensor system over real TCP on 127.0.0.1 with the real client: retention and gaps,
identity with factory_sim.signals.generate, concurrency, injected faults, hostile peers and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from edge_collector.sensor_client import SensorClient, SensorError
from factory_core.protocol import (
    MAX_PAYLOAD,
    ErrorCode,
    ErrorResponse,
    FrameDecoder,
    MsgType,
    ProtocolError,
    ReadRequest,
    StatusRequest,
    StatusResponse,
    decode_message,
    encode_frame,
    encode_message,
)
from factory_sim.channels import build_channels, seq_at
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.craftsmen import Decision
from factory_sim.faults import Fault, FaultConfig, parse_schedule
from factory_sim.physics import Params
from factory_sim.schedule import LineTimeline
from factory_sim.server import ChannelRing, SensorServer, VirtualClock
from factory_sim.signals import generate

ROOT = Path(__file__).resolve().parents[2]
DAY_NS = 86400 * NS_PER_S
START = ORIGIN_NS + 40 * DAY_NS + 7 * 3600 * NS_PER_S  # mid-morning shift, productions running
CFG = SimConfig(seed=11)
FAST = 2  # temp_zone1, 10 Hz
SLOW = 21  # sp_temperature, 1 Hz


class ManualClock:
    """Virtual time that only moves when the test says so: exact bounds without timing."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 60))


def _assert_matches_generate(read, cfg: SimConfig = CFG, line: str = "L1") -> None:
    """Served samples are byte-identical to an independent generate() call for the same seed."""
    ch = {c.id: c for c in build_channels(cfg)}[read.channel_id]
    t, v = generate(LineTimeline(cfg, line), ch, read.first_seq, read.first_seq + read.count)
    assert np.array_equal(read.t_ns, t)
    assert read.values.tobytes() == v.tobytes()


# ------------------------------------------------------------------------------------------- basics


def test_list_channels_and_status_describe_the_line() -> None:
    async def body() -> None:
        clock = ManualClock(START)
        async with (
            SensorServer(CFG, "L1", clock=clock, speed=5.0) as srv,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            chans = await c.list_channels()
            st = await c.status()
        assert [(x.id, x.name, x.unit, x.rate_hz) for x in chans] == [
            (x.id, x.name, x.unit, x.rate_hz) for x in build_channels(CFG)
        ]
        assert st == StatusResponse("factory-sim", "L1", START, 600.0, 5.0, len(chans))

    run(body)


def test_served_samples_equal_generate_for_every_channel() -> None:
    async def body() -> None:
        async with SensorServer(CFG, "L1", clock=ManualClock(START)) as srv:
            ids = [ch.id for ch in srv.channels]
            async with SensorClient("127.0.0.1", srv.port) as c:
                reads = await c.read([(i, 0) for i in ids], 10_000)
        for r in reads:
            assert r.count == srv.rings[r.channel_id].capacity  # the whole pre-filled window
            assert r.t_ns[-1] <= START < r.t_ns[-1] + srv.rings[r.channel_id].channel.period_ns
            _assert_matches_generate(r)

    run(body)


def test_retention_exact_bounds_with_manual_clock() -> None:
    async def body() -> None:
        clock = ManualClock(ORIGIN_NS + 30 * NS_PER_S)
        async with SensorServer(CFG, "L1", clock=clock) as srv, SensorClient("127.0.0.1", srv.port) as c:
            (r,) = await c.read([(FAST, 0)], 100_000)
            assert (r.gap, r.first_seq, r.next_seq, r.count) == (False, 0, 301, 301)  # t=0..30 s inclusive
            clock.now_ns = ORIGIN_NS + 11 * 60 * NS_PER_S
            srv.advance()
            head = seq_at(srv.rings[FAST].channel, clock.now_ns + 1)
            oldest = head - 600 * 10
            fast, slow, at_oldest, before_oldest = await c.read(
                [(FAST, 0), (SLOW, 0), (FAST, oldest), (FAST, oldest - 1)], 100_000
            )
        assert (fast.gap, fast.requested_seq, fast.first_seq, fast.next_seq) == (True, 0, oldest, head)
        assert fast.count == 6000 and oldest == 60 * 10 + 1  # the first minute (and its last sample) is gone
        assert (slow.gap, slow.first_seq, slow.next_seq, slow.count) == (True, 661 - 600, 661, 600)
        assert (at_oldest.gap, at_oldest.first_seq, at_oldest.count) == (False, oldest, 6000)
        assert (before_oldest.gap, before_oldest.first_seq) == (True, oldest)
        for r in (fast, slow):
            _assert_matches_generate(r)

    run(body)


def test_retention_with_fast_virtual_clock_reports_gap_after_eleven_minutes() -> None:
    async def body() -> None:
        async with (
            SensorServer(CFG, "L1", speed=3000.0, start_ns=ORIGIN_NS, tick_s=0.02) as srv,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            for _ in range(3000):  # the ring advances once per tick; wait until 11 virtual minutes
                fast, slow = await c.read([(FAST, 0), (SLOW, 0)], 100_000)
                if fast.next_seq > 11 * 60 * 10 and slow.next_seq > 11 * 60:
                    break
                await asyncio.sleep(0.02)
        assert fast.gap and fast.requested_seq == 0
        assert fast.first_seq == fast.next_seq - 600 * 10 and fast.first_seq > 60 * 10
        assert slow.gap and slow.first_seq == slow.next_seq - 600 * 1 and slow.count == 600
        assert np.array_equal(np.diff(fast.t_ns), np.full(fast.count - 1, NS_PER_S // 10))
        _assert_matches_generate(fast)
        _assert_matches_generate(slow)

    run(body)


def test_read_ahead_of_head_and_capped_reads_continue_contiguously() -> None:
    async def body() -> None:
        async with SensorServer(CFG, "L1", clock=ManualClock(START)) as srv:
            head = srv.rings[FAST].head
            async with SensorClient("127.0.0.1", srv.port) as c:
                (ahead,) = await c.read([(FAST, head + 50)], 10)
                (at_head,) = await c.read([(FAST, head)], 10)
                (none,) = await c.read([(FAST, head - 5)], 0)
                first = await c.read([(FAST, head - 25)], 10)
                second = await c.read([(FAST, first[0].first_seq + first[0].count)], 10)
        assert (ahead.gap, ahead.first_seq, ahead.next_seq, ahead.count) == (False, head + 50, head, 0)
        assert (at_head.count, at_head.first_seq) == (0, head)
        assert (none.count, none.first_seq, none.next_seq) == (0, head - 5, head)
        assert first[0].count == second[0].count == 10
        joined = np.concatenate([first[0].t_ns, second[0].t_ns])
        assert np.array_equal(np.diff(joined), np.full(19, NS_PER_S // 10))

    run(body)


def test_oversized_read_is_capped_to_max_payload() -> None:
    async def body() -> None:
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START)) as srv,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            reads = await c.read([(FAST, 0)] * 4096, 2**32 - 1)
        budget = (MAX_PAYLOAD - 2 - 4096 * 32) // (4096 * 16)
        assert {r.count for r in reads} == {budget}
        assert all(r.gap for r in reads)

    run(body)


def test_unknown_channel_is_a_structured_error_and_connection_survives() -> None:
    async def body() -> None:
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START)) as srv,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            with pytest.raises(SensorError) as exc:
                await c.read([(FAST, 0), (999, 0)], 10)
            assert exc.value.code == ErrorCode.UNKNOWN_CHANNEL and "999" in exc.value.message
            assert (await c.status()).line == "L1"

    run(body)


def test_policy_is_passed_to_the_live_timeline() -> None:
    calls = []

    def policy(lot, ctx) -> Decision:
        calls.append(ctx.production_id)
        return Decision(Params(temperature=180.0, feed_rate=40.0, pressure=80.0), "model_v7", 1007)

    async def body() -> None:
        clock = ManualClock(START)
        async with SensorServer(CFG, "L1", clock=clock, policy=policy) as srv:
            assert srv.timeline.policy is policy and srv.timeline.policy_since_ns == START
            clock.now_ns = START + 4 * 3600 * NS_PER_S
            srv.advance()
            async with SensorClient("127.0.0.1", srv.port) as c:
                set_by = next(ch.id for ch in srv.channels if ch.name == "set_by")
                (r,) = await c.read([(set_by, seq_at(srv.rings[set_by].channel, START))], 100_000)
        assert calls, "the policy was never asked"
        assert 1007 in set(r.values.tolist())

    run(body)


# -------------------------------------------------------------------------------------- concurrency


def test_concurrent_clients_and_requests_get_identical_samples() -> None:
    async def body() -> None:
        async with SensorServer(CFG, "L1", speed=1.0, start_ns=START) as srv:
            since = srv.rings[FAST].head - 4000
            ids = [FAST, SLOW, 5, 9]
            reqs = [(i, since if i != SLOW else since // 10) for i in ids]
            clients = [SensorClient("127.0.0.1", srv.port) for _ in range(6)]
            await asyncio.gather(*(c.connect() for c in clients))
            try:
                # 6 connections x 3 in-flight requests each, all at once.
                results = await asyncio.gather(*(c.read(reqs, 1000) for c in clients for _ in range(3)))
            finally:
                await asyncio.gather(*(c.close() for c in clients))
        ref = results[0]
        for res in results[1:]:
            for a, b in zip(ref, res, strict=True):
                assert (a.first_seq, a.count) == (b.first_seq, b.count)
                assert np.array_equal(a.t_ns, b.t_ns) and a.values.tobytes() == b.values.tobytes()
        for r in ref:
            _assert_matches_generate(r)

    run(body)


# ------------------------------------------------------------------------------------------- faults


async def _status_ok(port: int) -> bool:
    async with SensorClient("127.0.0.1", port, timeout=5) as c:
        return (await c.status()).line == "L1"


def test_corrupt_frame_is_protocol_error_and_server_keeps_serving() -> None:
    async def body() -> None:
        faults = FaultConfig(schedule={2: Fault.CORRUPT})
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START), faults=faults) as srv,
            SensorClient("127.0.0.1", srv.port) as bystander,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            await c.status()  # response 1
            with pytest.raises(ProtocolError, match="CRC"):
                await c.read([(FAST, 0)], 100)  # response 2, one byte flipped
            with pytest.raises(ConnectionError):
                await c.status()  # the stream is unrecoverable: the client closed it
            assert (await bystander.status()).line == "L1"
            assert await _status_ok(srv.port)
            assert srv.faults.injected[Fault.CORRUPT] == 1

    run(body)


def test_dropped_connection_is_connection_error() -> None:
    async def body() -> None:
        faults = FaultConfig(schedule={1: Fault.DROP})
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START), faults=faults) as srv,
            SensorClient("127.0.0.1", srv.port) as c,
        ):
            with pytest.raises(ConnectionError):
                await c.read([(FAST, 0)], 1000)
            with pytest.raises(ConnectionError):
                await c.status()
            assert await _status_ok(srv.port)

    run(body)


def test_truncated_frame_times_out_then_desynchronised_stream_fails_crc() -> None:
    async def body() -> None:
        faults = FaultConfig(schedule={1: Fault.TRUNCATE})
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START), faults=faults) as srv,
            SensorClient("127.0.0.1", srv.port, timeout=0.3) as c,
        ):
            with pytest.raises(TimeoutError):
                await c.read([(FAST, 0)], 1000)
            # The next reply completes the cut frame with the wrong bytes.
            c.timeout = 5
            with pytest.raises((ProtocolError, TimeoutError)):
                await c.read([(FAST, 0)], 1000)
            assert await _status_ok(srv.port)

    run(body)


def test_slow_response_times_out_and_late_reply_is_discarded() -> None:
    async def body() -> None:
        faults = FaultConfig(delay_s=0.5, schedule={1: Fault.DELAY})
        async with (
            SensorServer(CFG, "L1", clock=ManualClock(START), faults=faults) as srv,
            SensorClient("127.0.0.1", srv.port, timeout=0.05) as c,
        ):
            with pytest.raises(TimeoutError):
                await c.status()
            c.timeout = 5
            (r,) = await c.read([(FAST, 0)], 3)  # queued behind the late STATUS reply, matched by id
            assert r.count == 3

    run(body)


def test_probabilistic_faults_are_seeded_and_only_raise_client_errors() -> None:
    async def body() -> None:
        faults = FaultConfig(delay_s=0.5, delay_prob=0.1, drop_prob=0.1, corrupt_prob=0.1, seed=3)
        outcomes: list[str] = []
        async with SensorServer(CFG, "L1", clock=ManualClock(START), faults=faults) as srv:
            for _ in range(30):
                async with SensorClient("127.0.0.1", srv.port, timeout=0.2) as c:
                    try:
                        await c.read([(FAST, 0), (SLOW, 0)], 50)
                        outcomes.append("ok")
                    except (ProtocolError, ConnectionError, TimeoutError) as exc:
                        outcomes.append(type(exc).__name__)
            injected = dict(srv.faults.injected)
        assert outcomes.count("ok") == 30 - sum(injected.values())
        assert injected[Fault.CORRUPT] == outcomes.count("ProtocolError") > 0
        assert injected[Fault.DROP] == outcomes.count("ConnectionError") > 0
        assert injected[Fault.DELAY] == outcomes.count("TimeoutError") > 0

    run(body)


def test_fault_config_validation_and_schedule_parsing() -> None:
    assert parse_schedule("3:corrupt, 5:DROP,") == {3: Fault.CORRUPT, 5: Fault.DROP}
    with pytest.raises(ValueError, match="--fault-schedule"):
        parse_schedule("3-corrupt")
    with pytest.raises(ValueError, match="--fault-schedule"):
        parse_schedule("3:explode")
    with pytest.raises(ValueError, match="sum"):
        FaultConfig(drop_prob=0.6, corrupt_prob=0.6)
    with pytest.raises(ValueError, match="delay_s"):
        FaultConfig(delay_prob=0.5)


# ---------------------------------------------------------------------------------- hostile peers


def _raw_exchange(port: int, data: bytes) -> list:
    """Send raw bytes and half-close; return every reply decoded until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return [decode_message(f) for f in FrameDecoder().feed(buf)]


@pytest.mark.parametrize(
    ("data", "code", "rid"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", ErrorCode.BAD_REQUEST, 0),
        (bytes.fromhex("fac7 02 01 00000005 00000000 00000000"), ErrorCode.UNSUPPORTED_VERSION, 0),
        (bytes.fromhex("fac7 01 44 00000005 00000000 00000000"), ErrorCode.UNKNOWN_TYPE, 0),
        (bytes.fromhex("fac7 01 02 00000005 ffffffff"), ErrorCode.TOO_LARGE, 5),
        (encode_message(StatusRequest(), 6)[:-1] + b"\x00", ErrorCode.BAD_REQUEST, 6),
    ],
    ids=["garbage", "version", "type", "4gb", "crc"],
)
def test_framing_errors_get_one_error_frame_then_close(data: bytes, code: ErrorCode, rid: int) -> None:
    async def body() -> None:
        async with SensorServer(CFG, "L1", clock=ManualClock(START)) as srv:
            replies = await asyncio.to_thread(_raw_exchange, srv.port, data)
            assert len(replies) == 1 and isinstance(replies[0], ErrorResponse)
            assert replies[0].code == code
            assert srv.stats["protocol_errors"] == 1
            assert await _status_ok(srv.port)

    run(body)


def test_bad_payload_is_answered_and_connection_stays_open() -> None:
    async def body() -> None:
        async with SensorServer(CFG, "L1", clock=ManualClock(START)) as srv:
            stream = (
                encode_frame(MsgType.READ, 9, bytes.fromhex("0000 00000064"))  # zero channels
                + encode_frame(MsgType.STATUS_RESP, 10, b"")  # a response type sent as request
                + encode_message(StatusRequest(), 11)
            )
            replies = await asyncio.to_thread(_raw_exchange, srv.port, stream)
        assert [type(r).__name__ for r in replies] == ["ErrorResponse", "ErrorResponse", "StatusResponse"]
        assert replies[0].code == replies[1].code == ErrorCode.BAD_REQUEST

    run(body)


def test_stop_does_not_hang_on_a_client_that_stopped_reading() -> None:
    async def body() -> None:
        srv = SensorServer(CFG, "L1", clock=ManualClock(START))
        await srv.start()
        _, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        big = encode_message(ReadRequest(tuple((i, 0) for i in range(1, 33)), 10_000), 1)
        writer.write(big * 50)  # ~50 x 1.8 MB of replies that this client never reads
        await writer.drain()
        sent = -1
        for _ in range(100):  # wait until the server is stuck in drain(): no reply completes any more
            await asyncio.sleep(0.2)
            if srv.faults.responses == sent:
                break
            sent = srv.faults.responses
        assert 1 <= sent < 50
        async with asyncio.timeout(15):
            await srv.stop()
        writer.transport.abort()

    run(body)


# -------------------------------------------------------------------------------------- unit parts


def test_ring_keeps_exactly_capacity_across_wraps_and_skips() -> None:
    ch = build_channels(CFG)[FAST - 1]
    ring = ChannelRing(ch, 7)
    seqs = np.arange(0, 30, dtype=np.int64)
    for a, b in [(0, 3), (3, 9), (9, 10), (10, 16)]:
        ring.append(a, seqs[a:b] * 10, seqs[a:b] * 0.5)
        assert (ring.oldest, ring.head) == (max(0, b - 7), b)
        gap, first, chunks = ring.read(0, 100)
        rec = np.concatenate(chunks)
        assert (gap, first) == (b > 7, max(0, b - 7))
        assert rec["t_ns"].tolist() == list(range(first * 10, b * 10, 10))
        assert rec["value"].tolist() == [x * 0.5 for x in range(first, b)]
    assert len(ring.read(10, 100)[2]) == 2  # seqs 10..15 wrap around the end of the ring
    ring.append(25, seqs[25:27] * 10, seqs[25:27] * 0.5)  # a skip: older samples are gone
    assert (ring.oldest, ring.head) == (25, 27)
    gap, first, chunks = ring.read(20, 5)
    assert (gap, first, sum(len(c) for c in chunks)) == (True, 25, 2)
    with pytest.raises(ValueError, match="behind head"):
        ring.append(3, seqs[:1], seqs[:1] * 1.0)


def test_virtual_clock_runs_at_speed() -> None:
    ticks = iter([1_000, 1_000, 3_000])
    clock = VirtualClock(START, 60.0, monotonic_ns=lambda: next(ticks))
    assert clock.now_ns() == START
    assert clock.now_ns() == START + 2_000 * 60
    with pytest.raises(ValueError, match="speed"):
        VirtualClock(START, 0.0)


# --------------------------------------------------------------------------------------------- CLI


def _spawn(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "factory_sim.cli", "serve", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def test_cli_serves_one_server_per_line_and_stops_on_sigterm() -> None:
    proc = _spawn("--port", "0", "--lines", "L1,L2", "--speed", "10", "--start", "2026-02-10T07:00:00Z")
    try:
        listening = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [x["line"] for x in listening] == ["L1", "L2"]

        async def body() -> None:
            for x in listening:
                async with SensorClient("127.0.0.1", x["port"]) as c:
                    st = await c.status()
                    assert st.line == x["line"] and st.speed == 10.0
                    assert st.now_ns >= ORIGIN_NS + 40 * DAY_NS + 7 * 3600 * NS_PER_S

        run(body)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_cli_with_endpoint_policy_serves_and_exits_cleanly() -> None:
    # Nothing listens on the endpoint: productions fall back to the craftsman, serving is unaffected.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    proc = _spawn(
        "--endpoint",
        f"http://127.0.0.1:{dead_port}",
        "--api-key-env",
        "FACTORY_TEST_KEY",
        "--deadline-ms",
        "50",
        "--speed",
        "600",
        FACTORY_TEST_KEY="k",
    )
    try:
        port = json.loads(proc.stdout.readline())["port"]

        async def body() -> None:
            async with SensorClient("127.0.0.1", port) as c:
                (r,) = await c.read([(FAST, 0)], 10)
                assert r.count == 10

        run(body)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--retention-s", "0.5"], "retention_s"),
        (["--start", "yesterday"], "--start"),
        (["--start", "2025-12-31T23:59:59Z"], "--start"),
        (["--fault-schedule", "x"], "--fault-schedule"),
        (["--endpoint", "http://127.0.0.1:9", "--api-key-env", "FACTORY_TEST_UNSET_KEY"], "--api-key-env"),
    ],
)
def test_cli_rejects_bad_settings_naming_them(args: list[str], names: str) -> None:
    proc = _spawn(*args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert names in err
