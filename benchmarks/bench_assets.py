"""Benchmark: one line-day of raw data (default channels and rates) -> per-production rows.

Compares the vectorized pipeline (factory_assets.production.compute.build_day: numpy decode + concat,
production_id transitions, searchsorted/bincount/reduceat features) with a straightforward pandas
implementation written here (pandas frames per channel, a Python loop over production_id rows to find
runs, then per production and channel a pandas slice and its statistics), on the same objects, in the
same process. Prints JSON. Targets: vectorized <= 10 s and >= 5x faster than the baseline.

    .venv/bin/python -m benchmarks.bench_assets [--keep DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from factory_assets.production.compute import build_day, day_bounds
from factory_assets.production.extraction import LOT_COLUMNS, PARAM_COLUMNS, SLOW_CHANNELS
from factory_assets.raw.reading import raw_keys_in_window
from factory_core.machine import over_temperature_alarm
from factory_core.rawformat import decode_batch
from factory_core.store import LocalDirStore
from factory_sim import history

LINE = "L1"
DAY = "2026-03-02"
TARGET_S = 10.0
TARGET_RATIO = 5.0
REPEATS = 3


def make_data(root: Path) -> None:
    """DAY and the next day of L1 at the default rates (10 Hz fast, 1 Hz slow), 300 s objects."""
    argv = [
        "--days",
        "2",
        "--start-date",
        DAY,
        "--lines",
        LINE,
        "--store",
        str(root),
        "--workers",
        "2",
        "--no-progress",
    ]
    assert history.cli(argv) == 0


def baseline_pandas(store: LocalDirStore, line: str, date: str) -> pd.DataFrame:
    """The straightforward implementation: per-channel pandas frames and Python loops."""
    t0, t1 = day_bounds(date)
    keys = raw_keys_in_window(store, line, t0, t1 + 3600 * 10**9, 3600)
    frames: dict[str, list[pd.DataFrame]] = {}
    rates: dict[str, float] = {}
    for key in keys:
        for b in decode_batch(store.get(key)).blocks:
            frames.setdefault(b.name, []).append(
                pd.DataFrame(
                    {"seq": np.arange(b.first_seq, b.first_seq + b.count), "t": b.t_ns, "v": b.values}
                )
            )
            rates[b.name] = b.rate_hz
    ch = {
        name: pd.concat(parts).drop_duplicates("seq").sort_values("t").set_index("t")["v"]
        for name, parts in frames.items()
    }
    # Runs of production_id, row by row.
    runs: list[tuple[int, int, int]] = []
    current, start, prev_t = 0, 0, None
    first = True
    for t, v in ch["production_id"].items():
        pid = round(v)
        if pid != current:
            if current != 0 and not first:
                runs.append((current, start, t))
            if current != 0 and first:
                first = False
            current, start = pid, t
            first = first and pid != 0 and prev_t is None
        prev_t = t
    state = ch["machine_state"]
    rows: list[dict[str, Any]] = []
    for pid, id_start, id_end in runs:
        if not t0 <= id_start < t1:
            continue
        window = state.loc[id_start - 10**9 : id_end]
        running = window[window.round() == 1]
        if running.empty:
            continue
        start = int(running.index[0])
        after = window.loc[start:]
        not_running = after[after.round() != 1]
        end = int(not_running.index[0]) if len(not_running) else id_end
        row: dict[str, Any] = {"line": line, "production_id": pid, "start": start, "end": end}
        for name in LOT_COLUMNS + PARAM_COLUMNS + ("set_by",):
            row[name] = ch[name].loc[id_start:].iloc[0]
        qa = ch["qa_production_id"]
        hit = qa[qa.round() == pid]
        row["qa_quality"] = ch["qa_quality"].loc[hit.index[0]] if len(hit) else np.nan
        row["fault_code"] = ch["fault_code"].loc[id_start : id_end - 1].max()
        power = ch["power_kw"].loc[start : end - 1]
        row["energy_kwh"] = power.sum() / rates["power_kw"] / 3600
        row["cycle_time_s"] = (end - start) / 1e9
        for name, series in ch.items():
            if name in SLOW_CHANNELS:
                continue
            s = series.loc[start : end - 1]
            x = (s.index.to_numpy() - start) / 1e9
            row[f"{name}_mean"] = s.mean()
            row[f"{name}_min"] = s.min()
            row[f"{name}_max"] = s.max()
            row[f"{name}_std"] = s.std(ddof=0)
            row[f"{name}_slope"] = np.polyfit(x, s.to_numpy(), 1)[0] if len(s) > 1 else np.nan
            limit = over_temperature_alarm(name, float(row["sp_temperature"]))
            if limit is not None:
                row[f"{name}_s_above_limit"] = (s > limit).sum() / rates[name]
        rows.append(row)
    return pd.DataFrame(rows).sort_values("production_id")


def run(root: Path) -> dict[str, Any]:
    store = LocalDirStore(root)
    build_day(store, LINE, DAY)  # warm the page cache for both contenders
    vec_times, base_times = [], []
    for _ in range(REPEATS):  # best of N for both: the machine may be shared
        t = time.perf_counter()
        day = build_day(store, LINE, DAY)
        vec_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        base = baseline_pandas(store, LINE, DAY)
        base_times.append(time.perf_counter() - t)
    vec_s, base_s = min(vec_times), min(base_times)
    ids_equal = base["production_id"].tolist() == day.frame["production_id"].to_list()
    mean_close = bool(
        np.allclose(base["temp_zone1_mean"].to_numpy(), day.frame["temp_zone1_mean"].to_numpy(), rtol=1e-9)
    )
    ratio = base_s / vec_s
    return {
        "benchmark": "raw line-day -> per-production rows",
        "line": LINE,
        "date": DAY,
        "objects": day.objects,
        "channels": day.channels,
        "productions": day.frame.height,
        "columns": day.frame.width,
        "vectorized_s": round(vec_s, 3),
        "baseline_pandas_loop_s": round(base_s, 3),
        "speedup": round(ratio, 2),
        "repeats": REPEATS,
        "vectorized_all_s": [round(x, 3) for x in vec_times],
        "baseline_all_s": [round(x, 3) for x in base_times],
        "results_agree": ids_equal and mean_close,
        "target_s": TARGET_S,
        "target_speedup": TARGET_RATIO,
        "pass": vec_s <= TARGET_S and ratio >= TARGET_RATIO and ids_equal and mean_close,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", type=Path, help="reuse/keep the generated data in this directory")
    args = p.parse_args(argv)
    if args.keep:
        if not (args.keep / "raw").exists():
            make_data(args.keep)
        result = run(args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            make_data(Path(tmp))
            result = run(Path(tmp))
    print(json.dumps(result, indent=2))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
