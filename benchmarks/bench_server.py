"""Sensor-server READ throughput vs a bare asyncio server sending the same bytes, measured in one run.

Setup: 100 channels at 100 Hz (extra_channels brings the catalogue to 100, fast and slow rates 100 Hz),
10 minutes retained (60 000 samples per channel), the server running in its own process at speed 1.
The client sends READ requests for all 100 channels (max_samples per channel, well inside the
retention window) and reads each response frame whole. The baseline process answers every request
frame with the recorded bytes of a real response, so the ratio isolates what the sensor server
costs on top of the network path: ring-buffer slicing, framing and CRC, and its generation ticks.

Both servers run at once and are measured in alternating short rounds (medians reported), so load
from other processes on the machine hits both alike.

Run: .venv/bin/python -m benchmarks.bench_server [--rounds 8] [--round-s 0.5] [--max-samples 1000]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge_collector.sensor_client import SensorClient
from factory_core.protocol import HEADER, ReadRequest, encode_message

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = 100
RATE_HZ = 100.0
EXTRA = CHANNELS - 32  # the standard catalogue has 20 fast + 12 slow channels


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(HEADER.size)
    (length,) = struct.unpack_from(">I", head, 8)
    return head + await reader.readexactly(length + 4)


async def _canned_server(response: bytes) -> None:
    """Baseline: reply to every request frame with the same pre-recorded response bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await _read_frame(reader)
                writer.write(response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await server.serve_forever()


async def _drive(port: int, request: bytes, seconds: float, connections: int) -> dict[str, float]:
    """Closed loop: each connection sends one request, reads the whole response, repeats."""
    total_bytes = 0
    total_requests = 0
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal total_bytes, total_requests
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                frame = await _read_frame(reader)
                total_bytes += len(frame)
                total_requests += 1
        finally:
            writer.close()
            await writer.wait_closed()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    return {
        "requests_per_s": total_requests / elapsed,
        "mb_per_s": total_bytes / elapsed / 1e6,
        "requests": total_requests,
        "seconds": elapsed,
    }


def _spawn(args: list[str]) -> tuple[subprocess.Popen, int]:
    """Start a server process that prints {"port": N} as its first stdout line."""
    proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"server {args[0]} did not start")
    return proc, int(json.loads(line)["port"])


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _measure_client(port: int, args: argparse.Namespace) -> tuple[bytes, bytes, float]:
    """(READ request frame, one recorded response, SensorClient decoded requests/s)."""
    async with SensorClient("127.0.0.1", port) as client:
        channels = await client.list_channels()
        assert len(channels) == CHANNELS and all(c.rate_hz == RATE_HZ for c in channels)
        heads = await client.read([(c.id, 2**62) for c in channels], 0)
        # Well inside the 60 000-sample window for the whole run, so every response is full size.
        req = ReadRequest(tuple((r.channel_id, r.next_seq - 50_000) for r in heads), args.max_samples)
        reads = await client.read(req.channels, req.max_samples)
        assert all(r.count == args.max_samples and not r.gap for r in reads)
        t0 = time.perf_counter()
        n_client = 0
        while time.perf_counter() - t0 < args.round_s * 2:
            await client.read(req.channels, req.max_samples)
            n_client += 1
        client_rate = n_client / (time.perf_counter() - t0)
    request = encode_message(req, 1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    response = await _read_frame(reader)  # recorded for the baseline to replay
    writer.close()
    await writer.wait_closed()
    return request, response, client_rate


async def _rounds(
    sensor_port: int, canned_port: int, request: bytes, args: argparse.Namespace
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Alternate short rounds against both servers so machine noise hits both alike."""
    sensor, baseline = [], []
    for _ in range(args.rounds):
        sensor.append(await _drive(sensor_port, request, args.round_s, args.connections))
        baseline.append(await _drive(canned_port, request, args.round_s, args.connections))
    return sensor, baseline


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _bench(args: argparse.Namespace) -> dict[str, object]:
    server, port = _spawn(
        [
            "factory_sim.cli",
            "serve",
            "--port",
            "0",
            "--fast-rate-hz",
            str(RATE_HZ),
            "--slow-rate-hz",
            str(RATE_HZ),
            "--extra-channels",
            str(EXTRA),
            "--log-level",
            "WARNING",
        ]
    )
    try:
        request, response, client_rate = asyncio.run(_measure_client(port, args))
        with tempfile.NamedTemporaryFile(suffix=".bin") as f:
            f.write(response)
            f.flush()
            canned, cport = _spawn(["benchmarks.bench_server", "--canned-server", f.name])
        try:
            sensor, baseline = asyncio.run(_rounds(port, cport, request, args))
        finally:
            _stop(canned)
    finally:
        _stop(server)
    samples = CHANNELS * args.max_samples
    ratios = [s["requests_per_s"] / b["requests_per_s"] for s, b in zip(sensor, baseline, strict=True)]

    def summary(runs: list[dict[str, float]]) -> dict[str, float]:
        rps = _median([r["requests_per_s"] for r in runs])
        return {
            "requests_per_s": rps,
            "mb_per_s": rps * len(response) / 1e6,
            "samples_per_s": rps * samples,
            "requests": sum(int(r["requests"]) for r in runs),
        }

    return {
        "benchmark": "sensor_server_read",
        "channels": CHANNELS,
        "rate_hz": RATE_HZ,
        "max_samples_per_channel": args.max_samples,
        "response_bytes": len(response),
        "connections": args.connections,
        "rounds": args.rounds,
        "round_s": args.round_s,
        "sensor_server": summary(sensor),
        "baseline_canned_asyncio": summary(baseline),
        "ratio_server_to_baseline": _median(ratios),
        "ratio_min_max": [min(ratios), max(ratios)],
        "sensor_client_decoded_requests_per_s": client_rate,
        "sensor_client_decoded_samples_per_s": client_rate * samples,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8, help="alternating rounds per server (default 8)")
    p.add_argument("--round-s", type=float, default=0.5, help="seconds per round (default 0.5)")
    p.add_argument(
        "--max-samples", type=int, default=1000, help="samples per channel per READ (default 1000)"
    )
    p.add_argument("--connections", type=int, default=1, help="concurrent client connections (default 1)")
    p.add_argument("--canned-server", metavar="RESPONSE_FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.canned_server:
        asyncio.run(_canned_server(Path(args.canned_server).read_bytes()))
        return 0
    print(json.dumps(_bench(args), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
