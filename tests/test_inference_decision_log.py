"""Decision log on the collector's spool path: crash recovery, deterministic keys, retries without end,
nothing deleted before the store confirms, and settings errors that name the setting."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_collector.spool import TMP_PREFIX, Spool, SpoolHeader, decode_file
from edge_collector.store import LocalDirStore, ObjectStore, S3Store, StoreError
from inference_server.decision_log import DecisionLog, decode_segment
from inference_server.metrics import Metrics
from inference_server.settings import SettingsError, load_settings


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

    # A crash mid spool write leaves a temp file (never acknowledged as logged); a server upgraded
    # from the pre-spool layout leaves a JSON-lines segment whose last line is torn.
    (spool_dir / f"{TMP_PREFIX}crashed").write_bytes(b"EDSP1\npartial")
    legacy = spool_dir / "open" / "node1-000000000001.jsonl"
    legacy.parent.mkdir()
    legacy.write_bytes(json.dumps(record(99)).encode() + b"\n" + b'{"ts": "2026-03-0')

    metrics = Metrics()
    recovered = DecisionLog(spool_dir, "node1", metrics)
    assert not (spool_dir / f"{TMP_PREFIX}crashed").exists()
    assert not legacy.parent.exists()  # migrated into the spool, torn line dropped
    assert len(recovered.pending()) == len(entries) + 1
    store = LocalDirStore(tmp_path / "store")
    ship(recovered, store, until=lambda: not recovered.pending())
    assert metrics.decisions_shipped._value.get() == 11  # 10 + the complete line of the crashed segment
    assert sorted(store.list("decisions/")) == sorted([h.key for h in headers] + [recovered_key(store)])
    ids = sorted(r["request_id"] for r in stored_records(store))
    assert ids == sorted([f"r{i}" for i in range(10)] + ["r99"])
    assert list(spool_dir.glob("*.spl")) == []


def recovered_key(store: ObjectStore) -> str:
    """The key holding r99 (the migrated legacy decision)."""
    [key] = [
        k
        for k in store.list("decisions/")
        if any(r["request_id"] == "r99" for r in decode_segment(store.get(k)))
    ]
    return key


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
