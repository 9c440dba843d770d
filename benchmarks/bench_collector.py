"""Collector benchmarks (JSON on stdout): `.venv/bin/python -m benchmarks.bench_collector`.

1. Collection throughput on one core (this process pinned to CPU 0; the sensor server runs in its own
   process on another CPU): the real poller pipeline (TCP READ -> decode -> encode_batch -> durable
   spool write -> cursor persist) drains a full sensor retention window. Baseline measured in the same
   run: compress + fsync the same batches with no protocol (encode_batch + temp file + fsync + rename +
   dir fsync). Target: ratio >= 0.5.
2. Backlog drain: a 1-hour backlog made exactly as the daemon makes it during an S3 outage
   (100 channels, 60 s polls) is uploaded to a local moto server (its own process). Target: >= 20x
   real time. 3. Peak resident memory of this process during the drain: target < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from edge_collector.budget import DiskBudget
from edge_collector.cursors import CursorStore
from edge_collector.daemon import make_groups
from edge_collector.ledger import GapLedger
from edge_collector.metrics import CollectorMetrics, CollectorUploadObserver
from edge_collector.poller import GroupPoller, PollContext
from edge_collector.sensor_client import SensorClient
from factory_core.outbox.spool import Spool, fsync_dir
from factory_core.outbox.uploader import Uploader
from factory_core.rawformat import decode_batch, encode_batch
from factory_core.store import S3Store

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(cpu: int) -> list[str]:
    """taskset prefix for a child on ``cpu`` (if the machine has it)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpus[cpu % len(cpus)])]


