"""Helper processes, started and stopped safely: the demo, `make up` and the end-to-end tests share these.

Every service is a real subprocess (the same console scripts an operator runs), its output goes to a
log file, and stopping is SIGTERM first (each daemon shuts down cleanly on it) and SIGKILL only after a
grace period, so a stuck process can never hang the demo or a test run. Readiness is waited on by polling
observable state (a port, an HTTP probe, a log line), never by fixed sleeps. Standard library only: the
simulator's install must not grow for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ServiceError(RuntimeError):
    """A service did not start or become ready; the message names it and points at its log."""


class WaitTimeout(TimeoutError):
    """`wait_for` ran out of time (its own type, so a probe's socket timeout is not mistaken for it)."""


def free_port() -> int:
    """An ephemeral loopback port that is free right now (for services without port-0 support)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET url answers 2xx (readiness probes)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for(
    what: str,
    probe: Callable[[], T],
    timeout_s: float,
    interval_s: float = 0.2,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Call `probe` every `interval_s` until it returns something truthy, and return that.

    An exception from `probe` ends the wait at once (a dead process should not cost the whole timeout),
    except the `retry_on` types: transient errors such as "not listening yet" that just mean "not yet".
    Raises WaitTimeout naming `what` and the last transient error."""
    deadline = time.monotonic() + timeout_s
    last = "no result"
    while time.monotonic() < deadline:
        value: T | None
        try:
            value = probe()
        except retry_on as exc:
            value, last = None, f"{type(exc).__name__}: {exc}"
        if value:
            return value
        time.sleep(interval_s)
    raise WaitTimeout(f"timed out after {timeout_s:.0f}s waiting for {what} ({last})")


def spawn(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (a new process group), stdout and stderr appended to `log_path`.

    The own group lets `stop_groups` signal the process and every child it spawns, and keeps a Ctrl-C in
    the terminal from reaching it before the caller's orderly stop. `env` is the complete environment
    (None inherits ours)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # ProcessLookupError: the group is gone already; PermissionError: only zombies left (some kernels).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop_groups(procs: Iterable[subprocess.Popen[bytes]], grace_s: float, sweep: bool = False) -> None:
    """SIGTERM the process groups of `procs` (spawned by `spawn`), SIGKILL them after `grace_s` in total.

    By default only groups whose leader still runs are signalled and killed. `sweep=True` signals and
    kills every group regardless, for process trees whose children (a code server's run workers) may
    outlive their parent."""
    targets = [p for p in procs if sweep or p.poll() is None]
    for proc in targets:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in targets:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in targets:
        if sweep or proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`, from /proc (Linux)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def stop_process_groups(pgids: Iterable[int], grace_s: float, poll_s: float = 0.2) -> list[int]:
    """SIGTERM each process group, wait until every member of every group is gone, SIGKILL what is left
    after `grace_s`; returns the groups that had to be killed.

    Waiting for the whole group, not only its leader: a leader (the Dagster daemon, the webserver) can exit
    before its children (code servers, run workers) do, and those must not outlive `make down`."""
    pgids = list(pgids)
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(group_members(g) for g in pgids):
        time.sleep(poll_s)
    killed = [g for g in pgids if group_members(g)]
    for pgid in killed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(group_members(g) for g in killed):
        time.sleep(poll_s)
    return killed


@dataclass
class Service:
    """One subprocess with a log file and a readiness probe."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready: Callable[[Service], bool] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Service:
        """Start the process and wait until `ready` says so (or it dies, or time runs out)."""
        proc = self.proc = spawn(self.argv, self.log_path, env={**os.environ, **self.env}, cwd=self.cwd)

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {proc.returncode}; see {self.log_path}")
            return self.ready is None or self.ready(self)

        try:
            wait_for(self.name, ready, timeout_s, interval_s=0.2)
        except WaitTimeout:
            self.stop()
            raise ServiceError(
                f"{self.name} was not ready after {timeout_s:.0f} s; see {self.log_path}"
            ) from None
        return self

    def first_json_line(self) -> dict[str, object] | None:
        """The first JSON object the service logged (servers announce their port this way)."""
        if not self.log_path.exists():
            return None
        for line in self.log_path.read_text(errors="replace").splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    return dict(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `grace_s`; returns the exit code. The whole group is
        waited for, not only the service's own process (its children must not outlive it)."""
        if self.proc is None:
            return None
        stop_process_groups([self.proc.pid], grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        return self.proc.returncode
