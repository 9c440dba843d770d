"""Decision spool and settings: crash recovery, deterministic shipping, nothing deleted before the store
confirms, and settings errors that name the setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_collector.store import LocalDirStore, StoreError
from inference_server.decision_log import DecisionLog
from inference_server.metrics import Metrics
from inference_server.settings import SettingsError, load_settings


def record(i: int, line: str = "L1", day: str = "2026-03-01") -> dict[str, Any]:
    return {"ts": f"{day}T10:00:{i % 60:02d}+00:00", "request_id": f"r{i}", "line_id": line, "status": 200}


def test_spool_survives_crash_and_ships_deterministically(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "spool", "node1", Metrics(), batch_records=4, flush_interval_s=0.01)
    log.start()
    for i in range(10):
        log.append(record(i, line="L1" if i % 2 else "L2", day="2026-03-01" if i < 6 else "2026-03-02"))
    log.close()
    closed = sorted((tmp_path / "spool" / "closed").iterdir())
    assert len(closed) == 1
    # A process killed mid-write leaves an open segment whose last line is torn.
    open_dir = tmp_path / "spool" / "open"
    crashed = open_dir / "node1-000000000001.jsonl"
    crashed.write_bytes(json.dumps(record(99)).encode() + b"\n" + b'{"ts": "2026-03-0')

    recovered = DecisionLog(tmp_path / "spool", "node1", Metrics())
    assert list(open_dir.iterdir()) == []  # the crashed segment was closed as it was
    assert recovered._seq == 2  # never reuses a segment number
    store = LocalDirStore(tmp_path / "store")
    assert recovered.ship(store) == 11  # 10 + the complete line of the crashed segment; torn line dropped
    keys = sorted(store.list("decisions/"))
    assert keys == [
        "decisions/line=L1/date=2026-03-01/node1-000000000000.jsonl",
        "decisions/line=L1/date=2026-03-01/node1-000000000001.jsonl",
        "decisions/line=L1/date=2026-03-02/node1-000000000000.jsonl",
        "decisions/line=L2/date=2026-03-01/node1-000000000000.jsonl",
        "decisions/line=L2/date=2026-03-02/node1-000000000000.jsonl",
    ]
    ids = sorted(json.loads(line)["request_id"] for k in keys for line in store.get(k).splitlines())
    assert ids == sorted([f"r{i}" for i in range(10)] + ["r99"])
    assert recovered.pending() == []


class FailingStore(LocalDirStore):
    """A store that is down: every put fails."""

    def put(self, key: str, data: bytes) -> None:
        raise StoreError(f"put {key}: connection refused")


def test_nothing_deleted_until_the_store_confirms(tmp_path: Path) -> None:
    metrics = Metrics()
    log = DecisionLog(tmp_path / "spool", "n", metrics, flush_interval_s=0.01)
    log.start()
    for i in range(5):
        log.append(record(i))
    log.close()
    assert log.ship(FailingStore(tmp_path / "down")) == 0
    assert len(log.pending()) == 1
    assert metrics.ship_errors._value.get() == 1.0
    assert log.ship(LocalDirStore(tmp_path / "up")) == 5
    assert log.pending() == []


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
