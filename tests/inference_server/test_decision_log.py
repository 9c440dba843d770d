"""Decision log on the collector's spool path: crash recovery, deterministic keys, retries without end,
nothing deleted before the store confirms, and settings errors that name the setting."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from factory_core.outbox.spool import TMP_PREFIX, Spool, SpoolHeader, decode_file
from factory_core.store import LocalDirStore, ObjectStore, S3Store, StoreError
from inference_server.core.metrics import Metrics
from inference_server.core.settings import SettingsError, load_settings
from inference_server.serving.decision_log import DecisionLog, decode_segment, iso_utc


def record(i: int, line: str = "L1", day: str = "2026-03-01") -> dict[str, Any]:
    return {"ts": f"{day}T10:00:{i % 60:02d}+00:00", "request_id": f"r{i}", "line_id": line, "status": 200}


def spooled_records(log: DecisionLog) -> list[dict[str, Any]]:
    return [r for e in log.pending() for r in decode_segment(log.spool.read(e)[1])]


def stored_records(store: ObjectStore) -> list[dict[str, Any]]:
    return [r for k in store.list("decisions/") for r in decode_segment(store.get(k))]


async def wait(cond: Callable[[], bool]) -> None:
    """Poll a condition that the uploader's threads change (bounded: fails instead of hanging)."""
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.01)  # no event to wait on across the upload threads
    raise AssertionError("condition not reached")


