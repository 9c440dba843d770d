"""Deployment files are valid, consistent with the code, and least-privilege.

Why: a typo in a compose file, an env var the code never reads, an image nobody builds or an IAM
policy with `s3:*` only shows up at 3 a.m. on the factory floor. Every check here runs against the
real parsers/validators we can run locally: PyYAML/json, `docker compose config` (client-side, no
engine needed), Dagster's own instance/workspace schemas, botocore's ECS request model and moto's
IAM policy validator over real HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
FACTORY = DEPLOY / "factory-server"
DOCKER = DEPLOY / "docker"
DAGSTER = DEPLOY / "dagster"
IAM = DEPLOY / "iam"
CODE_PACKAGES = ("edge_collector", "inference_server", "factory_assets", "factory_sim")
# Read by the AWS SDK / Dagster / numba itself, not by our settings modules.
EXTERNAL_ENV = {
    "NUMBA_CACHE_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "DAGSTER_HOME",
    "PGSSLMODE",  # libpq reads it (TLS of the Dagster storage connection)
}
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "WAREHOUSE_URL")
# IAM actions that support no resource-level permissions (AWS service authorization reference).
NO_RESOURCE_LEVEL = {
    "ecs:DescribeTaskDefinition",
    "ec2:DescribeNetworkInterfaces",
    "ecr:GetAuthorizationToken",
}


def _files(*suffixes: str) -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def _rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------ parsing


def test_deploy_tree_has_the_expected_files() -> None:
    for rel in (
        "factory-server/compose.yaml",
        "factory-server/compose.awslogs.yaml",
        "factory-server/.env.example",
        "factory-server/collector.env.example",
        "factory-server/inference.env.example",
        "factory-server/collector.toml",
        "docker/Dockerfile.collector",
        "docker/Dockerfile.inference",
        "docker/Dockerfile.dagster",
        "docker/requirements-collector.lock",
        "dagster/dagster.yaml",
        "dagster/workspace.yaml",
        "dagster/helm/values.yaml",
        "iam/edge-collector.json",
        "iam/inference-server.json",
        "iam/dagster.json",
        "prometheus/alerts.yml",
    ):
        assert (DEPLOY / rel).is_file(), rel


@pytest.mark.parametrize("path", _files(".yaml", ".yml"), ids=_rel)
def test_every_yaml_file_parses(path: Path) -> None:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs and all(isinstance(d, dict) for d in docs), f"{_rel(path)}: expected mapping documents"


@pytest.mark.parametrize("path", _files(".json"), ids=_rel)
def test_every_json_file_parses(path: Path) -> None:
    assert isinstance(_json(path), dict)


# ------------------------------------------------------------------------------------------ compose


def _compose() -> dict[str, Any]:
    return _yaml(FACTORY / "compose.yaml")


def test_compose_services_are_hardened_and_restart() -> None:
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"edge-collector", "inference-server"}
    declared_volumes = set(compose["volumes"])
    assert declared_volumes == {"collector-spool", "model-cache", "decision-spool"}
    for name, svc in services.items():
        assert svc["restart"] == "unless-stopped", name
        assert svc["read_only"] is True and "ALL" in svc["cap_drop"], name
        assert svc["logging"]["driver"] == "json-file" and svc["logging"]["options"]["max-size"], name
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"] and "urllib.request" in test[-1], (
            f"{name}: no curl in slim images"
        )
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in svc["healthcheck"], (name, key)
        named = {v.split(":", 1)[0] for v in svc["volumes"] if not v.startswith(("./", "/"))}
        assert named and named <= declared_volumes, name
        assert (ROOT / svc["build"]["context"].replace("../..", ".")).resolve() == ROOT
        assert (ROOT / svc["build"]["dockerfile"]).is_file()
    assert "/health/live" in services["inference-server"]["healthcheck"]["test"][-1]
    assert "/metrics" in services["edge-collector"]["healthcheck"]["test"][-1]
    assert "collector-spool:/var/lib/edge-collector" in services["edge-collector"]["volumes"]
    assert "model-cache:/var/cache/inference-server" in services["inference-server"]["volumes"]
    assert "decision-spool:/var/lib/inference-server" in services["inference-server"]["volumes"]
    inference_env = services["inference-server"]["environment"]
    assert inference_env["INFERENCE_CACHE_DIR"].startswith("/var/cache/inference-server/")
    assert inference_env["INFERENCE_SPOOL_DIR"].startswith("/var/lib/inference-server/")


def test_compose_awslogs_overlay_switches_every_service() -> None:
    overlay = _yaml(FACTORY / "compose.awslogs.yaml")
    assert set(overlay["services"]) == set(_compose()["services"])
    for svc in overlay["services"].values():
        assert svc["logging"]["driver"] == "awslogs"
        assert {"awslogs-group", "awslogs-region"} <= set(svc["logging"]["options"])


def _env_file_keys(path: Path, include_commented: bool = True) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if include_commented and re.match(r"^#\s*[A-Z][A-Z0-9_]+=", line):
            line = line.lstrip("#").strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_secrets_are_not_committed() -> None:
    compose = _compose()
    for svc in compose["services"].values():
        for key in svc.get("environment", {}):
            assert not any(w in key for w in SECRET_WORDS), f"{key} belongs in the git-ignored env_file"
        (env_file,) = svc["env_file"]
        default = re.fullmatch(r"\$\{[A-Z_]+:-(.+)\}", env_file)
        assert default, "env_file is selectable (tests use the .example)"
        assert (FACTORY / (default.group(1) + ".example")).is_file()
    for example in FACTORY.glob("*.example"):
        for key, value in _env_file_keys(example, include_commented=False).items():
            if any(w in key for w in SECRET_WORDS) or key.startswith("AWS_SECRET"):
                assert value == "", f"{example.name}: {key} must be empty in the committed template"
    for real in (".env", "collector.env", "inference.env"):
        rel = f"deploy/factory-server/{real}"
        proc = subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, check=False)
        assert proc.returncode == 0, f"{rel} must be git-ignored"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("overlay", [False, True], ids=["json-file", "awslogs"])
def test_docker_compose_config_accepts_the_files(overlay: bool) -> None:
    """`docker compose config` validates against the compose schema client-side (no engine needed)."""
    cli = _compose_cli()
    if cli is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker compose / docker-compose not installed (Debian package docker-compose)")
        pytest.skip("docker compose / docker-compose not installed")
    files = ["-f", "compose.yaml"] + (["-f", "compose.awslogs.yaml"] if overlay else [])
    env = {
        **os.environ,
        "COLLECTOR_ENV_FILE": "collector.env.example",
        "INFERENCE_ENV_FILE": "inference.env.example",
        "COMPOSE_PROJECT_NAME": "factory-edge-test",
    }
    env.pop("COMPOSE_FILE", None)
    proc = subprocess.run(
        [*cli, *files, "config"],
        cwd=FACTORY,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    drivers = {svc["logging"]["driver"] for svc in rendered["services"].values()}
    assert drivers == ({"awslogs"} if overlay else {"json-file"})
    collector_env = rendered["services"]["edge-collector"]["environment"]
    assert collector_env["EDGE_SPOOL_DIR"] == "/var/lib/edge-collector/spool"
    assert "EDGE_SENSOR_HOST" in collector_env  # from the env_file


def test_collector_toml_is_accepted_by_the_collector() -> None:
    from edge_collector.config import load_config

    cfg = load_config(FACTORY / "collector.toml", env={})
    assert cfg.metrics_port == 9108 and cfg.s3_checksum == "when_supported"
    compose_port = _compose()["services"]["edge-collector"]["environment"]["EDGE_METRICS_PORT"]
    assert int(compose_port) == cfg.metrics_port


# ------------------------------------------------------------------------- env vars the code reads


def _literal_env_names() -> set[str]:
    names: set[str] = set()
    for pkg in CODE_PACKAGES:
        for py in (ROOT / pkg).rglob("*.py"):
            names |= set(re.findall(r"[\"']([A-Z][A-Z0-9]*_[A-Z0-9_]+)[\"']", py.read_text()))
    return names


def _derived_env_names() -> set[str]:
    from edge_collector.config import CollectorConfig, env_name
    from factory_assets.alerting.resource import ENV_PREFIX as FACTORY_ALERT_PREFIX
    from factory_core.alerting import ENV_PREFIX as EDGE_ALERT_PREFIX
    from factory_core.alerting import AlertSettings
    from inference_server.core.settings import ENV_PREFIX as INFERENCE_PREFIX
    from inference_server.core.settings import Settings as InferenceSettings

    names = {env_name(f.name) for f in dataclasses.fields(CollectorConfig)}
    names |= {INFERENCE_PREFIX + name.upper() for name in InferenceSettings.model_fields}
    for prefix in (EDGE_ALERT_PREFIX, FACTORY_ALERT_PREFIX):
        names |= {prefix + f.name.upper() for f in dataclasses.fields(AlertSettings)}
    return names


def _dagster_yaml_env_names() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"} and isinstance(node["env"], str):
                found.add(node["env"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(_yaml(DAGSTER / "dagster.yaml"))
    return found


def _passed_env_names() -> dict[str, set[str]]:
    """Every env var a deployment file hands to a process, by file."""
    out: dict[str, set[str]] = {}
    compose = _compose()
    for svc in compose["services"].values():
        out.setdefault("compose.yaml", set()).update(svc.get("environment", {}))
    for example in ("collector.env.example", "inference.env.example"):
        out[example] = set(_env_file_keys(FACTORY / example))
    for td in sorted((DAGSTER / "ecs").glob("*.task-definition.json")):
        for c in _json(td)["containerDefinitions"]:
            out.setdefault(td.name, set()).update(e["name"] for e in c.get("environment", []))
            out[td.name].update(s["name"] for s in c.get("secrets", []))
    helm = _yaml(DAGSTER / "helm" / "values.yaml")
    helm_envs = [helm["dagsterWebserver"].get("env", [])]
    helm_envs += [d.get("env", []) for d in helm["dagster-user-deployments"]["deployments"]]
    out["helm/values.yaml"] = {e["name"] for env in helm_envs for e in env}
    for dockerfile in DOCKER.glob("Dockerfile.*"):
        ins = _instructions(dockerfile)
        runtime = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]  # build-stage ENV is tooling
        for op, rest in runtime:
            if op == "ENV":
                out.setdefault(dockerfile.name, set()).update(re.findall(r"([A-Z][A-Z0-9_]+)=", rest))
    return out


def test_every_env_var_passed_is_read_by_the_code() -> None:
    known = _literal_env_names() | _derived_env_names() | _dagster_yaml_env_names() | EXTERNAL_ENV
    known |= {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}  # interpreter/OS
    unknown = {f: sorted(names - known) for f, names in _passed_env_names().items() if names - known}
    assert not unknown, f"env vars no code reads (typo, or a setting that does not exist yet): {unknown}"


# ---------------------------------------------------------------------------------------- dockerfiles


def _dockerfiles() -> list[Path]:
    return sorted(DOCKER.glob("Dockerfile.*"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _image_titles() -> dict[str, Path]:
    titles = {}
    for df in _dockerfiles():
        m = re.search(r'org\.opencontainers\.image\.title="([^"]+)"', df.read_text())
        assert m, f"{df.name}: LABEL org.opencontainers.image.title missing"
        titles[m.group(1)] = df
    return titles


@pytest.mark.parametrize("dockerfile", _dockerfiles(), ids=lambda p: p.name)
def test_dockerfile_is_multistage_slim_nonroot_with_healthcheck(dockerfile: Path) -> None:
    ins = _instructions(dockerfile)
    froms = [rest for op, rest in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile.read_text())
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM") :]
    users = [rest for op, rest in final if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "runtime stage must drop root"
    assert any(op == "HEALTHCHECK" for op, _ in final)
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "uv pip sync" in runs and "--require-hashes" in runs
    for op, rest in ins:
        if op != "COPY" or "--from=" in rest:
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        for src in args[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY source {src} does not exist"


def _lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\;]+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1).split("[")[0]).lower()] = m.group(2)
    return pins


@pytest.mark.parametrize("lock", sorted(DOCKER.glob("requirements-*.lock")), ids=lambda p: p.name)
def test_image_locks_match_the_tested_lock(lock: Path) -> None:
    tested = _lock_pins(ROOT / "requirements.lock")
    pins = _lock_pins(lock)
    assert pins
    drift = {k: (v, tested.get(k)) for k, v in pins.items() if tested.get(k) != v}
    assert not drift, (
        f"{lock.name} differs from requirements.lock (run deploy/docker/compile-locks.sh): {drift}"
    )
    assert "--hash=sha256:" in lock.read_text()


def test_collector_image_has_no_heavy_dependencies() -> None:
    pins = _lock_pins(DOCKER / "requirements-collector.lock")
    assert not {"dagster", "xgboost", "pandas", "polars", "fastapi"} & set(pins)
    assert {"boto3", "numpy", "zstandard", "prometheus-client"} <= set(pins)
    assert "requirements-collector.lock" in (DOCKER / "Dockerfile.collector").read_text()


def _image_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1].split(":", 1)[0]


def test_every_referenced_image_is_built_here() -> None:
    titles = _image_titles()
    refs = [svc["image"] for svc in _compose()["services"].values()]
    for td in (DAGSTER / "ecs").glob("*.task-definition.json"):
        refs += [c["image"] for c in _json(td)["containerDefinitions"]]
    helm = _yaml(DAGSTER / "helm" / "values.yaml")
    refs += [d["image"]["repository"] for d in helm["dagster-user-deployments"]["deployments"]]
    assert refs
    for ref in refs:
        assert _image_name(ref) in titles, f"{ref}: no Dockerfile in deploy/docker builds it"
    for svc in _compose()["services"].values():
        assert titles[_image_name(svc["image"])] == ROOT / svc["build"]["dockerfile"]


def test_code_location_module_is_the_same_everywhere() -> None:
    module = "factory_assets.definitions"
    assert module in (DOCKER / "Dockerfile.dagster").read_text()
    code = _json(DAGSTER / "ecs" / "code-location.task-definition.json")["containerDefinitions"][0]
    assert code["command"][code["command"].index("-m") + 1] == module
    helm = _yaml(DAGSTER / "helm" / "values.yaml")
    (dep,) = helm["dagster-user-deployments"]["deployments"]
    assert dep["dagsterApiGrpcArgs"] == ["--module-name", module]


# ------------------------------------------------------------------------------------ dagster (cloud)


@pytest.fixture
def dagster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _dagster_yaml_env_names():
        monkeypatch.setenv(name, "5432" if name.endswith("_PORT") else f"test-{name.lower()}")


def test_cloud_dagster_yaml_matches_dagster_schemas(dagster_env: None, tmp_path: Path) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import DagsterPostgresStorage

    shutil.copy(DAGSTER / "dagster.yaml", tmp_path / "dagster.yaml")
    cfg, _ = dagster_instance_config(str(tmp_path))
    assert cfg["run_launcher"]["module"] == "dagster_aws.ecs"
    assert cfg["run_launcher"]["class"] == "EcsRunLauncher"
    for config_type, value in (
        (EcsRunLauncher.config_type(), cfg["run_launcher"]["config"]),
        (S3ComputeLogManager.config_type(), cfg["compute_logs"]["config"]),
        (DagsterPostgresStorage.config_type(), cfg["storage"]["postgres"]),
    ):
        result = process_config(config_type, value)
        assert result.success, result.errors
    launcher = process_config(EcsRunLauncher.config_type(), cfg["run_launcher"]["config"]).value
    assert launcher["container_name"] == "run"
    run_td = _json(DAGSTER / "ecs" / "run.task-definition.json")
    assert launcher["task_definition"] == {"env": "DAGSTER_ECS_RUN_TASK_DEFINITION"} or launcher[
        "task_definition"
    ].startswith("test-")
    assert [c["name"] for c in run_td["containerDefinitions"]] == ["run"]


def test_cloud_queue_and_monitoring_settings_load_in_a_real_instance(tmp_path: Path) -> None:
    """Everything but the AWS/Postgres parts, loaded by DagsterInstance itself."""
    from dagster import DagsterInstance
    from dagster._core.run_coordinator import QueuedRunCoordinator

    cfg = _yaml(DAGSTER / "dagster.yaml")
    for aws_only in ("storage", "run_launcher", "compute_logs"):
        cfg.pop(aws_only)
    cfg["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 8
        limits = {
            (lim["key"], json.dumps(lim.get("value"))): lim["limit"] for lim in queue.tag_concurrency_limits
        }
        assert limits[("factory/job-kind", '"train"')] == 1
        # ... and the training job's runs carry that tag, so the limit applies to them
        from factory_assets.model.schedule import quality_model_job

        assert quality_model_job.tags.get("factory/job-kind") == "train"
        assert instance.run_monitoring_enabled
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1


def test_workspace_yaml_is_a_valid_grpc_workspace() -> None:
    from dagster._core.workspace.config_schema import ensure_workspace_config

    path = DAGSTER / "workspace.yaml"
    cfg = ensure_workspace_config(_yaml(path), str(path))
    (entry,) = cfg["load_from"]
    server = entry["grpc_server"]
    assert server["port"] == 4000 and server["location_name"] == "factory_assets"
    code = _json(DAGSTER / "ecs" / "code-location.task-definition.json")["containerDefinitions"][0]
    assert code["portMappings"][0]["containerPort"] == server["port"]
    services = _json(DAGSTER / "ecs" / "services.json")
    aliases = [
        a["dnsName"]
        for s in services["services"]
        for cs in s.get("serviceConnectConfiguration", {}).get("services", [])
        for a in cs["clientAliases"]
    ]
    assert server["host"] in aliases


def test_ecs_files_are_valid_ecs_api_requests() -> None:
    from botocore.session import get_session
    from botocore.validate import validate_parameters

    model = get_session().get_service_model("ecs")
    register = model.operation_model("RegisterTaskDefinition").input_shape
    families = set()
    for td in sorted((DAGSTER / "ecs").glob("*.task-definition.json")):
        doc = _json(td)
        validate_parameters(doc, register)
        families.add(doc["family"])
        for c in doc["containerDefinitions"]:
            assert c["logConfiguration"]["logDriver"] == "awslogs", td.name
            assert c.get("user") not in (None, "root", "0"), td.name
            if c["name"] != "run":  # run tasks are watched by the launcher + run monitoring
                assert c["healthCheck"]["command"][0] == "CMD", td.name
            for env in c.get("environment", []):
                assert not any(w in env["name"] for w in SECRET_WORDS), f"{td.name}: {env['name']} -> secrets"
            for secret in c.get("secrets", []):
                assert secret["valueFrom"].startswith("arn:aws:secretsmanager:"), td.name
    create = model.operation_model("CreateService").input_shape
    services = _json(DAGSTER / "ecs" / "services.json")
    for svc in services["services"]:
        validate_parameters({**svc, "cluster": services["cluster"]}, create)
        assert svc["taskDefinition"] in families
    assert "factory-dagster-run" in families


# ------------------------------------------------------------------------------------------- helm

# Top-level keys of the dagster chart's values schema (helm/dagster/schema/.../values.py).
HELM_TOP_LEVEL = {
    "dagsterWebserver", "dagster-user-deployments", "postgresql", "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret", "rabbitmq", "redis", "flower", "ingress", "imagePullSecrets",
    "computeLogManager", "scheduler", "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate",
    "telemetry", "serviceAccount", "global", "retention", "concurrency", "additionalInstanceConfig",
}  # fmt: skip


def test_helm_values_use_chart_keys_and_k8s_run_launcher() -> None:
    values = _yaml(DAGSTER / "helm" / "values.yaml")
    assert set(values) <= HELM_TOP_LEVEL, set(values) - HELM_TOP_LEVEL
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(values["runLauncher"]["config"]) == {"k8sRunLauncher"}
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and "postgresqlPassword" not in pg
    assert values["generatePostgresqlPasswordSecret"] is False
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    assert set(coordinator["config"]) == {"queuedRunCoordinator"}
    assert coordinator["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] == 8
    users = values["dagster-user-deployments"]
    assert users["enabled"] and users["enableSubchart"]
    (dep,) = users["deployments"]
    assert {"name", "image", "port", "dagsterApiGrpcArgs"} <= set(dep)
    for env in dep["env"]:
        assert not any(w in env["name"] for w in SECRET_WORDS), "secrets come from envSecrets"


# -------------------------------------------------------------------------------------------- IAM


def _statements(name: str) -> list[dict[str, Any]]:
    doc = _json(IAM / name)
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


def _as_list(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else list(v)


def _grants(name: str) -> dict[str, set[str]]:
    """action -> resources granted (Allow only; the policies have no Deny)."""
    out: dict[str, set[str]] = {}
    for st in _statements(name):
        assert st["Effect"] == "Allow"
        for action in _as_list(st["Action"]):
            out.setdefault(action, set()).update(_as_list(st["Resource"]))
    return out


@pytest.mark.parametrize("policy", sorted(p.name for p in IAM.glob("*.json")))
def test_iam_policies_have_no_wildcard_actions_or_open_resources(policy: str) -> None:
    for st in _statements(policy):
        assert "NotAction" not in st and "NotResource" not in st
        for action in _as_list(st["Action"]):
            assert "*" not in action, f"{policy}: wildcard action {action}"
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", action), action
        resources = _as_list(st["Resource"])
        if "*" in resources:
            assert set(_as_list(st["Action"])) <= NO_RESOURCE_LEVEL, (
                f"{policy}: Resource * for {st['Action']}"
            )
        for r in resources:
            if r.startswith("arn:aws:s3:::") and "/" not in r:  # bucket-level: listing must be prefix-scoped
                assert st["Action"] == ["s3:ListBucket"] and "s3:prefix" in json.dumps(st["Condition"]), (
                    policy
                )
        assert not any(
            a in ("s3:DeleteObject", "s3:DeleteBucket", "s3:PutBucketPolicy") for a in _as_list(st["Action"])
        )


def test_collector_policy_only_puts_raw_and_gaps() -> None:
    grants = _grants("edge-collector.json")
    assert grants == {
        "s3:PutObject": {"arn:aws:s3:::${BUCKET}/raw/*", "arn:aws:s3:::${BUCKET}/gaps/*"},
        "sns:Publish": {"arn:aws:sns:${REGION}:${ACCOUNT_ID}:factory-alerts"},
    }


def test_inference_policy_reads_models_and_writes_decisions() -> None:
    grants = _grants("inference-server.json")
    assert grants == {
        "s3:GetObject": {"arn:aws:s3:::${BUCKET}/models/*"},
        "s3:ListBucket": {"arn:aws:s3:::${BUCKET}"},
        "s3:PutObject": {"arn:aws:s3:::${BUCKET}/decisions/*"},
    }
    (listing,) = [st for st in _statements("inference-server.json") if st["Action"] == ["s3:ListBucket"]]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["models/", "models/*"]}}


def test_model_admin_policy_only_moves_the_serving_pointer() -> None:
    from factory_core.layout import POINTER_KEY

    grants = _grants("model-admin.json")
    assert grants["s3:PutObject"] == {f"arn:aws:s3:::${{BUCKET}}/{POINTER_KEY}"}
    assert grants["s3:GetObject"] == {"arn:aws:s3:::${BUCKET}/models/*"}


def test_dagster_policy_scopes() -> None:
    grants = _grants("dagster.json")
    data = "arn:aws:s3:::${BUCKET}/"
    get = {r for r in grants["s3:GetObject"] if r.startswith(data)}
    put = {r for r in grants["s3:PutObject"] if r.startswith(data)}
    assert get == {data + p + "/*" for p in ("raw", "gaps", "decisions", "processed", "quarantine", "models")}
    assert put == {data + p + "/*" for p in ("processed", "quarantine", "models")}
    assert {"ecs:RunTask", "ecs:DescribeTasks", "ecs:StopTask", "iam:PassRole", "sns:Publish"} <= set(grants)
    (run_task,) = grants["ecs:RunTask"]
    assert run_task.endswith(":task-definition/factory-dagster-run:*")
    (passrole,) = [st for st in _statements("dagster.json") if st["Action"] == ["iam:PassRole"]]
    assert passrole["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
    td = _json(DAGSTER / "ecs" / "run.task-definition.json")
    role_arns = {td["taskRoleArn"], td["executionRoleArn"]}
    assert set(passrole["Resource"]) == role_arns


@pytest.fixture(scope="module")
def iam_client(moto_server: str) -> Iterator[Any]:
    yield boto3.client(
        "iam", region_name="us-east-1", endpoint_url=moto_server,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


@pytest.mark.parametrize("policy", sorted(p.name for p in IAM.glob("*.json")))
def test_iam_policies_are_accepted_by_the_iam_api(iam_client: Any, policy: str) -> None:
    """moto's IAM validates policy grammar (Version, Effect, Action/Resource forms, conditions)."""
    document = (IAM / policy).read_text()
    rendered = (
        document.replace("${BUCKET}", "factory-ai-data")
        .replace("${OPS_BUCKET}", "factory-ai-ops")
        .replace("${REGION}", "eu-central-1")
        .replace("${ACCOUNT_ID}", "123456789012")
    )
    assert "${" not in rendered, "unknown placeholder"
    name = f"test-{policy.removesuffix('.json')}-{os.getpid()}"
    resp = iam_client.create_policy(PolicyName=name, PolicyDocument=rendered)
    assert resp["Policy"]["Arn"].endswith(f":policy/{name}")


