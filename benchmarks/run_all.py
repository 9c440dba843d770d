"""Run every benchmark one after the other and keep their JSON results.

Benchmarks run sequentially in fresh interpreters (they measure ratios against baselines taken in the
same run, so they must not compete with each other for the 2 cores). Results land in
`var/benchmarks/<name>.json`; docs/benchmarks.md records the figures and this command.

    make bench                         # all of them
    .venv/bin/python -m benchmarks.run_all bench_history bench_server
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "var" / "benchmarks"


def available() -> list[str]:
    """Benchmark modules in this folder (bench_*.py), in a stable order."""
    return sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


def run_one(name: str) -> dict[str, object]:
    """Run one benchmark module; its last stdout JSON document is its result."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    wall = round(time.perf_counter() - started, 1)
    if proc.returncode != 0:
        return {"benchmark": name, "ok": False, "wall_s": wall, "stderr": proc.stderr[-4000:]}
    text = proc.stdout.strip()
    start = text.find("{")
    try:
        result = json.loads(text[start:]) if start >= 0 else {"stdout": text}
    except json.JSONDecodeError:
        result = {"stdout": text[-4000:]}
    return {"benchmark": name, "ok": True, "wall_s": wall, "result": result}


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("benchmarks", nargs="*", choices=[*names, []], help="subset to run (default all)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.benchmarks or names:
        print(f"== {name}", file=sys.stderr, flush=True)
        record = run_one(name)
        (OUT / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
        failed += not record["ok"]
        print(json.dumps(record, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
