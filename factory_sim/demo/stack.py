"""`make up` / `make down`: the platform's services, long-lived on this machine, on the embedded defaults.

Started: the simulated sensor system (real time), the edge collector, the inference server, and Dagster's
webserver and daemon on the demo's instance (var/dagster_home). Each runs detached in its own process
group with its pid in var/run/ and its log in var/logs/; `down` stops them with SIGTERM (clean shutdown)
and SIGKILL only after a grace period.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path

from factory_sim.demo.services import Service, http_ok

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: factory_sim/demo/)
VAR = ROOT / "var"
RUN = VAR / "run"
BIN = Path(sys.executable).parent
ENV_FILE = VAR / "factory.env.json"  # written by the demo: FACTORY_* settings its data was built with


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
    for svc in services(ports):
        pidfile = RUN / f"{svc.name}.pid"
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            print(f"{svc.name}: already running (pid {pidfile.read_text().strip()})")
            continue
        svc.start(timeout_s=120)
        assert svc.proc is not None
        pidfile.write_text(str(svc.proc.pid))
        print(f"{svc.name}: started (pid {svc.proc.pid}, log {svc.log_path.relative_to(ROOT)})")
    print(
        f"\nDagster UI:        http://127.0.0.1:{ports.ui_port}\n"
        f"inference API:     http://127.0.0.1:{ports.inference_port}/docs  (key in var/run/api-key)\n"
        f"collector metrics: http://127.0.0.1:{ports.collector_metrics_port}/metrics\n"
        "stop everything:   make down"
    )
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def down(grace_s: float = 20.0) -> int:
    for pidfile in sorted(RUN.glob("*.pid")):
        pid = int(pidfile.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            print(f"{pidfile.stem}: stopped")
        pidfile.unlink()
    return 0


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="factory-sim stack", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("up", "down"))
    p.add_argument("--ui-port", type=int, default=3000)
    p.add_argument("--inference-port", type=int, default=8000)
    p.add_argument("--sensor-port", type=int, default=5020)
    p.add_argument("--collector-metrics-port", type=int, default=9108)
    args = p.parse_args(argv)
    return up(args) if args.action == "up" else down()


if __name__ == "__main__":
    raise SystemExit(cli())
