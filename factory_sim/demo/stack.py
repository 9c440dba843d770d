"""`make up` / `make down`: the platform's services, long-lived on this machine, on the embedded defaults.

Started: the simulated sensor system (real time), the edge collector, the inference server, and Dagster's
webserver and daemon on the demo's instance (var/dagster_home). Each runs detached in its own process
group with its pid in var/run/ and its log in var/logs/; `down` stops them with SIGTERM (clean shutdown)
and SIGKILL only after a grace period.

All or nothing: every port is checked before anything starts (a taken one is named with the `make up`
variable that moves it, e.g. `make up UI_PORT=3001`), and if a service does not come up, the ones this
call started are stopped again, so a failed `make up` never leaves half a stack running.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from factory_sim.demo.services import Service, ServiceError, group_members, http_ok, stop_process_groups

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: factory_sim/demo/)
VAR = ROOT / "var"
RUN = VAR / "run"
BIN = Path(sys.executable).parent
ENV_FILE = VAR / "factory.env.json"  # written by the demo: FACTORY_* settings its data was built with


# argparse option -> (what listens there, the `make up` variable that sets it, default)
PORTS = {
    "ui_port": ("Dagster UI", "UI_PORT", 3000),
    "inference_port": ("inference API", "API_PORT", 8000),
    "sensor_port": ("sensor system (binary TCP)", "SENSOR_PORT", 5020),
    "collector_metrics_port": ("collector metrics", "METRICS_PORT", 9108),
}


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on (or holds) host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


SERVICE_PORT = {
    "sensor": "sensor_port",
    "collector": "collector_metrics_port",
    "inference": "inference_port",
    "dagster-webserver": "ui_port",
}


def taken_ports(ports: argparse.Namespace, options: list[str] | None = None) -> list[str]:
    """One sentence per taken port among `options` (default all), naming the service and how to choose
    another."""
    out = []
    chosen = [getattr(ports, opt) for opt in PORTS]
    for opt, (what, var, _default) in PORTS.items():
        if options is not None and opt not in options:
            continue
        port = getattr(ports, opt)
        if chosen.count(port) > 1:
            out.append(
                f"port {port} ({what}) is given to more than one service; choose another: make up {var}=..."
            )
        elif port_taken(port):
            out.append(f"port {port} ({what}) is taken; choose another: make up {var}={_suggest(port)}")
    return out


def _suggest(port: int) -> int:
    for candidate in range(port + 1, port + 100):
        if not port_taken(candidate):
            return candidate
    return port + 100


def _factory_env() -> dict[str, str]:
    env = {
        "FACTORY_STORE_URL": str(VAR / "objects"),
        "FACTORY_WAREHOUSE_URL": f"sqlite:///{VAR / 'warehouse.db'}",
        "DAGSTER_HOME": str(VAR / "dagster_home"),
    }
    if ENV_FILE.exists():
        env.update(json.loads(ENV_FILE.read_text()))
    return env


def _secret(name: str) -> str:
    """A per-machine key kept in var/run (0600), never in the repo."""
    path = RUN / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def services(ports: argparse.Namespace) -> list[Service]:
    env = _factory_env()
    logs = VAR / "logs"
    return [
        Service(
            "sensor",
            [str(BIN / "factory-sim"), "serve", "--port", str(ports.sensor_port), "--speed", "1"],
            logs / "sensor.log",
            ready=lambda s: s.first_json_line() is not None,
        ),
        Service(
            "collector",
            [str(BIN / "edge-collector"), "run"],
            logs / "collector.log",
            env={
                "EDGE_SENSOR_PORT": str(ports.sensor_port),
                "EDGE_STORE_URL": env["FACTORY_STORE_URL"],
                "EDGE_SPOOL_DIR": str(VAR / "edge-spool"),
                "EDGE_METRICS_PORT": str(ports.collector_metrics_port),
            },
            ready=lambda s: http_ok(f"http://127.0.0.1:{ports.collector_metrics_port}/metrics"),
        ),
        Service(
            "inference",
            [str(BIN / "inference-server"), "serve", "--port", str(ports.inference_port)],
            logs / "inference.log",
            env={
                "INFERENCE_API_KEYS": _secret("api-key"),
                "INFERENCE_ADMIN_KEYS": _secret("admin-key"),
                "INFERENCE_STORE_URL": env["FACTORY_STORE_URL"],
                "INFERENCE_CACHE_DIR": str(VAR / "inference" / "cache"),
                "INFERENCE_SPOOL_DIR": str(VAR / "inference" / "decisions"),
            },
            ready=lambda s: http_ok(f"http://127.0.0.1:{ports.inference_port}/health/live"),
        ),
        Service(
            "dagster-webserver",
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(ports.ui_port),
            ],
            logs / "dagster-webserver.log",
            env=env,
            cwd=ROOT,
            ready=lambda s: http_ok(f"http://127.0.0.1:{ports.ui_port}/server_info", timeout=2),
        ),
        Service(
            "dagster-daemon",
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            logs / "dagster-daemon.log",
            env=env,
            cwd=ROOT,
        ),
    ]


def up(ports: argparse.Namespace) -> int:
    RUN.mkdir(parents=True, exist_ok=True)
    home = Path(_factory_env()["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    todo = []
    for svc in services(ports):
        pidfile = RUN / f"{svc.name}.pid"
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            print(f"{svc.name}: already running (pid {pidfile.read_text().strip()})")
        else:
            todo.append(svc)
    # Every port of a service still to start must be free before anything starts.
    problems = taken_ports(ports, [SERVICE_PORT[s.name] for s in todo if s.name in SERVICE_PORT])
    if problems:
        print("make up: not starting anything:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    started: list[Service] = []
    for svc in todo:
        try:
            svc.start(timeout_s=120)
        except ServiceError as exc:
            print(f"make up: {exc}", file=sys.stderr)
            for done in reversed(started):
                done.stop()
                (RUN / f"{done.name}.pid").unlink(missing_ok=True)
                print(f"{done.name}: stopped again", file=sys.stderr)
            return 1
        started.append(svc)
        assert svc.proc is not None
        (RUN / f"{svc.name}.pid").write_text(str(svc.proc.pid))
        print(f"{svc.name}: started (pid {svc.proc.pid}, log {_shown(svc.log_path)})")
    print(
        f"\nDagster UI:        http://127.0.0.1:{ports.ui_port}\n"
        f"inference API:     http://127.0.0.1:{ports.inference_port}/docs  (key in {_shown(RUN / 'api-key')})\n"
        f"sensor system:     127.0.0.1:{ports.sensor_port}  (binary TCP, read by the collector)\n"
        f"collector metrics: http://127.0.0.1:{ports.collector_metrics_port}/metrics\n"
        "stop everything:   make down"
    )
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _use_var(var: Path) -> None:
    """Keep pids, logs, the instance and the data under `var` instead of the repository's var/."""
    global VAR, RUN, ENV_FILE
    VAR, RUN, ENV_FILE = var, var / "run", var / "factory.env.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(grace_s: float = 20.0) -> int:
    """Stop every service of the pid files: each one's whole process group (a service started by `up` leads
    its own group), so children that outlive their leader (the daemon's code server, run workers) stop too."""
    for pidfile in sorted(RUN.glob("*.pid")):
        pid = int(pidfile.read_text())
        if group_members(pid):
            killed = stop_process_groups([pid], grace_s)
            print(f"{pidfile.stem}: stopped" + (" (killed after the grace period)" if killed else ""))
        pidfile.unlink()
    return 0


