"""Benchmark: `factory-sim history` writing one line-day (default channels, 10 Hz) to a local directory.

Budget: one line-day in <= 10 s on a 2-core machine. Reports wall time, samples/s and bytes for the
whole run and for its parts measured in the same process (signal generation alone, generation +
encoding, full run with the pool), so a regression can be pinned on the right stage. JSON on stdout.

    .venv/bin/python -m benchmarks.bench_history [--workers N] [--date YYYY-MM-DD] [--lines L1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from factory_core.rawformat import encode_batch
from factory_sim.channels import build_channels
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.history import build_batch, plan_tasks, run_history
from factory_sim.schedule import LineTimeline

BUDGET_S = 10.0


def _stage_single_core(cfg: SimConfig, line: str, day: dt.date, hours: int) -> dict[str, float]:
    """Generation and generation+encode for `hours` of the day on one core (baseline for the ratio)."""
    timeline = LineTimeline(cfg, line)
    channels = build_channels(cfg)
    day_start = ORIGIN_NS + (day - dt.date(2026, 1, 1)).days * 86400 * NS_PER_S
    windows = [day_start + k * 300 * NS_PER_S for k in range(hours * 12)]
    t = time.perf_counter()
    batches = [build_batch(timeline, channels, "all", w, w + 300 * NS_PER_S) for w in windows]
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    encoded = sum(len(encode_batch(b)) for b in batches if b is not None)
    enc_s = time.perf_counter() - t
    samples = sum(len(blk.t_ns) for b in batches if b is not None for blk in b.blocks)
    return {
        "hours": hours,
        "generate_s": round(gen_s, 3),
        "encode_s": round(enc_s, 3),
        "samples": samples,
        "raw_bytes": samples * 16,
        "encoded_bytes": encoded,
        "compression_ratio": round(samples * 16 / encoded, 3),
        "generate_day_estimate_s": round(gen_s * 24 / hours, 2),
        "encode_day_estimate_s": round(enc_s * 24 / hours, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 3, 14))
    p.add_argument("--line", default="L1")
    p.add_argument("--stage-hours", type=int, default=2, help="hours measured per stage on one core")
    args = p.parse_args(argv)
    cfg = SimConfig(lines=(args.line,))
    stages = _stage_single_core(cfg, args.line, args.date, args.stage_hours)
    root = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        tasks = plan_tasks(cfg, [args.line], [args.date], str(root))
        result = run_history(tasks, workers=args.workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out = {
        "benchmark": "history_one_line_day",
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),  # other work on the box skews wall time
        "channels": len(build_channels(cfg)),
        "objects": result.objects,
        "samples": result.samples,
        "bytes": result.bytes,
        "wall_s": round(result.seconds, 3),
        "samples_per_s": round(result.samples / result.seconds),
        "budget_s": BUDGET_S,
        "within_budget": result.seconds <= BUDGET_S,
        "single_core_stages": stages,
        "speedup_vs_single_core_stages": round(
            (stages["generate_day_estimate_s"] + stages["encode_day_estimate_s"]) / result.seconds, 2
        ),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
