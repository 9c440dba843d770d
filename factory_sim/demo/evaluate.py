"""Paired evaluation of policies on held-out lots: craftsmen, the oracle (p*) and the HTTP endpoint.

Every policy sets the SAME lots and each lot's outcome uses the SAME key for every policy, so the
differences between policies are decision differences, not luck of the draw. Lots come from the
held-out stream (`physics.heldout_lot`), which no line ever draws, so the model never trained on them;
`--drift-days` draws them a season ahead to show what seasonal drift does to a model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from factory_sim import physics
from factory_sim.config import NS_PER_S
from factory_sim.control import HttpPolicy, api_key_from_env, iso, parse_start
from factory_sim.craftsmen import (
    CRAFTSMEN,
    Craftsman,
    craftsman_decision,
    evaluation_context,
    evaluation_key,
    on_shift,
    oracle_policy,
    shift_index_at,
)

ORACLE = "oracle"
ENDPOINT = "endpoint"
METRICS = ("mean_quality", "fault_rate", "mean_cycle_time_s", "mean_energy_kwh")
# Lots are spread over this span so every shift slot and roster week is represented.
DEFAULT_SPAN_DAYS = 7.0


@dataclass
class Tally:
    """Running sums of one policy's outcomes (plus paired quality differences to the oracle)."""

    n: int = 0
    quality: float = 0.0
    faults: int = 0
    cycle_time_s: float = 0.0
    energy_kwh: float = 0.0
    gap_sum: float = 0.0
    gap_sq: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, out: physics.Outcome, oracle_quality: float) -> None:
        self.n += 1
        self.quality += out.quality
        self.faults += out.fault is not None
        self.cycle_time_s += out.cycle_time_s
        self.energy_kwh += out.energy_kwh
        gap = oracle_quality - out.quality
        self.gap_sum += gap
        self.gap_sq += gap * gap

    def report(self) -> dict[str, Any]:
        n = max(self.n, 1)
        mean_gap = self.gap_sum / n
        var = max(0.0, self.gap_sq / n - mean_gap * mean_gap) * n / max(n - 1, 1)
        return {
            "n": self.n,
            "mean_quality": round(self.quality / n, 4),
            "fault_rate": round(self.faults / n, 4),
            "mean_cycle_time_s": round(self.cycle_time_s / n, 3),
            "mean_energy_kwh": round(self.energy_kwh / n, 5),
            "quality_gap_se": round(math.sqrt(var / n), 4),  # std error of the paired quality gap
            **self.extra,
        }


# A policy for evaluation: (lot, lot index) -> params.
EvalPolicy = Callable[[physics.Lot, int], physics.Params]


def craftsman_eval_policy(craftsman: Craftsman, seed: int) -> EvalPolicy:
    def decide(lot: physics.Lot, index: int) -> physics.Params:
        return craftsman_decision(
            craftsman, lot, evaluation_context(seed, index, craftsman).decide_key
        ).params

    return decide


def oracle_eval_policy(seed: int) -> EvalPolicy:
    def decide(lot: physics.Lot, index: int) -> physics.Params:
        return oracle_policy(lot, evaluation_context(seed, index)).params

    return decide


def endpoint_eval_policy(http: HttpPolicy, seed: int, line: str, lot_times: list[int]) -> EvalPolicy:
    """The endpoint's answer, else the craftsman who would be on shift on ``line`` when the lot arrives."""

    def decide(lot: physics.Lot, index: int) -> physics.Params:
        rec = http.recommend(lot)
        if isinstance(rec, str):
            craftsman = on_shift(seed, line, shift_index_at(lot_times[index]))
            return craftsman_decision(
                craftsman, lot, evaluation_context(seed, index, craftsman).decide_key
            ).params
        return rec.params

    return decide


def select_policies(spec: str | None, have_endpoint: bool) -> list[str]:
    """Policy names from ``--policies``: craftsman names, skills (expert/intermediate/novice), 'craftsmen',
    'oracle', 'endpoint'. Default: every craftsman, the oracle and (when given) the endpoint."""
    if not spec:
        names = [c.name for c in CRAFTSMEN] + [ORACLE] + ([ENDPOINT] if have_endpoint else [])
        return names
    names: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token == "craftsmen":
            found = [c.name for c in CRAFTSMEN]
        elif token in (ORACLE, ENDPOINT):
            found = [token]
        else:
            found = [c.name for c in CRAFTSMEN if token in (c.name, c.skill)]
        if not found:
            known = sorted(
                {c.name for c in CRAFTSMEN} | {c.skill for c in CRAFTSMEN} | {ORACLE, ENDPOINT, "craftsmen"}
            )
            raise ValueError(f"--policies: unknown policy {token!r} (known: {', '.join(known)})")
        if token == ENDPOINT and not have_endpoint:
            raise ValueError("--policies: 'endpoint' needs --endpoint")
        names += [n for n in found if n not in names]
    return names


