"""A well-behaved caller's latency while one hostile client attacks `inference-server serve`, in one run.

Why: docs/inference.md states the bound an unauthenticated attacker can impose on authenticated callers;
this prints the measured table behind it (no attack first, then each attack of tests/support/hostile.py
for ``--seconds``, one server process, the suite's limits).

    .venv/bin/python -m benchmarks.bench_hostile [--seconds 8]
"""

from __future__ import annotations

import argparse
import time

from quality_model import registry
from tests.support import hostile
from tests.support.inference import trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per row")
    args = parser.parse_args()
    with hostile.served(registry.serialize(trained(7.0), 1)) as server:
        hostile.measure(server, None, 1.0)  # warm-up
        rss0 = server.rss_mb()
        print(f"limits: {server.limits}; server RSS at start {rss0:.0f} MB")
        print(
            "| attack | requests | failed | p50 ms | p99 ms | max ms | attacker connections (closed by server) | RSS after, MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        rows = [("none", None), *hostile.ATTACKS.items()]
        for name, attack in rows:
            r = hostile.measure(server, attack, args.seconds)
            time.sleep(1.5)
            a = r["attack"]
            conns = f"{a.connections} ({a.closed_by_server})" if attack else "-"
            print(
                f"| {name} | {r['requests']} | {r['failures']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['max_ms']:.1f} | {conns} | {server.rss_mb():.0f} |"
            )


if __name__ == "__main__":
    main()
