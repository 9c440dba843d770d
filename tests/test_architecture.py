"""The package graph and the images built from it: who may import whom, and does each image start.

(a) The import rule, as a table, over every module of every production package (imports inside
functions included): factory_core <- quality_model <- edge_collector / factory_assets / inference_server;
the simulator's line stands on factory_core alone; only factory_sim.demo may import the model package and
the services; no production package imports the tests or the simulator.

(b) Each Docker image, built the way its Dockerfile builds it but without a Docker engine: a fresh virtual
environment synced from that image's own lock (hash-checked), the packages its Dockerfile COPYs (and
nothing else) installed the way its Dockerfile installs them, then the module the container starts is
imported and the console script it runs answers --help. This is the check that a speed-up in one service
cannot break another service's image again.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dagster", "xgboost", "polars", "pandas")
PACKAGES = (
    "factory_core",
    "quality_model",
    "edge_collector",
    "factory_assets",
    "inference_server",
    "factory_sim",
)
PROJECT = (*PACKAGES, "tests", "benchmarks")

ALLOWED: dict[str, set[str]] = {
    "factory_core": set(),
    "quality_model": {"factory_core"},
    "edge_collector": {"factory_core"},
    "factory_assets": {"factory_core", "quality_model"},
    "inference_server": {"factory_core", "quality_model"},
    "factory_sim": {"factory_core"},  # the line: physics, signals, sensor server, craftsmen, control loop
    "factory_sim.demo": {
        "factory_core",
        "quality_model",
        "edge_collector",
        "factory_assets",
        "inference_server",
    },
}
"""What each package may import besides itself. factory_sim.demo: the demo, `make up`, evaluation."""

CORE_THIRD_PARTY = {
    "numpy",
    "zstandard",
    "boto3",
    "botocore",
    "prometheus_client",
    "pydantic",
    "httpx",
    "tqdm",
}
"""factory_core imports nothing heavier than the core dependencies (pyproject's [project.dependencies])."""


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _owner(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "factory_sim" and len(rel) > 2 and rel[1] == "demo":
        return "factory_sim.demo"
    return rel[0]


def _imports(path: Path) -> set[str]:
    """Dotted names of every absolute import in the module, wherever it stands."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _project_target(name: str) -> str | None:
    top = name.split(".")[0]
    if top not in PROJECT:
        return None
    if name.startswith("factory_sim.demo"):
        return "factory_sim.demo"
    return top


def test_import_rule_holds_for_every_module() -> None:
    violations = []
    for path in _modules():
        owner = _owner(path)
        allowed = ALLOWED[owner] | {owner}
        if owner == "factory_sim.demo":
            allowed |= {"factory_sim"}
        for name in sorted(_imports(path)):
            target = _project_target(name)
            if target is not None and target not in allowed:
                violations.append(
                    f"{path.relative_to(ROOT)} imports {name} ({owner} may not import {target})"
                )
    assert not violations, "\n".join(violations)


def test_factory_core_imports_only_core_dependencies() -> None:
    stdlib = sys.stdlib_module_names
    bad = []
    for path in sorted((ROOT / "factory_core").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in stdlib and top not in CORE_THIRD_PARTY and top != "factory_core":
                bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, "\n".join(bad)


def test_no_test_module_imports_another_and_no_test_helpers_ship() -> None:
    """Shared test code lives in tests/support; production packages hold no test-only module."""
    crossing = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "tests" and any(p.startswith("test_") for p in parts[1:]):
                crossing.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not crossing, "\n".join(crossing)
    shipped = [p.relative_to(ROOT) for p in _modules() if re.search(r"(^|_)(testing|test)(_|$)", p.stem)]
    assert not shipped, f"test-only modules in production packages: {shipped}"


def test_edge_collector_never_imports_heavy_packages() -> None:
    """Every edge_collector module imports without pulling the cloud-side stack."""
    code = (
        "import importlib, pkgutil, sys, edge_collector\n"
        "for m in pkgutil.walk_packages(edge_collector.__path__, 'edge_collector.'):\n"
        "    importlib.import_module(m.name)\n"
        f"heavy = sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"edge_collector pulled in: {out.stdout.strip()}"


def test_core_dependencies_exclude_cloud_stack() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in HEAVY:
        assert name not in core, f"{name} must stay out of the core dependencies"
    extras = project["optional-dependencies"]
    for extra in ("assets", "inference"):
        assert "factory-ai-platform[model]" in extras[extra], f"[{extra}] must include [model]"


def test_lock_pins_dagster_family_in_lockstep() -> None:
    lock = (ROOT / "requirements.lock").read_text()
    pins = {
        line.split("==")[0]: line.split("==")[1].split()[0]
        for line in lock.splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
    for name in ("dagster", "dagster-webserver", "dagster-graphql", "dagster-pipes", "dagster-shared"):
        assert pins[name] == "1.13.27", name
    for name in ("dagster-aws", "dagster-postgres", "dagster-k8s"):
        assert pins[name] == "0.29.27", name
    assert pins["xgboost"] == "3.2.0"


def test_console_scripts_have_help() -> None:
    bindir = Path(sys.executable).parent
    for script in ("factory-sim", "edge-collector", "inference-server"):
        out = subprocess.run([str(bindir / script), "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{script} --help failed: {out.stderr}"
        assert "usage" in out.stdout.lower(), script


# ------------------------------------------------------------------------------------------- images

IMAGES = {
    # image: (modules the container imports at start, the console script and args it runs with --help)
    "collector": (("edge_collector.cli", "edge_collector.daemon"), ("edge-collector", "run")),
    "dagster": (("factory_assets.definitions",), ("dagster", "code-server", "start")),
    "inference": (("inference_server.cli", "inference_server.main"), ("inference-server", "serve")),
}
BUILD_STEPS = {"inference": ("inference-server", "compile")}
"""Commands a Dockerfile RUNs in the image after installing (the inference image compiles its kernels)."""


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not installed (make install puts it into .venv)")
    return uv


def dockerfile_copies(dockerfile: Path) -> list[str]:
    """Top-level paths a Dockerfile's build stage copies from the repository into its source dir."""
    copies = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"^COPY\s+(?!--from)(\S.*?)\s+(\./\S*|\.)\s*$", line)
        if m:
            copies += m.group(1).split()
    return copies


def test_dockerfile_copies_are_exactly_the_packages_each_image_runs() -> None:
    expected = {
        "collector": ["pyproject.toml", "README.md", "factory_core", "edge_collector"],
        "dagster": ["pyproject.toml", "README.md", "factory_core", "quality_model", "factory_assets"],
        "inference": ["pyproject.toml", "README.md", "factory_core", "quality_model", "inference_server"],
    }
    for image, paths in expected.items():
        assert dockerfile_copies(ROOT / "deploy" / "docker" / f"Dockerfile.{image}") == paths, image


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_environment_from_its_own_lock_starts(image: str, tmp_path: Path) -> None:
    """Built like the Dockerfile, minus Docker: its lock, its COPYs, its install; then start it."""
    dockerfile = ROOT / "deploy" / "docker" / f"Dockerfile.{image}"
    lock = ROOT / "deploy" / "docker" / f"requirements-{image}.lock"
    uv = _uv()
    venv, src = tmp_path / "venv", tmp_path / "src"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "UV_NO_PROGRESS": "1", "VIRTUAL_ENV": str(venv)}
    sync = subprocess.run(
        [uv, "pip", "sync", "--python", str(python), "--require-hashes", str(lock)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert sync.returncode == 0, f"{lock.name}: {sync.stderr[-2000:]}"
    src.mkdir()
    for path in dockerfile_copies(dockerfile):
        source = ROOT / path
        if source.is_dir():
            shutil.copytree(source, src / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, src / path)
    install = subprocess.run(
        [uv, "pip", "install", "--python", str(python), "--no-deps", "."],
        capture_output=True, text=True, cwd=src, env=env, timeout=600,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    modules, command = IMAGES[image]
    neutral = tmp_path / "cwd"  # not the repository: nothing may be imported from the working tree
    neutral.mkdir()
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    clean_env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")
    if image in BUILD_STEPS:
        step = BUILD_STEPS[image]
        assert " ".join(step) in dockerfile.read_text(), f"Dockerfile.{image} no longer runs {step}"
        out = subprocess.run(
            [str(venv / "bin" / step[0]), *step[1:]], capture_output=True, text=True, cwd=neutral,
            env=clean_env, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, f"{' '.join(step)} failed in the {image} image:\n{out.stderr[-3000:]}"
    for module in modules:
        out = subprocess.run(
            [str(python), "-c", f"import {module}, sys; print({module}.__file__)"],
            capture_output=True, text=True, cwd=neutral, env=clean_env, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, f"the {image} image cannot import {module}:\n{out.stderr[-3000:]}"
        assert out.stderr == "", f"importing {module} in the {image} image printed:\n{out.stderr[-3000:]}"
        assert str(venv) in out.stdout, (
            f"{module} was imported from {out.stdout.strip()}, not the image's venv"
        )
    script = venv / "bin" / command[0]
    out = subprocess.run(
        [str(script), *command[1:], "--help"], capture_output=True, text=True, cwd=neutral, env=clean_env,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, (
        f"{' '.join(command)} --help failed in the {image} image:\n{out.stderr[-3000:]}"
    )
    assert "usage" in out.stdout.lower()