def evaluate(
    seed: int,
    n_lots: int,
    start_ns: int,
    span_days: float,
    drift_days: float,
    names: list[str],
    line: str = "L1",
    http: HttpPolicy | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every named policy over the same held-out lots; the oracle always runs (it is the yardstick)."""
    spacing = round(span_days * 86_400 * NS_PER_S / n_lots)
    lot_times = [start_ns + i * spacing for i in range(n_lots)]
    by_name = {c.name: c for c in CRAFTSMEN}
    policies: dict[str, EvalPolicy] = {ORACLE: oracle_eval_policy(seed)}
    for name in names:
        if name in by_name:
            policies[name] = craftsman_eval_policy(by_name[name], seed)
        elif name == ENDPOINT:
            assert http is not None, "endpoint policy needs an HttpPolicy"
            policies[name] = endpoint_eval_policy(http, seed, line, lot_times)
    tallies = {name: Tally() for name in policies}
    for i in tqdm(range(n_lots), desc="evaluate", unit="lot", file=sys.stderr, disable=not progress):
        lot = physics.heldout_lot(seed, i, lot_times[i], drift_days)
        key = evaluation_key(seed, i)  # same outcome draws for every policy: paired comparison
        oracle_out = physics.outcome(lot, policies[ORACLE](lot, i), key)
        for name, decide in policies.items():
            out = oracle_out if name == ORACLE else physics.outcome(lot, decide(lot, i), key)
            tallies[name].add(out, oracle_out.quality)
    reports: dict[str, dict[str, Any]] = {}
    for name in [ORACLE, *[n for n in names if n != ORACLE]]:
        rep = tallies[name].report()
        if name in by_name:
            rep = {"kind": "craftsman", "skill": by_name[name].skill, "code": by_name[name].code, **rep}
        elif name == ORACLE:
            rep = {"kind": "oracle", **rep}
        else:
            assert http is not None
            rep = {"kind": "endpoint", **rep, **http.summary()}
        reports[name] = rep
    oracle = reports[ORACLE]
    for rep in reports.values():
        rep["gap_to_oracle"] = {
            "quality": round(oracle["mean_quality"] - rep["mean_quality"], 4),
            "fault_rate": round(rep["fault_rate"] - oracle["fault_rate"], 4),
            "cycle_time_s": round(rep["mean_cycle_time_s"] - oracle["mean_cycle_time_s"], 3),
            "energy_kwh": round(rep["mean_energy_kwh"] - oracle["mean_energy_kwh"], 5),
        }
    return {
        "lots": n_lots,
        "seed": seed,
        "line": line,
        "lot_stream": "heldout",
        "first_lot_at": iso(lot_times[0] + round(drift_days * 86_400 * NS_PER_S)),
        "span_days": span_days,
        "drift_days": drift_days,
        "policies": reports,
        "by_skill": by_skill(reports),
        "ranking_by_quality": sorted(reports, key=lambda n: -reports[n]["mean_quality"]),
    }


def by_skill(reports: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of each metric over the craftsmen of one skill (same lots, so averaging means is fair)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rep in reports.values():
        if rep["kind"] == "craftsman":
            groups.setdefault(rep["skill"], []).append(rep)
    return {
        skill: {m: round(sum(r[m] for r in reps) / len(reps), 5) for m in METRICS} | {"craftsmen": len(reps)}
        for skill, reps in groups.items()
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory-sim evaluate",
        description="Compare policies on the same held-out lots with paired outcome draws: each craftsman, "
        "the oracle (the hidden optimum p*) and, with --endpoint, the recommendation endpoint (falling back "
        "to the craftsman on shift). Prints one JSON document; progress on stderr.",
    )
    parser.add_argument("--lots", type=int, default=1000, help="number of held-out lots")
    parser.add_argument(
        "--seed", type=int, default=42, help="simulation seed (the held-out stream derives from it)"
    )
    parser.add_argument(
        "--start", default="2026-01-01T00:00:00Z", help="arrival of the first lot (ISO-8601 UTC)"
    )
    parser.add_argument(
        "--span-days", type=float, default=DEFAULT_SPAN_DAYS, help="lots arrive evenly over this span"
    )
    parser.add_argument(
        "--drift-days", type=float, default=0.0, help="draw lots this many days later (seasonal drift)"
    )
    parser.add_argument("--endpoint", help="base URL of the inference API")
    parser.add_argument("--api-key-env", default="FACTORY_API_KEY", help="env var holding the API key")
    parser.add_argument(
        "--deadline-ms", type=float, default=5000.0, help="hard client-side deadline per request"
    )
    parser.add_argument("--line", default="L1", help="line whose model the endpoint is asked for")
    parser.add_argument(
        "--policies",
        help="comma list: craftsman names, expert/intermediate/novice, craftsmen, oracle, endpoint",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def cli(argv: list[str]) -> int:
    """`factory-sim evaluate`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.lots < 1:
            raise ValueError(f"--lots: must be >= 1, got {args.lots}")
        if not args.span_days > 0:
            raise ValueError(f"--span-days: must be > 0, got {args.span_days}")
        if not math.isfinite(args.drift_days) or args.drift_days < 0:
            raise ValueError(f"--drift-days: must be a finite number >= 0, got {args.drift_days}")
        if not args.deadline_ms > 0:
            raise ValueError(f"--deadline-ms: must be > 0, got {args.deadline_ms}")
        start_ns = parse_start(args.start)
        names = select_policies(args.policies, bool(args.endpoint))
        api_key = api_key_from_env(args.api_key_env) if args.endpoint else ""
    except ValueError as exc:
        parser.error(str(exc))
    http = HttpPolicy(args.endpoint, api_key, args.deadline_ms / 1000, args.line) if args.endpoint else None
    try:
        result = evaluate(
            args.seed,
            args.lots,
            start_ns,
            args.span_days,
            args.drift_days,
            names,
            args.line,
            http,
            not args.no_progress,
        )
    finally:
        if http is not None:
            http.close()
    print(json.dumps(result, indent=2))
    return 0