def ship(log: DecisionLog, store: ObjectStore, until: Callable[[], bool]) -> None:
    """Run the collector's Uploader over the decision spool until ``until()``."""

    async def run() -> None:
        uploader = log.uploader(store, retry_initial_s=0.01, retry_max_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(uploader.run(stop))
        await wait(until)
        stop.set()
        await task

    asyncio.run(run())


def test_spool_survives_crash_and_ships_deterministically(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    log = DecisionLog(spool_dir, "node1", Metrics(), batch_records=4, flush_interval_s=0.01)
    log.start()
    for i in range(10):
        log.append(record(i, line="L1" if i % 2 else "L2", day="2026-03-01" if i < 6 else "2026-03-02"))
    log.close()
    entries = log.pending()
    headers = [log.spool.read(e)[0] for e in entries]
    # one entry per (line, date) of each closed segment, never more than batch_records decisions
    assert all(h.kind == "decisions" and 1 <= h.samples <= 4 for h in headers)
    assert sum(h.samples for h in headers) == 10
    for h, e in zip(headers, entries, strict=True):
        segment = decode_segment(log.spool.read(e)[1])
        assert {(r["line_id"], r["ts"][:10]) for r in segment} == {(h.line, h.key.split("date=")[1][:10])}
        assert h.key.startswith(f"decisions/line={h.line}/date=") and "/node1-" in h.key
    # The same segments written again (e.g. re-spooled after a crash) => identical keys and bytes.
    twin = DecisionLog(tmp_path / "twin", "node1", Metrics(), batch_records=4)
    for e in entries:
        for r in decode_segment(log.spool.read(e)[1]):
            twin.append(r)
        twin.close()
    again = [twin.spool.read(e) for e in twin.pending()]
    assert [(h.key, p) for h, p in again] == [
        (h.key, log.spool.read(e)[1]) for h, e in zip(headers, entries, strict=True)
    ]

    # A crash mid spool write leaves a temp file (never acknowledged as logged).
    (spool_dir / f"{TMP_PREFIX}crashed").write_bytes(b"EDSP1\npartial")

    metrics = Metrics()
    recovered = DecisionLog(spool_dir, "node1", metrics)
    assert not (spool_dir / f"{TMP_PREFIX}crashed").exists()
    assert len(recovered.pending()) == len(entries)
    store = LocalDirStore(tmp_path / "store")
    ship(recovered, store, until=lambda: not recovered.pending())
    assert metrics.decisions_shipped._value.get() == 10
    assert sorted(store.list("decisions/")) == sorted(h.key for h in headers)
    ids = sorted(r["request_id"] for r in stored_records(store))
    assert ids == sorted(f"r{i}" for i in range(10))
    assert list(spool_dir.glob("*.spl")) == []


def test_segments_respect_size_cap_and_kinds_are_checked(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "spool", "n", Metrics(), batch_records=50, segment_max_bytes=1024)
    for i in range(30):
        log.append({**record(i), "detail": "x" * 60})
    log.close()
    segments = [decode_segment(log.spool.read(e)[1]) for e in log.pending()]
    sizes = [sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in seg) for seg in segments]
    assert len(segments) > 1 and max(sizes) <= 1024
    assert [r["request_id"] for seg in segments for r in seg] == [f"r{i}" for i in range(30)]
    with pytest.raises(ValueError, match="kind 'bogus'"):
        log.spool.write(SpoolHeader("bogus", "k", "L1"), b"")


def test_epoch_ts_is_formatted_by_the_writer(tmp_path: Path) -> None:
    """The request path records ``time.time()``; the spooled decision (and its key) carry ISO 8601 UTC."""
    log = DecisionLog(tmp_path / "spool", "n", Metrics(), batch_records=8)
    stamps = [1772359200.25, 1772359261.0, 1772445599.999999]  # 2026-03-01 10:00:00.25 .. 03-02 09:59:59
    for i, ts in enumerate(stamps):
        log.append({**record(i), "ts": ts})
    log.append(record(3))  # an ISO string is kept as given
    log.close()
    headers = [log.spool.read(e)[0] for e in log.pending()]
    assert [r["ts"] for r in spooled_records(log)] == [
        "2026-03-01T10:00:00.250000+00:00",
        "2026-03-01T10:01:01+00:00",
        "2026-03-01T10:00:03+00:00",
        "2026-03-02T09:59:59.999999+00:00",
    ]
    assert sorted(h.key.split("/")[2] + "/" + h.key.split("/")[3][:8] for h in headers) == [
        "date=2026-03-01/n-100000",
        "date=2026-03-02/n-095959",
    ]


def test_lines_are_strict_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A decision holding NaN/Infinity is refused (logged, not spooled); strings that merely read "NaN"
    and non-ASCII text are kept; every line is ASCII JSON the json module reads back to the same values."""
    log = DecisionLog(tmp_path / "spool", "n", Metrics(), batch_records=8)
    kept = [
        {**record(0), "detail": "NaN or Infinity in lot: operator decides", "latency_ms": 1e-06},
        {**record(1), "lot_id": 'Los-\u00c4\u2028"\\', "predicted_quality": 93.05289014919873, "n": 10**30},
    ]
    log.append(kept[0])
    log.append({**record(2), "predicted_quality": float("nan")})
    log.append({**record(3), "latency_ms": float("inf")})
    log.append(kept[1])
    log.close()
    assert spooled_records(log) == kept
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "ERROR"] == [
        "decision not serialisable, not logged"
    ] * 2
    [entry] = log.pending()
    lines = zstandard.ZstdDecompressor().decompress(log.spool.read(entry)[1]).splitlines()
    assert [json.loads(line) for line in lines] == kept and all(line.isascii() for line in lines)


def test_iso_utc_is_byte_for_byte_datetime_isoformat() -> None:
    """The cached-prefix formatter equals ``datetime.fromtimestamp(ts, UTC).isoformat()`` everywhere:
    exact seconds (isoformat omits ".000000"), half-microsecond ties (rounded half to even), fractions
    that round up into the next second, negative epochs, and seconds revisited after the cache moved on."""
    rng = random.Random(20260301)
    stamps = [0.0, 1.0, -1.0, -1.5, 1e-7, -1e-7, 0.4999995, 0.9999995, 0.9999996, 1772359200.0, 1772359200.5]
    stamps += [float(rng.randrange(0, 4_102_444_800)) for _ in range(2000)]  # exact seconds, to 2100
    stamps += [rng.uniform(0, 4_102_444_800) for _ in range(20000)]
    stamps += [rng.uniform(-2e9, 0) for _ in range(2000)]
    stamps += [s + k / 2e6 for s in (1772359200, 1772359201, 17) for k in range(0, 40)]  # .5 us ties
    stamps += [s + f for s in (1772359259, 1772445599) for f in (0.9999994, 0.9999995, 0.99999951, 0.9999999)]
    now = 1772359200.0
    stamps += [now + i * 0.000731 for i in range(5000)]  # a request stream: same-second runs
    stamps += stamps[:3000]  # revisited: the cache holds another second by now
    mismatched = [ts for ts in stamps if iso_utc(ts) != datetime.fromtimestamp(ts, UTC).isoformat()]
    assert mismatched == []
    assert iso_utc(1772359261.0) == "2026-03-01T10:01:01+00:00"
    assert iso_utc(1772359261.0000004) == "2026-03-01T10:01:01+00:00"  # rounds to microsecond 0
    assert iso_utc(1772359260.9999996) == "2026-03-01T10:01:01+00:00"  # carried into the next second
    for bad in (float("nan"), float("inf"), 1e300):
        with pytest.raises((ValueError, OverflowError, OSError)):
            datetime.fromtimestamp(bad, UTC)
        with pytest.raises((ValueError, OverflowError, OSError)):
            iso_utc(bad)


class Unserialisable:
    """Neither pydantic-core nor the json module can write it."""


def test_unserialisable_decision_is_dropped_at_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A decision that cannot be written is logged (with its request id) when appended, never raises into
    the caller and costs no other decision; a decision is what it was when appended."""
    metrics = Metrics()
    log = DecisionLog(tmp_path / "spool", "n", metrics, batch_records=4)
    caplog.set_level(logging.ERROR, logger="inference_server.decision_log")
    good = [{**record(i), "ts": 1772359200.0 + i} for i in range(6)]
    log.append(good[0])
    log.append({**record(90), "parameters": {"temperature": Unserialisable()}})
    log.append(good[1])
    log.append({**record(91), "ts": float("nan")})  # no time datetime can represent: not strict JSON
    log.append({**record(92), "lot": {"moisture": float("-inf")}})
    log.append(None)  # type: ignore[arg-type]  # not a decision at all
    loop: list[Any] = []
    loop.append(loop)
    log.append({**record(93), "loop": loop})  # circular
    for rec in good[2:6]:
        log.append(rec)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 5 and all(m.startswith("decision not serialisable, not logged") for m in errors)
    assert [m.rsplit("request_id=", 1)[1] for m in errors] == ["r90)", "r91)", "r92)", "None)", "r93)"]
    good[5]["status"] = 500  # changed after append: not what was logged
    log.close()
    spooled = spooled_records(log)
    assert [r["request_id"] for r in spooled] == [f"r{i}" for i in range(6)]
    assert spooled[5]["status"] == 200
    assert spooled[0]["ts"] == "2026-03-01T10:00:00+00:00" and good[0]["ts"] == spooled[0]["ts"]
    assert metrics.decisions_spooled._value.get() == 6


def test_invalid_line_ids_and_dates_land_in_their_buckets(tmp_path: Path) -> None:
    """Whatever the caller passes, a key part is a valid line id / ASCII date or the explicit bucket;
    the memoized check gives the same answer every time it is asked."""
    log = DecisionLog(tmp_path / "spool", "n", Metrics(), batch_records=100)
    cases = [
        ("L1", "2026-03-01T10:00:00+00:00", ("L1", "2026-03-01")),
        ("", "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        ("L1\n", "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        ("../etc", "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        ("x" * 65, "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        ("x" * 64, "2026-03-01T10:00:00+00:00", ("x" * 64, "2026-03-01")),
        ("L\u00e9", "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        (7, "2026-03-01T10:00:00+00:00", ("7", "2026-03-01")),
        (None, "2026-03-01T10:00:00+00:00", ("invalid", "2026-03-01")),
        ("L2", "yesterday", ("L2", "unknown")),
        ("L2", None, ("L2", "unknown")),
        ("L2", 1772359200, ("L2", "unknown")),  # an int is not formatted (only time.time() floats)
        ("L2", "\uff12\uff10\uff12\uff16-03-01T10:00:00+00:00", ("L2", "unknown")),  # fullwidth digits
        ("L2", "2026-03-0\n", ("L2", "unknown")),
        ("L2", 1772445600.5, ("L2", "2026-03-02")),
    ]
    for _ in range(2):  # second round: answered from the memo
        for i, (line, ts, _bucket) in enumerate(cases):
            log.append({"ts": ts, "request_id": f"r{i}", "line_id": line})
    log.close()
    found: dict[str, tuple[str, str]] = {}
    for entry in log.pending():
        header, payload = log.spool.read(entry)
        date = header.key.split("/date=")[1].split("/")[0]
        assert header.key.startswith(f"decisions/line={header.line}/date={date}/n-")
        for r in decode_segment(payload):
            assert found.setdefault(r["request_id"], (header.line, date)) == (header.line, date)
    assert found == {f"r{i}": bucket for i, (_, _, bucket) in enumerate(cases)}


def test_segments_split_by_line_date_and_size_cap(tmp_path: Path) -> None:
    """Interleaved lines and dates: each segment holds one (line, date), at most the size cap of JSON
    lines (a decision larger than the cap alone), its decisions in the order they were appended."""
    cap = 700
    log = DecisionLog(tmp_path / "spool", "n", Metrics(), batch_records=64, segment_max_bytes=cap)
    appended = []
    for i in range(150):
        rec = {**record(i, line=f"L{i % 3}", day=f"2026-03-0{1 + i % 2}"), "detail": "y" * (i % 50)}
        if i == 77:
            rec["detail"] = "z" * 2000
        appended.append(rec)
        log.append(rec)
    log.close()
    segments = [(log.spool.read(e)[0], decode_segment(log.spool.read(e)[1])) for e in log.pending()]
    for header, decisions in segments:
        date = header.key.split("/date=")[1][:10]
        assert {(r["line_id"], r["ts"][:10]) for r in decisions} == {(header.line, date)}
        size = sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in decisions)
        assert size <= cap or len(decisions) == 1
        assert header.samples == len(decisions) <= 64
    assert any(len(d) == 1 and d[0]["request_id"] == "r77" for _, d in segments)
    assert len(segments) > 6 * 3  # the cap split them further than (line, date) x batches
    for key in {(r["line_id"], r["ts"][:10]) for r in appended}:
        in_order = [r for _, d in segments for r in d if (r["line_id"], r["ts"][:10]) == key]
        assert in_order == [r for r in appended if (r["line_id"], r["ts"][:10]) == key]


class FailingStore(LocalDirStore):
    """A store that is down: every put fails."""

    def put(self, key: str, data: bytes) -> None:
        raise StoreError(f"put {key}: connection refused")


def test_nothing_deleted_until_the_store_confirms(tmp_path: Path, moto_server: str, s3_bucket: str) -> None:
    """A decision segment sits in the spool in the collector's file format until S3 confirms it."""
    metrics = Metrics()
    log = DecisionLog(tmp_path / "spool", "n", metrics, flush_interval_s=0.01)
    log.start()
    for i in range(5):
        log.append(record(i))
    log.close()
    assert metrics.decisions_spooled._value.get() == 5
    [entry] = log.pending()
    on_disk = entry.path.read_bytes()
    # the collector's own tooling reads it: spool scan + header, and inspect's spool-file decoder
    [(_, header)] = list(Spool(tmp_path / "spool").headers())
    assert (header.kind, header.line, header.samples) == ("decisions", "L1", 5)
    same_header, payload = decode_file(on_disk)
    assert same_header == header and entry.path.name.endswith("-d.spl")
    assert [r["request_id"] for r in decode_segment(payload)] == [f"r{i}" for i in range(5)]

    s3 = S3Store(s3_bucket, endpoint_url=moto_server)
    down = FailingStore(tmp_path / "down")

    def outage_seen() -> bool:
        return metrics.ship_errors._value.get() >= 3  # retried, not given up

    def still_spooled() -> None:
        assert entry.path.read_bytes() == on_disk  # untouched while the store is down
        assert list(s3.list("decisions/")) == []

    ship_with_outage(log, down, s3, outage_seen, still_spooled)
    assert log.pending() == [] and not entry.path.exists()
    assert s3.get(header.key) == payload  # byte for byte the spooled object
    assert metrics.decisions_shipped._value.get() == 5
    assert metrics.spool_segments._value.get() == 0


def ship_with_outage(
    log: DecisionLog,
    down: ObjectStore,
    up: ObjectStore,
    outage_seen: Callable[[], bool],
    during_outage: Callable[[], None],
) -> None:
    """Uploader against a failing store until ``outage_seen``, then the same uploader against ``up``."""

    async def run() -> None:
        uploader = log.uploader(down, retry_initial_s=0.01, retry_max_s=0.02)
        stop = asyncio.Event()
        task = asyncio.create_task(uploader.run(stop))
        await wait(outage_seen)
        during_outage()
        uploader.store = up  # the store comes back
        await wait(lambda: not log.pending())
        stop.set()
        await task

    asyncio.run(run())


def test_settings_errors_name_the_setting(tmp_path: Path) -> None:
    keys = {"INFERENCE_API_KEYS": "k" * 16, "INFERENCE_ADMIN_KEYS": "a" * 16}
    with pytest.raises(SettingsError, match="INFERENCE_API_KEYS"):
        load_settings({})
    with pytest.raises(SettingsError, match="INFERENCE_DEADLINE_S"):
        load_settings({**keys, "INFERENCE_DEADLINE_S": "0"})
    with pytest.raises(SettingsError, match=r"INFERENCE_ADMIN_KEYS: .*at least 16"):
        load_settings({**keys, "INFERENCE_ADMIN_KEYS": "short"})
    file = tmp_path / "settings.json"
    file.write_text(json.dumps({"api_keys": ["x" * 20], "deadline_s": 0.5}))
    with pytest.raises(SettingsError, match="never from a file"):
        load_settings({**keys, "INFERENCE_SETTINGS_FILE": str(file)})
    file.write_text(json.dumps({"deadline_s": 0.5, "poll_interval_s": 5}))
    cfg = load_settings({**keys, "INFERENCE_SETTINGS_FILE": str(file), "INFERENCE_POLL_INTERVAL_S": "7"})
    assert cfg.deadline_s == 0.5 and cfg.poll_interval_s == 7.0  # env overrides the file
    assert "k" * 16 not in repr(cfg)  # keys never printed
