"""`make demo`: the whole platform on embedded defaults, end to end, in a few minutes.

1. history: N days of one line written straight into the local object store (the raw format);
2. live: the simulated sensor system and the real edge collector for a few minutes (TCP → spool → store);
3. Dagster: the raw-objects sensor records every object, then per-production tables, daily aggregates
   and the quality model are materialized on a persistent instance (the UI shows them afterwards);
4. the inference server starts, pulls the promoted model from the store;
5. the control loop runs a few hundred lots against it, and every craftsman, the oracle and the model
   are compared on the same held-out lots.

Everything lives under --workdir (default var/, the embedded defaults that `make up` also uses).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from factory_core.layout import date_prefix
from factory_core.store import open_store
from factory_sim.demo.services import Service, free_port, http_ok

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file: factory_sim/demo/)
BIN = Path(sys.executable).parent


def _say(msg: str) -> None:
    print(f"\n== {msg}", flush=True)


def _run(argv: list[str], env: dict[str, str] | None = None, capture: bool = False) -> str:
    """Run one of the project's console scripts; its progress bar goes straight to the terminal."""
    proc = subprocess.run(
        argv, env={**os.environ, **(env or {})}, cwd=ROOT, text=True, capture_output=capture, check=False
    )
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-2000:] if capture else ""
        raise SystemExit(f"demo: {' '.join(argv[:2])} failed with exit code {proc.returncode}\n{detail}")
    return proc.stdout if capture else ""


