"""`factory-sim history`: write N days of a line's sensor data straight into an object store.

Why: the cloud side (Dagster partitions, model training) needs months of data on day one, without
running the TCP server and the collector for months. The objects are exactly what the collector would
store: the raw format and key layout of edge_collector.rawformat, samples from
factory_sim.signals.generate (so history and the live server agree bit for bit for a seed).

Work is split into tasks of one line and one hour of one day (so even a single line-day uses every
core) and run on a process pool. Keys and bytes depend only on (config, line, group, window), so a
re-run overwrites every object with identical bytes: the command is idempotent and safe to repeat.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from factory_core.layout import batch_key
from factory_core.rawformat import ChannelBlock, RawBatch, RawFormatError, encode_batch
from factory_core.store import ObjectStore, StoreError, open_store
from factory_sim.channels import Channel, build_channels, seq_at
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.schedule import LineTimeline
from factory_sim.signals import generate

DAY_S = 86400
ORIGIN_DATE = dt.date(2026, 1, 1)
DEFAULT_OBJECT_SECONDS = 300
ALL_GROUP = "all"


@dataclass(frozen=True)
class HistoryTask:
    """One unit of work: consecutive object windows of one line (picklable, sent to a worker)."""

    cfg: SimConfig
    line: str
    store_url: str
    endpoint_url: str | None
    window_starts_ns: tuple[int, ...]
    object_ns: int
    groups: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass
class HistoryResult:
    """Totals of a run (what the CLI prints as JSON)."""

    objects: int = 0
    samples: int = 0
    bytes: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    def add(self, other: HistoryResult) -> None:
        self.objects += other.objects
        self.samples += other.samples
        self.bytes += other.bytes
        self.keys.extend(other.keys)


def build_batch(
    timeline: LineTimeline, channels: Sequence[Channel], group: str, t0_ns: int, t1_ns: int
) -> RawBatch | None:
    """Every sample of `channels` with t in [t0, t1) as one batch (None when the window holds none)."""
    blocks = []
    for ch in channels:
        s0, s1 = seq_at(ch, t0_ns), seq_at(ch, t1_ns)
        if s1 <= s0:
            continue
        t, v = generate(timeline, ch, s0, s1)
        blocks.append(ChannelBlock(ch.id, ch.name, ch.unit, ch.rate_hz, s0, t, v))
    return RawBatch(timeline.line, group, tuple(blocks)) if blocks else None


_WORKER_CACHE: dict[tuple[SimConfig, str], LineTimeline] = {}
_STORE_CACHE: dict[tuple[str, str | None], ObjectStore] = {}


def _timeline(cfg: SimConfig, line: str) -> LineTimeline:
    key = (cfg, line)
    if key not in _WORKER_CACHE:
        _WORKER_CACHE.clear()  # one timeline per worker is plenty; plans are cached inside it
        _WORKER_CACHE[key] = LineTimeline(cfg, line)
    return _WORKER_CACHE[key]


def _store(url: str, endpoint_url: str | None) -> ObjectStore:
    key = (url, endpoint_url)
    if key not in _STORE_CACHE:
        _STORE_CACHE[key] = open_store(url, endpoint_url=endpoint_url)
    return _STORE_CACHE[key]


def run_task(task: HistoryTask) -> HistoryResult:
    """Generate, encode and put every object of a task (runs in a worker process).

    Puts run on one background thread (fsync and network release the GIL), overlapping the store's
    latency with generating the next window; at most two puts are in flight.
    """
    timeline = _timeline(task.cfg, task.line)
    by_id = {ch.id: ch for ch in build_channels(task.cfg)}
    store = _store(task.store_url, task.endpoint_url)
    result = HistoryResult()
    pending: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-put") as writer:
        for t0 in task.window_starts_ns:
            for group, ids in task.groups:
                batch = build_batch(timeline, [by_id[i] for i in ids], group, t0, t0 + task.object_ns)
                if batch is None:
                    continue
                data = encode_batch(batch)
                key = batch_key(batch)
                while len(pending) >= 2:
                    pending.pop(0).result()
                pending.append(writer.submit(store.put, key, data))
                result.objects += 1
                result.samples += sum(len(b.t_ns) for b in batch.blocks)
                result.bytes += len(data)
                result.keys.append(key)
        for fut in pending:
            fut.result()  # re-raises the first StoreError of this task
    return result


def parse_groups(
    specs: Sequence[str], channels: Sequence[Channel]
) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """'NAME=1-20,25' specs -> ((name, ids), ...); no spec = one group 'all' with every channel."""
    known = {ch.id for ch in channels}
    if not specs:
        return ((ALL_GROUP, tuple(sorted(known))),)
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, ids_text = spec.partition("=")
        if not sep or not name or not ids_text:
            raise ValueError(f"--group {spec!r}: expected NAME=ID[,ID|ID-ID...]")
        ids: set[int] = set()
        for part in ids_text.split(","):
            lo, dash, hi = part.partition("-")
            try:
                rng = range(int(lo), int(hi) + 1) if dash else range(int(lo), int(lo) + 1)
            except ValueError:
                raise ValueError(f"--group {spec!r}: {part!r} is not an id or an id range") from None
            ids.update(rng)
        unknown = sorted(ids - known)
        if unknown:
            raise ValueError(f"--group {spec!r}: channel ids {unknown} do not exist (1..{max(known)})")
        if name in out:
            raise ValueError(f"--group {spec!r}: group {name!r} given twice")
        out[name] = tuple(sorted(ids))
    return tuple(out.items())


def plan_tasks(
    cfg: SimConfig,
    lines: Sequence[str],
    days: Sequence[dt.date],
    store_url: str,
    *,
    endpoint_url: str | None = None,
    object_seconds: int = DEFAULT_OBJECT_SECONDS,
    groups: tuple[tuple[str, tuple[int, ...]], ...] | None = None,
    task_seconds: int = 3600,
) -> list[HistoryTask]:
    """Split (lines x days) into tasks of `task_seconds` worth of consecutive object windows."""
    if object_seconds <= 0 or DAY_S % object_seconds:
        raise ValueError(
            f"--object-seconds {object_seconds}: must be > 0 and divide 86400 (windows align to days)"
        )
    groups = groups or parse_groups((), build_channels(cfg))
    per_task = max(1, task_seconds // object_seconds)
    tasks = []
    for day in days:
        day_start = ORIGIN_NS + (day - ORIGIN_DATE).days * DAY_S * NS_PER_S
        starts = [day_start + k * object_seconds * NS_PER_S for k in range(DAY_S // object_seconds)]
        for line in lines:
            for i in range(0, len(starts), per_task):
                tasks.append(
                    HistoryTask(cfg, line, store_url, endpoint_url, tuple(starts[i : i + per_task]),
                                object_seconds * NS_PER_S, groups)
                )  # fmt: skip
    return tasks


def run_history(
    tasks: Sequence[HistoryTask], workers: int = 1, progress: Callable[[HistoryResult], None] | None = None
) -> HistoryResult:
    """Run tasks (in-process when workers == 1, else on a forkserver process pool)."""
    started = time.perf_counter()
    total = HistoryResult()
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            res = run_task(task)
            total.add(res)
            if progress:
                progress(res)
    else:
        ctx = multiprocessing.get_context("forkserver")  # no fork of a process that holds threads/sockets
        ctx.set_forkserver_preload([__name__])  # workers fork from a server that already imported numpy & co
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for fut in as_completed([pool.submit(run_task, t) for t in tasks]):
                res = fut.result()
                total.add(res)
                if progress:
                    progress(res)
    total.keys.sort()
    total.seconds = time.perf_counter() - started
    return total


def day_range(days: int, start_date: dt.date | None, end_date: dt.date | None) -> list[dt.date]:
    """The N days starting at start_date, or the N days before end_date (exclusive; default today UTC)."""
    if days < 1:
        raise ValueError(f"--days {days}: must be >= 1")
    if start_date is not None and end_date is not None:
        raise ValueError("--start-date and --end-date are exclusive: give one of them")
    if start_date is None:
        end = end_date or dt.datetime.now(dt.UTC).date()
        start_date = end - dt.timedelta(days=days)
    if start_date < ORIGIN_DATE:
        raise ValueError(
            f"--start-date/--end-date: first day {start_date} is before {ORIGIN_DATE} (seq 0 of every channel)"
        )
    return [start_date + dt.timedelta(days=i) for i in range(days)]


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="factory-sim history",
        description="Write N days of simulated raw sensor objects (edge_collector raw format and key layout) "
        "into a store. Idempotent: re-running writes identical keys and bytes. Prints a JSON summary.",
    )
    p.add_argument("--days", type=int, default=1, help="number of whole UTC days to write (default 1)")
    p.add_argument("--lines", default="L1", help="comma-separated line names (default L1)")
    p.add_argument("--store", required=True, help="s3://bucket/prefix or a local directory")
    p.add_argument(
        "--endpoint-url", default=None, help="S3 endpoint (default: AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL)"
    )
    p.add_argument("--seed", type=int, default=SimConfig.seed, help="simulation seed (default 42)")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--end-date", type=_date, help="write the N days before this date (exclusive; default today UTC)"
    )
    when.add_argument("--start-date", type=_date, help="write N days starting on this date")
    p.add_argument("--object-seconds", type=int, default=DEFAULT_OBJECT_SECONDS,
                   help="seconds of data per object; must divide 86400 (default 300)")  # fmt: skip
    p.add_argument("--group", action="append", default=[], metavar="NAME=IDS",
                   help="channel group, e.g. fast=1-20 (repeatable; default one group 'all' = every channel)")  # fmt: skip
    p.add_argument("--extra-channels", type=int, default=0, help="extra vib_band channels (default 0)")
    p.add_argument(
        "--fast-rate-hz", type=float, default=SimConfig.fast_rate_hz, help="fast channel rate (default 10)"
    )
    p.add_argument(
        "--slow-rate-hz", type=float, default=SimConfig.slow_rate_hz, help="slow channel rate (default 1)"
    )
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def cli(argv: list[str]) -> int:
    """Entry point of `factory-sim history`."""
    parser = _parser()
    args = parser.parse_args(argv)
    lines = tuple(x.strip() for x in args.lines.split(",") if x.strip())
    try:
        cfg = SimConfig(seed=args.seed, lines=lines, fast_rate_hz=args.fast_rate_hz,
                        slow_rate_hz=args.slow_rate_hz, extra_channels=args.extra_channels)  # fmt: skip
        days = day_range(args.days, args.start_date, args.end_date)
        groups = parse_groups(args.group, build_channels(cfg))
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: must be >= 1")
        open_store(args.store, endpoint_url=args.endpoint_url)  # validate the URL before forking workers
        tasks = plan_tasks(cfg, lines, days, args.store, endpoint_url=args.endpoint_url,
                           object_seconds=args.object_seconds, groups=groups)  # fmt: skip
    except (ValueError, StoreError, RawFormatError) as exc:
        parser.error(str(exc))
    n_objects = sum(len(t.window_starts_ns) for t in tasks) * len(groups)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=n_objects, unit="obj", desc="history", file=sys.stderr)
    try:
        progress = (lambda r: bar.update(r.objects)) if bar is not None else None
        result = run_history(tasks, workers=args.workers, progress=progress)
    except (StoreError, RawFormatError) as exc:
        print(f"factory-sim history: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    summary = {
        "objects": result.objects,
        "samples": result.samples,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "samples_per_s": round(result.samples / result.seconds) if result.seconds else None,
        "lines": list(lines),
        "days": [d.isoformat() for d in (days[0], days[-1])],
        "store": args.store,
        "workers": args.workers,
    }
    print(json.dumps(summary))
    return 0
