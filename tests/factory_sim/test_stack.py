"""`make up` is all or nothing: ports checked before anything starts, a failed start stops what it started.

Real processes and sockets on free ports; the stack's state lives in a temporary var/ (--var)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory_sim.demo import stack
from factory_sim.demo.services import free_port, group_members, spawn, wait_for


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("VAR", "RUN", "ENV_FILE"):
        monkeypatch.setattr(stack, name, getattr(stack, name))  # restored after the test
    yield tmp_path / "var"
    stack._use_var(tmp_path / "var")
    stack.down(grace_s=5)


def _ports() -> list[str]:
    return ["--ui-port", str(free_port()), "--inference-port", str(free_port()),
            "--sensor-port", str(free_port()), "--collector-metrics-port", str(free_port())]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_taken_port_is_named_with_how_to_choose_another_and_nothing_starts(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        argv = _ports()
        argv[argv.index("--ui-port") + 1] = str(taken)
        assert stack.cli(["up", *argv, "--var", str(var)]) == 2
    err = capsys.readouterr().err
    assert f"port {taken} (Dagster UI) is taken" in err
    assert "make up UI_PORT=" in err
    assert not list((var / "run").glob("*.pid"))
    assert not (var / "logs").exists()  # no service was even spawned


def test_the_same_port_for_two_services_is_refused(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _ports()
    argv[argv.index("--sensor-port") + 1] = argv[argv.index("--inference-port") + 1]
    assert stack.cli(["up", *argv, "--var", str(var)]) == 2
    assert "more than one service" in capsys.readouterr().err


def test_a_service_that_fails_to_start_stops_the_ones_started_before_it(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = var / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("storage: {not_a_storage: {}}\n")  # the webserver cannot start
    assert stack.cli(["up", *_ports(), "--var", str(var)]) == 1
    out = capsys.readouterr()
    pids = [int(p) for p in re.findall(r": started \(pid (\d+)", out.out)]
    assert len(pids) == 3, out.out  # sensor, collector, inference came up before the webserver failed
    assert "dagster-webserver exited" in out.err and "stopped again" in out.err
    assert not any(_alive(pid) for pid in pids)
    assert not list((var / "run").glob("*.pid"))
    assert os.path.exists(var / "logs" / "dagster-webserver.log")


def test_make_dev_runs_dagster_dev_on_the_demos_instance_and_settings(var: Path) -> None:
    """Not a throwaway instance starting 2026-01-01: the demo's DAGSTER_HOME and FACTORY_* (env file)."""
    stack._use_var(var)
    var.mkdir(parents=True)
    (var / "factory.env.json").write_text('{"FACTORY_START_DATE": "2026-09-01", "FACTORY_LINES": "L1"}')
    argv, env = stack.dev_command(3999)
    assert argv[1:3] == ["dev", "-w"] and argv[-2:] == ["-p", "3999"]
    assert env["DAGSTER_HOME"] == str(var / "dagster_home")
    assert env["FACTORY_START_DATE"] == "2026-09-01"
    assert env["FACTORY_STORE_URL"] == str(var / "objects")
    makefile = (stack.ROOT / "Makefile").read_text()
    readme = (stack.ROOT / "README.md").read_text()
    assert "stack dev" in makefile and "make dev" in readme
    assert "dagster dev -w workspace.yaml  " not in readme  # the bare command is no longer suggested


def test_make_down_stops_children_that_outlive_their_service(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The daemon's code server outlived `make down` (it stopped waiting once the daemon itself exited): a
    service's whole process group is stopped, killing what ignores SIGTERM after the grace period."""
    stack._use_var(var)
    (var / "run").mkdir(parents=True)
    # The leader exits on SIGTERM; its child ignores SIGTERM (as a busy code server does for a while).
    leader = spawn(["sh", "-c", "(trap '' TERM; sleep 120) & wait"], var / "logs" / "svc.log")
    (var / "run" / "svc.pid").write_text(str(leader.pid))
    members = wait_for("the child", lambda: len(group_members(leader.pid)) == 2 or None, 10)
    assert members
    child = next(p for p in group_members(leader.pid) if p != leader.pid)
    assert stack.down(grace_s=1.0) == 0
    assert "svc: stopped (killed after the grace period)" in capsys.readouterr().out
    assert not _alive(child) and not group_members(leader.pid)
    leader.wait(timeout=5)
