"""A real Dagster deployment on loopback for end-to-end tests: `dagster-webserver` + `dagster-daemon`.

Why real processes: the data team backfills and browses through the webserver, and the daemon is what
ticks sensors and submits backfill runs; an in-process `materialize()` proves neither. The deployment uses
the repository's dagster.yaml (copied into a temporary DAGSTER_HOME), the code location named by the
repository's workspace.yaml, and points the resources at a temporary object store and SQLite warehouse
through the documented environment variables (FACTORY_STORE_URL, FACTORY_WAREHOUSE_URL, FACTORY_LINES).

Topology: one `dagster api grpc` code server shared by the webserver and the daemon (as in a deployment
with a separate user-code container), so the definitions are imported once instead of twice on a 2-core
CI machine. Lifecycle: code server, webserver, then the tests choose sensor states through GraphQL, then
the daemon starts (so no daemon tick races those states); `stop()` sends SIGTERM to each process group
(code servers spawn run workers), then SIGKILL to whatever is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from factory_sim.demo import services
from factory_sim.demo.services import free_port, spawn, stop_groups

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
# Daemons the tests rely on: sensor ticks, backfill submission, and the run queue (QueuedRunCoordinator).
NEEDED_DAEMONS = frozenset({"SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR"})
REPOSITORY = "__repository__"  # the implicit repository of a `Definitions` object
STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


def _workspace_entry() -> dict[str, str]:
    """The python_module entry of the repository's workspace.yaml (the code location under test)."""
    import yaml

    doc = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())
    entries = [e["python_module"] for e in doc["load_from"] if "python_module" in e]
    if len(entries) != 1:
        raise ValueError(f"workspace.yaml: expected one python_module location, found {len(entries)}")
    return entries[0]


_ENTRY = _workspace_entry()
LOCATION: str = _ENTRY.get("location_name", _ENTRY["module_name"])
WORKSPACE_MODULE: str = _ENTRY["module_name"]
WORKSPACE_ATTRIBUTE: str = _ENTRY.get("attribute", "defs")


class LiveDagsterError(RuntimeError):
    """The deployment failed to start or a GraphQL call failed; the message carries the process logs."""