# ------------------------------------------------------------------------------------- prometheus


def _exported_metric_names() -> set[str]:
    from prometheus_client import CollectorRegistry

    from edge_collector.metrics import CollectorMetrics
    from factory_core.alerting import Notifier
    from inference_server.core.metrics import Metrics as InferenceMetrics

    registry = CollectorRegistry()
    Notifier([], registry=registry)
    names = set()
    for reg in (CollectorMetrics().registry, registry, InferenceMetrics().registry):
        for family in reg.collect():
            names.add(family.name + "_total" if family.type == "counter" else family.name)
    return names


def test_prometheus_rules_reference_real_metrics() -> None:
    rules = [r for g in _yaml(DEPLOY / "prometheus" / "alerts.yml")["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "EdgeUploadBacklogOld",
        "EdgeSpoolBudgetHigh",
        "EdgeDataGaps",
        "EdgeUploadErrors",
        "InferenceServerNotReady",
    }
    exported = _exported_metric_names()
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        for metric in re.findall(r"\b((?:edge|inference)_[a-z_]+)\b", rule["expr"]):
            assert metric in exported, f"{rule['alert']}: {metric} is not exported by our services"
    budget = next(r for r in rules if r["alert"] == "EdgeSpoolBudgetHigh")
    from edge_collector.config import CollectorConfig

    assert f">= {CollectorConfig().spool_warn_ratio}" in budget["expr"]


# ------------------------------------------------------------------------------------------- docs


def test_configuration_doc_covers_every_setting() -> None:
    from edge_collector.config import CollectorConfig, env_name
    from factory_core.alerting import AlertSettings
    from inference_server.core.settings import Settings as InferenceSettings

    doc = (ROOT / "docs" / "configuration.md").read_text()
    expected = {env_name(f.name) for f in dataclasses.fields(CollectorConfig)}
    expected |= {"INFERENCE_" + n.upper() for n in InferenceSettings.model_fields}
    expected |= _dagster_yaml_env_names()
    expected |= {f.name.upper() for f in dataclasses.fields(AlertSettings)}  # documented as suffixes
    missing = sorted(name for name in expected if f"`{name}`" not in doc and name not in doc)
    assert not missing, f"docs/configuration.md does not document: {missing}"
    operations = (ROOT / "docs" / "operations.md").read_text()
    for alert in (
        "EdgeSpoolBudgetHigh",
        "alert_on_run_failure",
        "alert_on_raw_freshness",
        "rollback --version",
    ):
        assert alert in operations
