"""History generator: exact samples, idempotent bytes, same keys and bytes on a directory and on S3."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factory_core.layout import date_prefix, parse_key
from factory_core.rawformat import decode_batch
from factory_core.store import LocalDirStore, S3Store
from factory_sim.channels import build_channels, seq_at
from factory_sim.config import NS_PER_S, ORIGIN_NS, SimConfig
from factory_sim.history import cli, day_range, parse_groups, plan_tasks, run_history
from factory_sim.schedule import LineTimeline
from factory_sim.signals import generate

DAY = dt.date(2026, 3, 14)
DAY_START = ORIGIN_NS + (DAY - dt.date(2026, 1, 1)).days * 86400 * NS_PER_S
# Slow rates keep a whole simulated day small enough for a unit test (~183k samples).
SLOW_ARGS = ["--fast-rate-hz", "0.1", "--slow-rate-hz", "0.01"]


def _digests(store: Any) -> dict[str, str]:
    return {k: hashlib.sha256(store.get(k)).hexdigest() for k in store.list("")}


def _samples(store: Any, prefix: str) -> dict[int, tuple[list[int], list[np.ndarray], list[np.ndarray]]]:
    out: dict[int, tuple[list[int], list[np.ndarray], list[np.ndarray]]] = {}
    for key in store.list(prefix):
        for b in decode_batch(store.get(key)).blocks:
            seqs, ts, vs = out.setdefault(b.channel_id, ([], [], []))
            seqs.append(b.first_seq)
            ts.append(b.t_ns)
            vs.append(b.values)
    return out


def test_samples_equal_generate_for_same_seed_and_range(tmp_path: Path) -> None:
    cfg = SimConfig(seed=7, lines=("L1",))
    tasks = plan_tasks(cfg, ["L1"], [DAY], str(tmp_path), object_seconds=60, task_seconds=180)[
        :2
    ]  # 6 minutes
    result = run_history(tasks, workers=1)
    assert result.objects == 6
    store = LocalDirStore(tmp_path)
    timeline = LineTimeline(cfg, "L1")
    got = _samples(store, date_prefix("raw", "L1", DAY))
    channels = build_channels(cfg)
    assert sorted(got) == [c.id for c in channels]
    total = 0
    for ch in channels:
        seqs, ts, vs = got[ch.id]
        s0, s1 = seq_at(ch, DAY_START), seq_at(ch, DAY_START + 360 * NS_PER_S)
        t_ref, v_ref = generate(timeline, ch, s0, s1)
        assert seqs[0] == s0
        assert np.array_equal(np.concatenate(ts), t_ref)
        assert np.concatenate(vs).tobytes() == v_ref.tobytes()  # bit-exact, NaN-safe
        offsets = np.cumsum([0] + [len(t) for t in ts[:-1]])
        assert [s - s0 for s in seqs] == offsets.tolist()  # contiguous seqs, no overlap, no hole
        total += len(t_ref)
    assert result.samples == total


def test_keys_follow_layout_and_rerun_is_byte_identical(tmp_path: Path) -> None:
    cfg = SimConfig(seed=3, lines=("L1", "L2"))
    tasks = plan_tasks(cfg, ["L1", "L2"], [DAY], str(tmp_path), object_seconds=300, task_seconds=600)
    tasks = [t for t in tasks if t.window_starts_ns[0] == DAY_START + 23 * 3600 * NS_PER_S + 2400 * NS_PER_S]
    first = run_history(tasks, workers=1)
    store = LocalDirStore(tmp_path)
    before = _digests(store)
    assert first.objects == 4 and sorted(before) == first.keys
    for key in before:
        info = parse_key(key)
        assert (info.kind, info.date, info.hour, info.group) == ("raw", DAY, 23, "all")
        assert info.start_ns is not None and info.start_ns >= DAY_START + 23 * 3600 * NS_PER_S
    again = run_history(tasks, workers=1)
    assert again.keys == first.keys
    assert _digests(store) == before


def test_groups_split_channels_and_union_is_all(tmp_path: Path) -> None:
    cfg = SimConfig(seed=3)
    groups = parse_groups(["fast=1-20", "slow=21-32"], build_channels(cfg))
    tasks = plan_tasks(
        cfg, ["L1"], [DAY], str(tmp_path / "g"), object_seconds=60, groups=groups, task_seconds=60
    )[:1]
    tasks_all = plan_tasks(cfg, ["L1"], [DAY], str(tmp_path / "a"), object_seconds=60, task_seconds=60)[:1]
    res = run_history(tasks, workers=1)
    res_all = run_history(tasks_all, workers=1)
    assert sorted(parse_key(k).group for k in res.keys) == ["fast", "slow"]
    assert res.samples == res_all.samples
    split = _samples(LocalDirStore(tmp_path / "g"), "raw/")
    whole = _samples(LocalDirStore(tmp_path / "a"), "raw/")
    assert sorted(split) == sorted(whole)
    for cid in whole:
        assert np.concatenate(split[cid][2]).tobytes() == np.concatenate(whole[cid][2]).tobytes()


@pytest.mark.parametrize(
    ("specs", "message"),
    [(["x"], "NAME=ID"), (["a=1-5", "a=6"], "twice"), (["a=40"], "do not exist"), (["a=1-b"], "not an id")],
)
def test_parse_groups_rejects(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_groups(specs, build_channels(SimConfig()))


def test_day_range() -> None:
    assert day_range(2, dt.date(2026, 2, 1), None) == [dt.date(2026, 2, 1), dt.date(2026, 2, 2)]
    assert day_range(2, None, dt.date(2026, 2, 1)) == [dt.date(2026, 1, 30), dt.date(2026, 1, 31)]
    with pytest.raises(ValueError, match="before 2026-01-01"):
        day_range(3, None, dt.date(2026, 1, 2))
    with pytest.raises(ValueError, match="--days"):
        day_range(0, None, None)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert cli([*argv, "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_local_and_s3_write_identical_keys_and_bytes(
    tmp_path: Path, moto_server: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--days", "1", "--start-date", DAY.isoformat(), "--seed", "11", "--lines", "L1", *SLOW_ARGS]
    common += ["--object-seconds", "1800"]
    local = _run_cli([*common, "--store", str(tmp_path / "local"), "--workers", "2"], capsys)
    s3 = _run_cli(
        [*common, "--store", f"s3://{s3_bucket}/hist", "--endpoint-url", moto_server, "--workers", "2"],
        capsys,
    )
    assert local["objects"] == s3["objects"] == 48
    assert local["samples"] == s3["samples"] == 20 * 8640 + 12 * 864
    assert local["bytes"] == s3["bytes"]
    local_digests = _digests(LocalDirStore(tmp_path / "local"))
    assert _digests(S3Store(s3_bucket, prefix="hist", endpoint_url=moto_server)) == local_digests
    assert all(k.startswith("raw/line=L1/date=2026-03-14/hour=") for k in local_digests)
    rerun = _run_cli([*common, "--store", str(tmp_path / "local"), "--workers", "1"], capsys)
    assert rerun["objects"] == 48
    assert _digests(LocalDirStore(tmp_path / "local")) == local_digests


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start-date", "2025-12-31"], "before 2026-01-01"),
        (["--object-seconds", "7"], "divide 86400"),
        (["--lines", "L 1"], "lines"),
        (["--store", "ftp://x/y"], "scheme"),
        (["--workers", "0"], "--workers"),
        (["--group", "fast=99"], "do not exist"),
        (["--start-date", "2026-13-01"], "not a YYYY-MM-DD"),
    ],
)
def test_cli_rejects_bad_settings(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["--store", str(tmp_path), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