class Demo:
    """The demo's paths and settings; each stage is one method."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.objects = self.work / "objects"
        self.logs = self.work / "logs"
        self.dagster_home = self.work / "dagster_home"
        self.today = dt.datetime.now(dt.UTC).date()
        self.api_key = secrets.token_urlsafe(24)
        self.env = {
            "FACTORY_STORE_URL": str(self.objects),
            "FACTORY_WAREHOUSE_URL": f"sqlite:///{self.work / 'warehouse.db'}",
            "FACTORY_LINES": args.line,
            "FACTORY_START_DATE": (self.today - dt.timedelta(days=args.days)).isoformat(),
            "DAGSTER_HOME": str(self.dagster_home),
        }

    # ------------------------------------------------------------------ stages
    def history(self) -> None:
        _say(f"1/5 history: {self.args.days} days of line {self.args.line} into {self.objects}")
        _run(
            [
                str(BIN / "factory-sim"),
                "history",
                "--days",
                str(self.args.days),
                "--lines",
                self.args.line,
                "--store",
                str(self.objects),
                "--end-date",
                self.today.isoformat(),
                "--seed",
                str(self.args.seed),
                # Bulk history in hourly objects (the live collector writes one per poll): fewer, larger
                # objects make the sensor's per-object events cheap on the embedded SQLite instance.
                "--object-seconds",
                "3600",
            ]
        )
        # The factory's master data beside its sensor data: the crew roster (names of the set_by codes).
        _run([str(BIN / "factory-sim"), "roster", "--store", str(self.objects)], capture=True)

    def live(self) -> dict[str, Any]:
        seconds = self.args.live_seconds
        _say(f"2/5 live: sensor system at {self.args.speed:g}x real time + edge collector for {seconds} s")
        sensor = Service(
            "factory-sim serve",
            [
                str(BIN / "factory-sim"),
                "serve",
                "--lines",
                self.args.line,
                "--port",
                "0",
                "--speed",
                str(self.args.speed),
                "--seed",
                str(self.args.seed),
                # Start in the past so the fast virtual clock reaches "now" as collection ends: the data
                # never lies in the future, and `make up` (real time) continues after it.
                "--start",
                (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds * self.args.speed)).isoformat(),
            ],
            log_path=self.logs / "sensor.log",
            ready=lambda s: (s.first_json_line() or {}).get("port") is not None,
        ).start()
        port = int((sensor.first_json_line() or {})["port"])
        collector = Service(
            "edge-collector",
            [str(BIN / "edge-collector"), "run"],
            log_path=self.logs / "collector.log",
            env={
                "EDGE_SENSOR_HOST": "127.0.0.1",
                "EDGE_SENSOR_PORT": str(port),
                "EDGE_STORE_URL": str(self.objects),
                "EDGE_SPOOL_DIR": str(self.work / "edge-spool"),
                "EDGE_POLL_INTERVAL_S": str(self.args.poll_s),
                "EDGE_METRICS_PORT": "0",
            },
        ).start()
        try:
            for _ in tqdm(range(seconds), desc="collecting", unit="s"):
                time.sleep(1)
                if not collector.running:
                    raise SystemExit(f"demo: the collector stopped; see {collector.log_path}")
        finally:
            collector.stop()
            sensor.stop()
        status = json.loads(
            _run(
                [str(BIN / "edge-collector"), "status"],
                env={"EDGE_SPOOL_DIR": str(self.work / "edge-spool"), "EDGE_STORE_URL": str(self.objects)},
                capture=True,
            )
        )
        live_objects = sum(
            1 for _ in open_store(str(self.objects)).list(date_prefix("raw", self.args.line, self.today))
        )
        print(
            f"collector stopped cleanly: {live_objects} raw objects for today in the store, "
            f"spool backlog {status['backlog']['files']} files / {status['backlog']['bytes']} bytes, "
            f"{len(status['ledger']['pending_gap_records'])} pending gap records"
        )
        return status

    def dagster(self) -> dict[str, Any]:
        _say("3/5 Dagster: record raw objects, build per-production tables, daily aggregates, model")
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        # `make up` starts Dagster with the same settings, so the UI shows exactly these partitions.
        (self.work / "factory.env.json").write_text(json.dumps(self.env, indent=2) + "\n")
        shutil.copy(ROOT / "dagster.yaml", self.dagster_home / "dagster.yaml")
        os.environ.update(self.env)
        # Imported here: the definitions read FACTORY_* when they load (Dagster's import takes a while).
        print("   loading the Dagster definitions", flush=True)
        from factory_sim.demo.pipeline import run_pipeline

        return run_pipeline(self.today, self.args.days, self.args.line)

    def serve_model(self) -> tuple[Service, str]:
        _say("4/5 inference server: pull the promoted model from the store")
        port = free_port()
        server = Service(
            "inference-server",
            [str(BIN / "inference-server"), "serve", "--port", str(port)],
            log_path=self.logs / "inference.log",
            env={
                "INFERENCE_API_KEYS": self.api_key,
                "INFERENCE_ADMIN_KEYS": secrets.token_urlsafe(24),
                "INFERENCE_STORE_URL": str(self.objects),
                "INFERENCE_CACHE_DIR": str(self.work / "inference" / "cache"),
                "INFERENCE_SPOOL_DIR": str(self.work / "inference" / "decisions"),
                "INFERENCE_POLL_INTERVAL_S": "2",
            },
            ready=lambda s: http_ok(f"http://127.0.0.1:{port}/health/ready"),
        )
        server.start(timeout_s=120)
        url = f"http://127.0.0.1:{port}"
        print(f"ready on {url} (OpenAPI at /docs)")
        return server, url

    def closed_loop(self, url: str) -> dict[str, Any]:
        _say(
            f"5/5 closed loop: {self.args.lots} productions on the model, then every policy on the same lots"
        )
        env = {"DEMO_API_KEY": self.api_key}
        start = dt.datetime.combine(self.today, dt.time(), dt.UTC).isoformat()
        out = _run(
            [
                str(BIN / "factory-sim"),
                "run",
                "--endpoint",
                url,
                "--api-key-env",
                "DEMO_API_KEY",
                "--productions",
                str(self.args.lots),
                "--line",
                self.args.line,
                "--seed",
                str(self.args.seed),
                "--start",
                start,
            ],
            env=env,
            capture=True,
        )
        run_summary = json.loads(out.strip().splitlines()[-1])
        report = json.loads(
            _run(
                [
                    str(BIN / "factory-sim"),
                    "evaluate",
                    "--endpoint",
                    url,
                    "--api-key-env",
                    "DEMO_API_KEY",
                    "--lots",
                    str(self.args.lots),
                    "--seed",
                    str(self.args.seed + 1),
                    "--start",
                    start,
                ],
                env=env,
                capture=True,
            )
        )
        return {"run": run_summary, "evaluate": report}


def comparison_table(report: dict[str, Any]) -> str:
    """The model against each craftsman and the oracle: quality, faults, cycle time, energy."""
    rows = []
    for name, p in report["policies"].items():
        who = {"endpoint": "model"}.get(p.get("kind", ""), p.get("kind", ""))
        label = f"{name} ({p['skill']})" if p.get("skill") else name
        rows.append(
            (
                label if who != "model" else "model (inference server)",
                f"{p['mean_quality']:.2f}",
                f"{100 * p['fault_rate']:.1f}%",
                f"{p['mean_cycle_time_s']:.1f}",
                f"{p['mean_energy_kwh']:.3f}",
            )
        )
    rows.sort(key=lambda r: -float(r[1]))
    head = ("policy", "mean quality", "faults", "cycle time s", "energy kWh")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="factory-sim demo", description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default=str(ROOT / "var"), help="where everything is written (default var/)")
    p.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    p.add_argument("--line", default="L1", help="line name (default L1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--live-seconds", type=int, default=90, help="real seconds of live collection (default 90)"
    )
    p.add_argument("--speed", type=float, default=10.0, help="sensor system's virtual speed (default 10x)")
    p.add_argument("--poll-s", type=float, default=5.0, help="collector poll interval, real s (default 5)")
    p.add_argument("--lots", type=int, default=300, help="lots in the closed loop (default 300)")
    p.add_argument("--fresh", action="store_true", help="delete the workdir's demo data first")
    return p.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    demo = Demo(args)
    if args.fresh and demo.work.exists():
        shutil.rmtree(demo.work)
    started = time.monotonic()
    demo.history()
    demo.live()
    pipeline = demo.dagster()
    server, url = demo.serve_model()
    try:
        result = demo.closed_loop(url)
    finally:
        server.stop()
    report = result["evaluate"]
    _say(
        f"Model {pipeline.get('model_version', '?')} against every craftsman on {report['lots']} held-out lots"
    )
    print(comparison_table(report))
    run = result["run"]
    print(
        f"\nclosed loop: {run['productions']} productions, the model set the dial for "
        f"{run['model_decisions']}; who decided: {json.dumps(run['set_by'])}; mean quality {run['mean_quality']:.2f}"
    )
    summary = {"elapsed_s": round(time.monotonic() - started, 1), "pipeline": pipeline, "run": run}
    (demo.work / "demo-summary.json").write_text(json.dumps({**summary, "evaluate": report}, indent=2) + "\n")
    print(f"\ndemo finished in {summary['elapsed_s']:.0f} s; summary in {demo.work / 'demo-summary.json'}")
    print(
        "open the Dagster UI on this data:  make up   then browse http://127.0.0.1:3000  (make down stops it)"
    )
    return 0


def main() -> None:
    raise SystemExit(cli())


if __name__ == "__main__":
    main()