def dev_command(ui_port: int) -> tuple[list[str], dict[str, str]]:
    """`dagster dev` on the demo's instance and settings (what `make dev` runs).

    A bare `dagster dev -w workspace.yaml` starts a throwaway instance whose partitions begin on
    2026-01-01 and whose raw sensor, without the demo's cursor, re-reads every object and rewrites the
    demo's production tables and warehouse; with the demo's DAGSTER_HOME and FACTORY_* it continues
    exactly where the demo (or `make up`) left off."""
    env = _factory_env()
    argv = [
        str(BIN / "dagster"),
        "dev",
        "-w",
        str(ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(ui_port),
    ]
    return argv, env


def dev(ui_port: int) -> int:
    pidfile = RUN / "dagster-daemon.pid"
    if pidfile.exists() and _alive(int(pidfile.read_text())):
        print("make dev: `make up` already runs Dagster on this instance; use its UI or `make down` first",
              file=sys.stderr)  # fmt: skip
        return 2
    if port_taken(ui_port):
        print(f"make dev: port {ui_port} (Dagster UI) is taken; choose another: make dev UI_PORT={_suggest(ui_port)}",
              file=sys.stderr)  # fmt: skip
        return 2
    argv, env = dev_command(ui_port)
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    if not (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists():
        shutil.copy(ROOT / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    os.chdir(ROOT)
    os.execve(argv[0], argv, {**os.environ, **env})


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="factory-sim stack", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("up", "down", "dev"))
    for opt, (what, var, default) in PORTS.items():
        p.add_argument(
            "--" + opt.replace("_", "-"), type=int, default=default, help=f"{what} (make up {var}=...)"
        )
    p.add_argument("--var", type=Path, default=None, help="state directory (default: the repository's var/)")
    args = p.parse_args(argv)
    if args.var is not None:
        _use_var(args.var.resolve())
    if args.action == "dev":
        return dev(args.ui_port)
    return up(args) if args.action == "up" else down()


if __name__ == "__main__":
    raise SystemExit(cli())