def start_sensor(retention_s: float, extra_channels: int) -> tuple[subprocess.Popen[str], int]:
    cmd = [*_pin(1), sys.executable, "-m", "factory_sim.cli", "serve", "--port", "0", "--speed", "1",
           "--retention-s", str(retention_s), "--extra-channels", str(extra_channels), "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(json.loads(line)["port"])


async def collect(port: int, spool_dir: Path, max_samples: int, group_size: int) -> dict[str, Any]:
    """Run the daemon's group pollers until every channel caught up; return timing and volume."""
    spool = Spool(spool_dir)
    cursors = CursorStore(spool_dir)
    metrics = CollectorMetrics()
    async with SensorClient("127.0.0.1", port, timeout=60) as client:
        line = (await client.status()).line
        channels = await client.list_channels()
    ctx = PollContext(
        host="127.0.0.1", port=port, line=line, spool=spool, cursors=cursors, ledger=GapLedger(spool, metrics),
        budget=DiskBudget(spool, 1 << 40, 0.8, metrics), metrics=metrics, semaphore=asyncio.Semaphore(4),
        release=lambda entry: None, poll_interval_s=3600.0, request_timeout_s=60.0, max_samples=max_samples,
        reconnect_initial_s=0.1, reconnect_max_s=1.0,
    )  # fmt: skip
    pollers = [GroupPoller(name, chs, ctx) for name, chs in make_groups(channels, group_size)]
    t0 = time.perf_counter()

    async def drain(p: GroupPoller) -> None:
        async with SensorClient("127.0.0.1", port, timeout=60) as c:
            while not await p.poll_cycle(c):
                pass

    await asyncio.gather(*(drain(p) for p in pollers))
    elapsed = time.perf_counter() - t0
    samples = int(metrics.samples_collected._value.get())
    return {"channels": len(channels), "samples": samples, "seconds": elapsed, "files": spool.file_count,
            "spool_bytes": spool.total_bytes}  # fmt: skip


def floor_rate(spool_dir: Path, scratch: Path) -> dict[str, Any]:
    """Baseline: compress + fsync the same batches (no protocol, no cursors)."""
    batches = [decode_batch(Spool(spool_dir).read(e)[1]) for e in Spool(spool_dir).entries()]
    samples = sum(b.count for batch in batches for b in batch.blocks)
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, batch in enumerate(batches):
        data = encode_batch(batch)
        tmp = scratch / f".tmp-{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, scratch / f"{i}.bin")
        fsync_dir(scratch)
    elapsed = time.perf_counter() - t0
    return {"samples": samples, "seconds": elapsed, "samples_per_s": samples / elapsed}


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [*_pin(1), sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto server did not start")


async def drain_backlog(spool_dir: Path, url: str, concurrency: int) -> dict[str, Any]:
    import boto3

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
    spool = Spool(spool_dir)
    files, nbytes = spool.file_count, spool.total_bytes
    store = S3Store(bucket, endpoint_url=url, checksum="when_supported")
    up = Uploader(
        spool,
        store,
        CollectorUploadObserver(CollectorMetrics()),
        concurrency=concurrency,
        retry_initial_s=0.05,
    )
    up.release_all_existing()
    stop = asyncio.Event()
    peak = [_rss_mb()]

    async def watch() -> None:
        while spool.file_count:
            peak[0] = max(peak[0], _rss_mb())
            await asyncio.sleep(0.05)
        stop.set()

    t0 = time.perf_counter()
    await asyncio.gather(up.run(stop), watch())
    elapsed = time.perf_counter() - t0
    stored = sum(1 for _ in store.list("raw/"))
    return {"files": files, "bytes": nbytes, "seconds": elapsed, "objects_in_s3": stored,
            "peak_rss_mb_during_drain": round(peak[0], 1)}  # fmt: skip


def _child(phase: str, *args: str) -> dict[str, Any]:
    """Run one phase in a fresh process (own RSS figure, pinned to one core) and parse its JSON."""
    cmd = [*_pin(0), sys.executable, "-m", "benchmarks.bench_collector", "--phase", phase, *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, timeout=900)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _phase(args: argparse.Namespace) -> dict[str, Any]:
    spool_dir = Path(args.spool)
    if args.phase == "collect":
        res = asyncio.run(collect(args.port, spool_dir, args.max_samples, 25))
    elif args.phase == "floor":
        res = floor_rate(spool_dir, spool_dir.parent / f"floor-{uuid.uuid4().hex[:6]}")
    else:
        res = asyncio.run(drain_backlog(spool_dir, args.url, args.upload_concurrency))
    res["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return res


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.bench_collector", description=__doc__.splitlines()[0])
    p.add_argument("--channels-extra", type=int, default=68, help="extra channels (32 + 68 = 100)")
    p.add_argument("--retention-s", type=float, default=3600.0, help="sensor window = backlog length (s)")
    p.add_argument("--upload-concurrency", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7, help="throughput/floor repetitions (median reported)")
    p.add_argument("--phase", choices=("collect", "floor", "drain"), help=argparse.SUPPRESS)
    p.add_argument("--spool", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--max-samples", type=int, default=6000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if args.phase:
        print(json.dumps(_phase(args)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    sensor, port = start_sensor(args.retention_s, args.channels_extra)
    try:
        colls, floors = [], []
        for i in range(args.repeats):
            # daemon defaults: catch-up reads of up to 6000 samples per channel, 25 channels per group
            spool = work / f"spool-fast-{i}"
            colls.append(_child("collect", "--port", str(port), "--spool", str(spool)))
            floors.append(_child("floor", "--spool", str(spool)))
            shutil.rmtree(spool, ignore_errors=True)
        # a 1-hour outage backlog exactly as the daemon builds it: one batch per group per 60 s poll
        backlog_dir = work / "spool-backlog"
        backlog = _child("collect", "--port", str(port), "--spool", str(backlog_dir), "--max-samples", "600")
    finally:
        sensor.terminate()
        sensor.wait(10)
    moto, url = start_moto()
    try:
        drain = _child("drain", "--spool", str(backlog_dir), "--url", url,
                       "--upload-concurrency", str(args.upload_concurrency))  # fmt: skip
    finally:
        moto.terminate()
        moto.wait(10)
    shutil.rmtree(work, ignore_errors=True)
    rates = [c["samples"] / c["seconds"] for c in colls]
    floor_rates = [f["samples_per_s"] for f in floors]
    ratios = [r / f for r, f in zip(rates, floor_rates, strict=True)]
    result = {
        "benchmark": "edge_collector",
        "cpus_for_collector": 1,
        "throughput": {
            "channels": colls[0]["channels"],
            "samples_per_run": colls[0]["samples"],
            "runs": args.repeats,
            "collector_samples_per_s_median": round(_median(rates)),
            "floor_samples_per_s_median": round(_median(floor_rates)),
            "ratio_to_floor_median": round(_median(ratios), 3),
            "ratio_to_floor_runs": [round(x, 3) for x in ratios],
            "target_ratio": 0.5,
            "bytes_per_sample_spooled": round(colls[0]["spool_bytes"] / max(1, colls[0]["samples"]), 3),
            "collector_max_rss_mb": max(c["max_rss_mb"] for c in colls),
        },
        "backlog_drain": {
            "backlog_seconds_of_data": args.retention_s,
            "backlog_samples": backlog["samples"],
            "files": drain["files"],
            "bytes": drain["bytes"],
            "drain_seconds": round(drain["seconds"], 3),
            "x_real_time": round(args.retention_s / drain["seconds"], 1),
            "target_x_real_time": 20,
            "objects_in_s3": drain["objects_in_s3"],
        },
        "memory": {
            "drain_process_peak_rss_mb": drain["peak_rss_mb_during_drain"],
            "drain_process_max_rss_mb": drain["max_rss_mb"],
            "collect_process_max_rss_mb": max(c["max_rss_mb"] for c in colls),
            "target_mb": 200,
        },
    }
    result["pass"] = (
        result["throughput"]["ratio_to_floor_median"] >= 0.5
        and result["backlog_drain"]["x_real_time"] >= 20
        and max(result["memory"]["drain_process_max_rss_mb"], result["memory"]["collect_process_max_rss_mb"])
        < 200
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