def _orphan_guard() -> list[str]:
    """`setpriv --pdeathsig TERM` (util-linux) when available: if the test process is killed outright
    (SIGKILL, CI job cancelled) and stop() never runs, the servers still receive SIGTERM."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 0.5) -> Any:
    """Call `probe` until it returns something truthy; raise TimeoutError naming `what` and the last error.

    Only connection-level errors (server not listening yet) are retried: a dead process or a GraphQL
    error fails at once instead of after the timeout."""
    return services.wait_for(what, probe, timeout_s, interval_s, retry_on=(httpx.HTTPError,))


@dataclass
class LiveDagster:
    """A code server, a webserver and (once started) a daemon sharing a temporary DAGSTER_HOME."""

    root: Path
    env_overrides: dict[str, str] = field(default_factory=dict)
    port: int = 0
    code_port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def store_dir(self) -> Path:
        return self.root / "objects"

    @property
    def warehouse_path(self) -> Path:
        return self.root / "warehouse.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Process environment: temp instance, temp store/warehouse, no inherited factory settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "DAGSTER_"))}
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "FACTORY_STORE_URL": str(self.store_dir),
                "FACTORY_WAREHOUSE_URL": f"sqlite:///{self.warehouse_path}",
                "FACTORY_LINES": "L1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env_overrides)
        return env

    def prepare(self) -> None:
        """DAGSTER_HOME with the repository's dagster.yaml; empty store directory."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        shutil.copyfile(REPO_ROOT / "dagster.yaml", self.home / "dagster.yaml")

    def _log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        # Own session: stop() signals the whole group (code servers and run workers are children).
        self.procs[name] = spawn(_orphan_guard() + argv, self._log_path(name), env=self.env(), cwd=REPO_ROOT)

    def logs(self, name: str, tail: int = 4000) -> str:
        path = self._log_path(name)
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise LiveDagsterError(f"{name} exited with {proc.returncode}:\n{self.logs(name)}")

    def _workspace(self) -> Path:
        """A workspace pointing at the shared code server (written once its port is known)."""
        path = self.root / "workspace.yaml"
        path.write_text(
            "load_from:\n"
            "  - grpc_server:\n"
            "      host: 127.0.0.1\n"
            f"      port: {self.code_port}\n"
            f"      location_name: {LOCATION}\n"
        )
        return path

    def start_code_server(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """`dagster api grpc` serving the repository's code location (same module/attribute as
        workspace.yaml); the port is bound only after the definitions loaded, so connectable means ready."""
        self.code_port = free_port()
        loopback = ["-h", "127.0.0.1", "-p", str(self.code_port)]
        target = ["-m", WORKSPACE_MODULE, "-a", WORKSPACE_ATTRIBUTE, "-d", str(REPO_ROOT)]
        argv = [str(BIN_DIR / "dagster"), "api", "grpc", *loopback, *target, "--location-name", LOCATION]
        self._spawn("code_server", argv)

        def listening() -> bool:
            self._check_alive("code_server")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                return s.connect_ex(("127.0.0.1", self.code_port)) == 0

        try:
            wait_for("the code server to load the definitions", listening, timeout_s)
        except TimeoutError as exc:
            raise LiveDagsterError(f"{exc}\n{self.logs('code_server')}") from exc

    def start_webserver(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start dagster-webserver and wait until it serves the code location without error."""
        self.port = free_port()
        loopback = ["-h", "127.0.0.1", "-p", str(self.port)]
        self._spawn(
            "webserver", [str(BIN_DIR / "dagster-webserver"), *loopback, "-w", str(self._workspace())]
        )

        def loaded() -> bool:
            self._check_alive("webserver")
            return self.location_loaded()

        try:
            wait_for("the webserver to load the code location", loaded, timeout_s)
        except TimeoutError as exc:
            raise LiveDagsterError(f"{exc}\n{self.logs('webserver')}") from exc

    def start_daemon(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start dagster-daemon and wait for heartbeats of the daemons the tests rely on."""
        self._spawn("daemon", [str(BIN_DIR / "dagster-daemon"), "run", "-w", str(self._workspace())])

        def healthy() -> bool:
            self._check_alive("daemon")
            statuses = self.graphql(DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
            ok = {s["daemonType"] for s in statuses if s["healthy"]}
            return ok >= NEEDED_DAEMONS

        try:
            wait_for(f"heartbeats of {sorted(NEEDED_DAEMONS)}", healthy, timeout_s)
        except TimeoutError as exc:
            raise LiveDagsterError(f"{exc}\n{self.logs('daemon')}") from exc

    def stop(self) -> None:
        """SIGTERM every process group, wait, then SIGKILL every group: children (code servers, run
        workers) may outlive their parent, so even a group whose leader exited is swept."""
        stop_groups(self.procs.values(), STOP_GRACE_S, sweep=True)
        self.procs.clear()

    # --- GraphQL ---------------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout_s: float = 60.0) -> Any:
        """POST a query to /graphql; return `data`, raising with the server's errors if any."""
        resp = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout_s
        )
        if resp.status_code != 200:
            raise LiveDagsterError(f"GraphQL HTTP {resp.status_code}: {resp.text[:2000]}")
        doc = resp.json()
        if doc.get("errors"):
            raise LiveDagsterError(f"GraphQL errors: {doc['errors']}")
        return doc["data"]

    def location_loaded(self) -> bool:
        """True once the code location is loaded; a load error is raised, not waited on."""
        entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            if entry["name"] != LOCATION:
                continue
            loc = entry["locationOrLoadError"]
            if loc and loc["__typename"] == "PythonError":
                raise LiveDagsterError(f"code location {LOCATION} failed to load: {loc['message']}")
            return entry["loadStatus"] == "LOADED" and bool(loc)
        return False

    def sensor(self, name: str) -> dict[str, Any]:
        data = self.graphql(SENSOR_QUERY, {"selector": sensor_selector(name)})["sensorOrError"]
        if data["__typename"] != "Sensor":
            raise LiveDagsterError(f"sensor {name}: {data}")
        return data

    def set_sensor_running(self, name: str, running: bool) -> None:
        """Start or stop a sensor through the same mutations as the UI's toggle."""
        state = self.sensor(name)["sensorState"]
        if (state["status"] == "RUNNING") == running:
            return
        if running:
            out = self.graphql(START_SENSOR_MUTATION, {"selector": sensor_selector(name)})["startSensor"]
            if out["__typename"] != "Sensor":
                raise LiveDagsterError(f"startSensor {name}: {out}")
        else:
            out = self.graphql(STOP_SENSOR_MUTATION, {"id": state["id"]})["stopSensor"]
            if out["__typename"] != "StopSensorMutationResult":
                raise LiveDagsterError(f"stopSensor {name}: {out}")

    def set_sensors(self, running: set[str]) -> None:
        """Exactly the sensors in `running` run; every other sensor and every schedule of the location is
        stopped (automation sensors and schedules default to RUNNING and would launch runs of their own)."""
        sensors = self.graphql(SENSORS_QUERY, {"selector": repository_selector()})["sensorsOrError"]
        if sensors["__typename"] != "Sensors":
            raise LiveDagsterError(f"sensors of {LOCATION}: {sensors}")
        names = {s["name"] for s in sensors["results"]}
        missing = running - names
        if missing:
            raise LiveDagsterError(f"sensors {sorted(missing)} not defined; the location has {sorted(names)}")
        for name in sorted(names):
            self.set_sensor_running(name, name in running)
        schedules = self.graphql(SCHEDULES_QUERY, {"selector": repository_selector()})["schedulesOrError"]
        if schedules["__typename"] != "Schedules":
            raise LiveDagsterError(f"schedules of {LOCATION}: {schedules}")
        for sched in schedules["results"]:
            if sched["scheduleState"]["status"] == "RUNNING":
                out = self.graphql(STOP_SCHEDULE_MUTATION, {"id": sched["scheduleState"]["id"]})
                if out["stopRunningSchedule"]["__typename"] != "ScheduleStateResult":
                    raise LiveDagsterError(f"stopRunningSchedule {sched['name']}: {out}")

    def materialized_partitions(self, asset_key: list[str]) -> set[str]:
        """Partition keys of `asset_key` with a materialization ('date|line' for the line-day partitions)."""
        data = self.graphql(PARTITION_STATUS_QUERY, {"key": {"path": asset_key}})["assetNodeOrError"]
        if data["__typename"] != "AssetNode":
            raise LiveDagsterError(f"asset {asset_key}: {data}")
        status = data["assetPartitionStatuses"]
        if status["__typename"] == "MultiPartitionStatuses":
            out: set[str] = set()
            for rng in status["ranges"]:
                dates = _date_range(rng["primaryDimStartKey"], rng["primaryDimEndKey"])
                lines = rng["secondaryDim"].get("materializedPartitions")
                if lines is None:
                    raise LiveDagsterError(
                        f"expected a static secondary dimension, got {rng['secondaryDim']}"
                    )
                out.update(f"{d}|{line}" for d in dates for line in lines)
            return out
        if status["__typename"] == "DefaultPartitionStatuses":
            return set(status["materializedPartitions"])
        raise LiveDagsterError(f"unexpected partition status type {status['__typename']}")

    def wait_materialized(self, asset_key: list[str], expected: set[str], timeout_s: float) -> set[str]:
        """Wait until every partition in `expected` of `asset_key` is materialized; return all that are."""

        def recorded() -> set[str] | None:
            if "daemon" in self.procs:
                self._check_alive("daemon")
            found = self.materialized_partitions(asset_key)
            return found if expected <= found else None

        try:
            return wait_for(f"partitions {sorted(expected)} of {'/'.join(asset_key)}", recorded, timeout_s)
        except TimeoutError as exc:
            raise LiveDagsterError(f"{exc}\n{self.logs('daemon')}") from exc

    def check_partition_statuses(self, asset_key: list[str], check: str) -> dict[str, set[str]]:
        """A partitioned asset check's status per partition, as the check's Partitions tab in the UI reads
        it (GraphQL `partitionStatuses`): {status: {'date|line', ...}} for the line-day partitions."""
        node = self.graphql(CHECK_PARTITIONS_QUERY, {"key": {"path": asset_key}})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise LiveDagsterError(f"asset {asset_key}: {node}")
        checks = {c["name"]: c for c in node["assetChecksOrError"]["checks"]}
        status = checks[check]["partitionStatuses"]
        if status is None:
            return {}
        if status["__typename"] != "AssetCheckMultiPartitionStatuses":
            raise LiveDagsterError(f"expected line-day check statuses, got {status['__typename']}")
        out: dict[str, set[str]] = {}
        for rng in status["ranges"]:
            secondary = rng["secondaryDim"]
            for field_name, name in CHECK_STATUS_FIELDS.items():
                for line in secondary.get(field_name) or []:
                    for day in _date_range(rng["primaryDimStartKey"], rng["primaryDimEndKey"]):
                        out.setdefault(name, set()).add(f"{day}|{line}")
        return out

    def launch_backfill(self, asset_keys: list[list[str]], partition_names: list[str], title: str) -> str:
        """`launchPartitionBackfill` as the UI's 'Launch backfill' button sends it; returns the backfill id."""
        params = {
            "partitionNames": partition_names,
            "assetSelection": [{"path": k} for k in asset_keys],
            "fromFailure": False,
            "title": title,
            "tags": [],
        }
        out = self.graphql(LAUNCH_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
        if out["__typename"] != "LaunchBackfillSuccess":
            raise LiveDagsterError(f"launchPartitionBackfill failed: {out}")
        return str(out["backfillId"])

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        data = self.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if data["__typename"] != "PartitionBackfill":
            raise LiveDagsterError(f"backfill {backfill_id}: {data}")
        return data

    def wait_backfill_done(self, backfill_id: str, timeout_s: float) -> dict[str, Any]:
        """Poll the backfill until it leaves REQUESTED/CANCELING/FAILING; return its final state."""

        def done() -> dict[str, Any] | None:
            self._check_alive("daemon")
            state = self.backfill(backfill_id)
            return None if state["status"] in ("REQUESTED", "CANCELING", "FAILING") else state

        try:
            return wait_for(f"backfill {backfill_id}", done, timeout_s, interval_s=1.0)
        except TimeoutError as exc:
            raise LiveDagsterError(
                f"{exc}; last state {self.backfill(backfill_id)}\n{self.logs('daemon')}"
            ) from exc


def _date_range(start: str, end: str) -> list[str]:
    import datetime as dt

    d0, d1 = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    return [(d0 + dt.timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def repository_selector() -> dict[str, str]:
    return {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}


def sensor_selector(name: str) -> dict[str, str]:
    return {**repository_selector(), "sensorName": name}


@contextlib.contextmanager
def live_dagster(root: Path, env_overrides: dict[str, str] | None = None) -> Iterator[LiveDagster]:
    """A prepared deployment (nothing started yet) that is always torn down on exit."""
    live = LiveDagster(root=root, env_overrides=dict(env_overrides or {}))
    live.prepare()
    try:
        yield live
    finally:
        live.stop()


def write_history(
    store: Path, start_date: str, days: int, line: str = "L1", fast_rate_hz: float = 1.0, seed: int = 42
) -> None:
    """Raw history through the `factory-sim history` console script, as an operator would write it.

    1 Hz fast channels and hourly objects keep a line-day at 24 objects of ~0.5 MB."""
    argv = [str(BIN_DIR / "factory-sim"), "history", "--days", str(days), "--start-date", start_date,
            "--lines", line, "--store", str(store), "--fast-rate-hz", str(fast_rate_hz), "--seed", str(seed),
            "--object-seconds", "3600", "--workers", "2", "--no-progress"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise LiveDagsterError(f"factory-sim history failed ({done.returncode}): {done.stderr[-4000:]}")


WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
}
"""

DAEMON_HEALTH_QUERY = """
query DaemonHealth {
  instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } }
}
"""

SENSORS_QUERY = """
query Sensors($selector: RepositorySelector!) {
  sensorsOrError(repositorySelector: $selector) {
    __typename
    ... on Sensors { results { name } }
    ... on PythonError { message }
  }
}
"""

SCHEDULES_QUERY = """
query Schedules($selector: RepositorySelector!) {
  schedulesOrError(repositorySelector: $selector) {
    __typename
    ... on Schedules { results { name scheduleState { id status } } }
  }
}
"""

STOP_SCHEDULE_MUTATION = """
mutation StopSchedule($id: String!) {
  stopRunningSchedule(id: $id) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      sensorState {
        id
        status
        ticks(limit: 5) { status error { message } }
      }
    }
  }
}
"""

START_SENSOR_MUTATION = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
  }
}
"""

STOP_SENSOR_MUTATION = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}
"""

PARTITION_STATUS_QUERY = """
query PartitionStatus($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses { materializedPartitions }
        ... on MultiPartitionStatuses {
          ranges {
            primaryDimStartKey
            primaryDimEndKey
            secondaryDim { __typename ... on DefaultPartitionStatuses { materializedPartitions } }
          }
        }
      }
    }
  }
}
"""

CHECK_STATUS_FIELDS = {
    "succeededPartitions": "SUCCEEDED",
    "failedPartitions": "FAILED",
    "inProgressPartitions": "IN_PROGRESS",
    "skippedPartitions": "SKIPPED",
    "executionFailedPartitions": "EXECUTION_FAILED",
}

CHECK_PARTITIONS_QUERY = """
query CheckPartitions($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              __typename
              ... on AssetCheckMultiPartitionStatuses {
                ranges {
                  primaryDimStartKey
                  primaryDimEndKey
                  secondaryDim {
                    __typename
                    ... on AssetCheckDefaultPartitionStatuses {
                      succeededPartitions failedPartitions inProgressPartitions skippedPartitions
                      executionFailedPartitions
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PartitionKeysNotFoundError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message stack }
  }
}
"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      numPartitions
      error { message }
      runs { id status tags { key value } }
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            assetKey { path }
            numPartitionsTargeted
            numPartitionsInProgress
            numPartitionsMaterialized
            numPartitionsFailed
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""
