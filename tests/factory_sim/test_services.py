"""The shared process helpers (factory_sim/services.py) on real processes: own process group, log file,
SIGTERM then SIGKILL after the grace period, the sweep of a group whose leader is gone, polling."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from factory_sim.demo.services import Service, ServiceError, WaitTimeout, spawn, stop_groups, wait_for

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_spawn_logs_and_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "p.log"
    proc = spawn([sys.executable, "-c", IGNORES_TERM], log)
    wait_for("the child's first line", lambda: "up" in log.read_text(), 10.0, 0.02)
    started = time.monotonic()
    stop_groups([proc], grace_s=0.5)
    assert proc.returncode == -9  # SIGTERM was ignored: SIGKILL after the grace period
    assert time.monotonic() - started < 5.0


def test_sweep_kills_a_child_that_outlives_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = (
        "import subprocess, sys; "
        f"c = subprocess.Popen([sys.executable, '-c', {IGNORES_TERM!r}]); "
        f"open({str(pid_file)!r}, 'w').write(str(c.pid))"
    )
    for sweep in (False, True):
        proc = spawn([sys.executable, "-c", parent], tmp_path / "parent.log")
        proc.wait(timeout=10)  # the leader is gone, its child runs on in the group
        child = int(wait_for("the child's pid", pid_file.read_text, 10.0, 0.02))
        assert _alive(child)
        stop_groups([proc], grace_s=0.2, sweep=sweep)
        if sweep:  # the kill is delivered asynchronously: the child goes within moments
            assert wait_for("the child to go", lambda c=child: not _alive(c), 5.0, 0.02)
        else:  # a group whose leader exited is left alone by default
            time.sleep(0.3)
            assert _alive(child)
            stop_groups([proc], grace_s=0.2, sweep=True)
            assert wait_for("the child to go", lambda c=child: not _alive(c), 5.0, 0.02)
        pid_file.unlink()


def test_wait_for_retries_only_the_named_errors() -> None:
    calls = iter([ConnectionError("not yet"), 0, "ready"])

    def probe() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return str(value) if value else ""

    assert wait_for("probe", probe, 5.0, 0.0, retry_on=(ConnectionError,)) == "ready"
    with pytest.raises(ValueError):
        wait_for("probe", lambda: int("x"), 5.0, 0.0, retry_on=(ConnectionError,))
    with pytest.raises(WaitTimeout, match="waiting for nothing"):
        wait_for("nothing", lambda: False, 0.05, 0.01)


def test_service_reports_an_early_exit_with_its_log(tmp_path: Path) -> None:
    service = Service("quitter", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "q.log",
                      ready=lambda s: False)  # fmt: skip
    with pytest.raises(ServiceError, match=r"quitter exited with 3; see .*q\.log"):
        service.start(timeout_s=10.0)
