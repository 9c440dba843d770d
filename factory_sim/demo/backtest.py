"""`factory-sim backtest`: a line runs through consecutive quarters, the AI at the dial after the first.

Why: the model must beat the best craftsman for the whole quarter it serves, in every season, and only
a run of the platform's own loop shows that: quarter 1 is run by the craftsmen; at each quarter's end
the platform's real training code, training window and promotion gate (`quality_model.retraining`)
produce the next model from the history so far, and every later quarter is run by the serving model
through the same recommendation code the server runs (a verified artefact's `Recommender`, in-process),
falling back to the craftsman on shift wherever the server would refuse. The history the next model
learns from is the history this loop produced, under the model's own control.

Per quarter, on the same lots (every craftsman and the oracle replayed on the lots the line actually
processed, with the same outcome draws): realized quality, faults, cycle time and energy; the fallback
rate by reason; and the gate's decision with its truth (candidate vs serving model on that quarter's
lots, which neither model saw). `--json` prints one object other tools read (docs/model.md).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from factory_assets.performance import refusals
from factory_core.machine import MODEL_CODE_BASE
from factory_sim import physics
from factory_sim.config import NS_PER_S, SimConfig
from factory_sim.craftsmen import (
    Decision,
    ProductionContext,
    craftsman_decision,
    on_shift,
    roster,
)
from factory_sim.demo import backtest_checks
from factory_sim.noise import derive_key
from factory_sim.productions import productions_table
from factory_sim.schedule import LineTimeline, Production
from quality_model import retraining
from quality_model.features import LOT_FEATURES
from quality_model.registry import LoadedModel
from quality_model.search.recommender import NoFeasibleSetting

CRAFTSMEN_RUN = "craftsmen"
MODEL_RUN = "model"
GATE_TOLERANCE = 0.5  # quality points: a decision is right if it did not lose more than this
DEFAULT_START = dt.date(2026, 1, 1)
MIN_JUDGED_LOTS = 200  # a refusal retrain's decision is judged on at least this many later lots


def quarter_starts(start: dt.date, quarters: int) -> list[dt.date]:
    """First days of ``quarters`` consecutive calendar quarters from the one holding ``start``, plus the
    day after the last one."""
    month = 3 * ((start.month - 1) // 3) + 1
    out = []
    year = start.year
    for _ in range(quarters + 1):
        out.append(dt.date(year, month, 1))
        month += 3
        if month > 12:
            month, year = month - 12, year + 1
    return out


def _ns(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * NS_PER_S


def _lot_values(lot: physics.Lot) -> tuple[float, float, float, float]:
    return tuple(float(getattr(lot, f)) for f in LOT_FEATURES)  # type: ignore[return-value]


@dataclass
class ServingSchedule:
    """Which model serves when: the policy the line runs, switched at quarter boundaries.

    Decisions look the model up by the production's start time, so they do not depend on the order in
    which the timeline plans them."""

    since_ns: list[int] = field(default_factory=list)
    models: list[LoadedModel] = field(default_factory=list)
    fallbacks: Counter[str] = field(default_factory=Counter)
    # every model decision as the decision log records it:
    # (start, version number, status, reason, lot id, the answer's lot distance or None)
    decided: list[tuple[int, int, int, str, str, float | None]] = field(default_factory=list)

    def serve(self, since_ns: int, model: LoadedModel) -> None:
        self.since_ns.append(since_ns)
        self.models.append(model)

    def model_at(self, t_ns: int) -> LoadedModel | None:
        for since, model in zip(reversed(self.since_ns), reversed(self.models), strict=True):
            if since <= t_ns:
                return model
        return None

    def policy(self, lot: physics.Lot, ctx: ProductionContext) -> Decision:
        model = self.model_at(ctx.start_ns)
        if model is None:
            return ctx.fallback(lot)
        decision, distance = model_decision(model, lot)
        if isinstance(decision, str):
            self.fallbacks[decision] += 1
            self.decided.append((ctx.start_ns, model.version_number, 503, decision, lot.lot_id, None))
            return ctx.fallback(lot)
        self.decided.append((ctx.start_ns, model.version_number, 200, "answered", lot.lot_id, distance))
        return decision

    def decisions_since(self, t_ns: int, line: str) -> pl.DataFrame:
        """The decisions from ``t_ns`` on, in the columns `refusals.judge` reads (ts: the production's start,
        which the decision just precedes)."""
        first = bisect.bisect_left(self.decided, (t_ns,))
        rows = self.decided[first:]
        return pl.DataFrame(
            {
                "line": [line] * len(rows),
                "ts": [dt.datetime.fromtimestamp(r[0] / NS_PER_S, dt.UTC) for r in rows],
                "model_version_number": [r[1] for r in rows],
                "status": [r[2] for r in rows],
                "outcome": [r[3] for r in rows],
                "lot_id": [r[4] for r in rows],
                "lot_distance": [r[5] for r in rows],
            },
            schema={"line": pl.String, "ts": pl.Datetime("us", "UTC"), "model_version_number": pl.Int64,
                    "status": pl.Int64, "outcome": pl.String, "lot_id": pl.String,
                    "lot_distance": pl.Float64},
        )  # fmt: skip


def model_decision(model: LoadedModel, lot: physics.Lot) -> tuple[Decision | str, float | None]:
    """The server's answer for ``lot``: a Decision, or the refusal reason (the craftsman then decides),
    with the answer's `support.lot_distance` (None on a refusal)."""
    try:
        rec = model.recommender.recommend(_lot_values(lot))
    except NoFeasibleSetting as exc:
        return exc.reason, None
    p = rec.parameters
    params = physics.Params(p["temperature"], p["feed_rate"], p["pressure"])
    if not physics.within_safety(params):  # the control system refuses it too
        return "unsafe_parameters", None
    decision = Decision(params, f"model:{model.version}", MODEL_CODE_BASE + model.version_number)
    return decision, rec.lot_distance


def fault_probability(lot: physics.Lot, params: physics.Params) -> float:
    """The simulator's true probability that ``params`` faults on ``lot`` (as `physics.outcome` draws it:
    over-current first, else over-temperature): what a realized fault count estimates."""
    p_oc, p_ot = physics.fault_probabilities(lot, physics.clip_to_safety(params))
    return p_oc + (1.0 - p_oc) * p_ot


@dataclass
class Scores:
    """Sums of one policy's outcomes on the scored lots, and of its settings' true fault probabilities.

    Why both: faults near the optimum are rare events (about 1e-5 per lot), so a quarter's fault count is
    a handful of draws; the summed probability is the policy's fault rate without the draw's noise."""

    n: int = 0
    quality: float = 0.0
    faults: int = 0
    fault_probability: float = 0.0
    cycle_time_s: float = 0.0
    energy_kwh: float = 0.0

    def add(self, out: physics.Outcome, fault_probability: float) -> None:
        self.n += 1
        self.quality += out.quality
        self.faults += out.fault is not None
        self.fault_probability += fault_probability
        self.cycle_time_s += out.cycle_time_s
        self.energy_kwh += out.energy_kwh

    def mean(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "quality": self.quality / n,
            "fault_rate": self.faults / n,
            "expected_fault_rate": self.fault_probability / n,
            "cycle_time_s": self.cycle_time_s / n,
            "energy_kwh": self.energy_kwh / n,
        }


def _sample(prods: list[Production], lots: int) -> list[Production]:
    if lots <= 0 or lots >= len(prods):
        return prods
    idx = np.linspace(0, len(prods) - 1, lots).round().astype(int)
    return [prods[i] for i in idx]


def _replay(
    prods: list[Production], decide: Callable[[Production], physics.Params], seed: int,
    record: dict[int, float] | None = None, faulted: set[int] | None = None,
    risks: dict[int, float] | None = None,
) -> Scores:  # fmt: skip
    """Outcomes of another policy on the same lots with the same outcome draws (paired); `record` gets
    each production's quality by production id, `faulted` the ids of those that faulted, `risks` each
    setting's true fault probability."""
    scores = Scores()
    for p in prods:
        params = decide(p)
        out = physics.outcome(p.lot, params, physics.outcome_key(seed, p.line, p.production_id))
        risk = fault_probability(p.lot, params)
        scores.add(out, risk)
        if risks is not None:
            risks[p.production_id] = risk
        if record is not None:
            record[p.production_id] = out.quality
        if faulted is not None and out.fault is not None:
            faulted.add(p.production_id)
    return scores


def _policy_quality(model: LoadedModel | None, prods: list[Production], seed: int, cfg: SimConfig) -> float:
    """Realized quality on ``prods`` had ``model`` served (the craftsman on shift where it refuses;
    None: the craftsmen alone)."""

    def decide(p: Production) -> physics.Params:
        if model is not None:
            decision, _ = model_decision(model, p.lot)
            if not isinstance(decision, str):
                return decision.params
        return _craftsman_params(p, seed, cfg)

    return _replay(prods, decide, seed).mean()["quality"]


def _craftsman_params(p: Production, seed: int, cfg: SimConfig) -> physics.Params:
    craftsman = on_shift(seed, p.line, p.shift_index, cfg.crew)
    return craftsman_decision(craftsman, p.lot, derive_key(seed, p.line, "decide", p.production_id)).params


@dataclass
class Backtest:
    seed: int
    line: str
    quarters: int = 5
    lots: int = 2000
    start: dt.date = DEFAULT_START
    crew: tuple[str, ...] = ()
    progress: bool = True
    report: dict[str, Any] = field(default_factory=dict)
    history: list[Production] = field(default_factory=list, repr=False)  # every production, as run
    timeline: LineTimeline | None = field(default=None, repr=False)
    # each craftsman's replayed quality on every scored production, by production id (for the checks)
    replayed: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)
    replayed_faults: dict[str, set[int]] = field(default_factory=dict, repr=False)  # ... and which faulted
    replayed_risks: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)  # ... how likely
    # the platform's refusal check and retrain (None: retrain at quarters' ends only, for comparison)
    refusal_rule: refusals.RefusalRule | None = field(default_factory=refusals.RefusalRule)
    retrain_requests: dict[int, list[dt.date]] = field(default_factory=dict, repr=False)
    # which model serves when, and every decision it took (a study may pass one that logs more)
    schedule: ServingSchedule = field(default_factory=ServingSchedule, repr=False)
    versions: int = field(default=0, repr=False)

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        cfg = SimConfig(seed=self.seed, lines=(self.line,), crew=self.crew)
        bounds = quarter_starts(self.start, self.quarters)
        schedule = self.schedule
        if schedule.models:
            raise RuntimeError("a Backtest runs once: its serving schedule already holds models")
        timeline = LineTimeline(cfg, self.line, policy=schedule.policy, policy_since_ns=_ns(bounds[1]))
        self.timeline, self.history = timeline, []
        history = self.history
        out_quarters = []
        serving: LoadedModel | None = None
        bar = tqdm(
            total=self.quarters, desc="backtest", unit="quarter", file=sys.stderr, disable=not self.progress
        )
        gate: dict[str, Any] | None = None
        candidate: LoadedModel | None = None
        check_verdict: bool | None = None
        for q in range(self.quarters):
            t1 = _ns(bounds[q + 1])
            before = Counter(schedule.fallbacks)
            prods: list[Production] = []
            retrains: list[dict[str, Any]] = []
            day = bounds[q]
            while day < bounds[q + 1]:  # day by day: the refusal check may retrain within the quarter
                d0, d1 = _ns(day), _ns(day + dt.timedelta(days=1))
                today = [p for p in timeline.productions_between(d0, d1) if d0 <= p.start_ns < d1]
                prods += today
                history += today
                if serving is not None and self.refusal_rule is not None:
                    event = self._refusal_check(day, schedule, serving)
                    if event is not None:
                        retrains.append(event)
                        if event["promoted"]:
                            serving = event["_candidate"]
                            schedule.serve(d1, serving)
                day += dt.timedelta(days=1)
            fallbacks = dict(schedule.fallbacks - before)
            scored = _sample(prods, self.lots)
            entry = self._score(q, bounds[q], scored, cfg, fallbacks, len(prods))
            faulted = [p for p in prods if p.outcome.fault]  # every production of the quarter, not a sample
            frame = productions_table(history)  # the history so far, as the platform's tables hold it
            entry["faults_by_setter"] = {
                "model": sum(p.set_by_code >= MODEL_CODE_BASE for p in faulted),
                "craftsmen": sum(p.set_by_code < MODEL_CODE_BASE for p in faulted),
            }
            if gate is not None:
                # the decision taken at this quarter's start, judged on this quarter's lots (unseen by both)
                gate["candidate_next_quality"] = _policy_quality(candidate, scored, self.seed, cfg)
                gate["serving_next_quality"] = _policy_quality(gate.pop("_serving"), scored, self.seed, cfg)
                better = gate["candidate_next_quality"] - gate["serving_next_quality"]
                gate["right"] = bool(
                    better >= -GATE_TOLERANCE if gate["promoted"] else better <= GATE_TOLERANCE
                )
                entry["gate"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in gate.items()}
                # model_beats_best_craftsman as recorded for the serving model at training, against the truth
                truth = entry["quality"]["line"] >= entry["quality"]["best_craftsman"]
                entry["check"] = {
                    "model_beats_best_craftsman": check_verdict,
                    "truth": truth,
                    "agrees": None if check_verdict is None else check_verdict == truth,  # None: not judged
                }
                # the model_performance check as the daily asset computes it, on the history as run
                entry["model_performance"] = backtest_checks.quarter_verdict(
                    backtest_checks.history_frame(frame),
                    bounds[q],
                    bounds[q + 1],
                    bounds[0],
                    self.replayed,
                    truth,
                )
            entry["refusal_retrains"] = [self._judged_retrain(e, scored, cfg) for e in retrains]
            out_quarters.append(entry)
            bar.update(1)
            if q == self.quarters - 1:
                break
            # quarter end: the platform trains a candidate on the history so far and its gate decides
            result = retraining.retrain(
                frame, serving, as_of=bounds[q + 1], seed=self.seed, version_number=self._next_version()
            )
            candidate = result.candidate
            if result.promoted or serving is None:
                check_verdict = result.versus_craftsmen.get("passed")
            gate = {"promoted": result.promoted, "reason": result.reason, "_serving": serving,
                    "train_seconds": round(result.train_seconds, 2)}  # fmt: skip
            if result.promoted:
                serving = candidate
                schedule.serve(t1, candidate)
        bar.close()
        self.report = {
            "seed": self.seed,
            "line": self.line,
            "crew": [c.name for c in roster(self.crew)],
            "lots_per_quarter": self.lots,
            "refusal_rule": None if self.refusal_rule is None else vars(self.refusal_rule),
            "quarters": out_quarters,
            "oracle_gap_mean": round(
                float(
                    np.mean(
                        [q["quality"]["oracle"] - q["quality"]["line"] for q in out_quarters[1:]] or [0.0]
                    )
                ),
                4,
            ),
            "seconds": round(time.perf_counter() - started, 1),
        }
        return self.report

    def _next_version(self) -> int:
        self.versions += 1
        return self.versions

    def _refusal_check(
        self, day: dt.date, schedule: ServingSchedule, serving: LoadedModel
    ) -> dict[str, Any] | None:
        """The platform's refusal check at the end of ``day`` and, when it requests one, the retrain
        (trained on every production up to that day's end, gated, serving from the next day if promoted)."""
        rule = self.refusal_rule
        assert rule is not None
        verdict = refusals.judge(
            schedule.decisions_since(_ns(rule.window_first(day)), self.line), self.line, day, rule
        )
        if verdict.passed or verdict.version_number != serving.version_number:
            return None
        asked = self.retrain_requests.setdefault(serving.version_number, [])
        if not refusals.should_request(day, asked, rule):
            return None
        asked.append(day)
        result = retraining.retrain(
            productions_table(self.history), serving, as_of=day + dt.timedelta(days=1), seed=self.seed,
            version_number=self._next_version(),
        )  # fmt: skip
        return {
            "day": day.isoformat(),
            "serving": serving.version,
            "refusals": verdict.refusals,
            "far_answers": verdict.far_answers,
            "promoted": result.promoted,
            "reason": result.reason,
            "train_seconds": round(result.train_seconds, 2),
            "_candidate": result.candidate,
            "_serving": serving,
        }

    def _judged_retrain(
        self, event: dict[str, Any], scored: list[Production], cfg: SimConfig
    ) -> dict[str, Any]:
        """A refusal retrain's decision held to the truth: candidate vs the model it would replace on the
        quarter's lots after it (unseen by both); not judged with fewer than MIN_JUDGED_LOTS of them."""
        after = [
            p for p in scored if p.start_ns >= _ns(dt.date.fromisoformat(event["day"]) + dt.timedelta(days=1))
        ]
        out = {k: v for k, v in event.items() if not k.startswith("_")}
        if len(after) < MIN_JUDGED_LOTS:
            return out | {"candidate_rest_quality": None, "serving_rest_quality": None, "right": None}
        cand = _policy_quality(event["_candidate"], after, self.seed, cfg)
        kept = _policy_quality(event["_serving"], after, self.seed, cfg)
        better = cand - kept
        right = better >= -GATE_TOLERANCE if event["promoted"] else better <= GATE_TOLERANCE
        return out | {"candidate_rest_quality": cand, "serving_rest_quality": kept, "right": bool(right)}

    def _score(
        self, q: int, start: dt.date, scored: list[Production], cfg: SimConfig, fallbacks: dict[str, int],
        n_prods: int,
    ) -> dict[str, Any]:  # fmt: skip
        line = Scores()
        for p in scored:
            line.add(p.outcome, fault_probability(p.lot, p.params))
        policies: dict[str, Scores] = {"line": line}
        policies["oracle"] = _replay(scored, lambda p: physics.optimum(p.lot), self.seed)
        for c in roster(self.crew):
            policies[c.name] = _replay(
                scored,
                lambda p, c=c: (
                    craftsman_decision(
                        c, p.lot, derive_key(self.seed, p.line, "decide", p.production_id)
                    ).params
                ),
                self.seed,
                self.replayed.setdefault(c.name, {}),
                self.replayed_faults.setdefault(c.name, set()),
                self.replayed_risks.setdefault(c.name, {}),
            )
        means = {name: s.mean() for name, s in policies.items()}
        crew = [c.name for c in roster(self.crew)]
        best = max(crew, key=lambda n: means[n]["quality"])
        fallback_total = sum(fallbacks.values())
        run_by = CRAFTSMEN_RUN if q == 0 else MODEL_RUN
        model_set = self._model_set(scored, best)
        return {
            "quarter": start.isoformat(),
            "run_by": run_by,
            "productions": n_prods,
            "lots": len(scored),
            "best_craftsman_name": best,
            "quality": {
                "line": means["line"]["quality"],
                "oracle": means["oracle"]["quality"],
                "best_craftsman": means[best]["quality"],
                **{n: means[n]["quality"] for n in crew},
            },
            "fault_rate": {
                "line": means["line"]["fault_rate"],
                "oracle": means["oracle"]["fault_rate"],
                "best_craftsman": means[best]["fault_rate"],
                **{n: means[n]["fault_rate"] for n in crew},
            },
            "expected_fault_rate": {
                "line": means["line"]["expected_fault_rate"],
                "oracle": means["oracle"]["expected_fault_rate"],
                "best_craftsman": means[best]["expected_fault_rate"],
                **{n: means[n]["expected_fault_rate"] for n in crew},
            },
            "faults": {
                "line": line.faults,
                "oracle": policies["oracle"].faults,
                "best_craftsman": policies[best].faults,
                **{n: policies[n].faults for n in crew},
            },
            "cycle_time_s": {n: means[n]["cycle_time_s"] for n in ("line", "oracle", best)},
            "energy_kwh": {n: means[n]["energy_kwh"] for n in ("line", "oracle", best)},
            "fallback_rate": (fallback_total / n_prods) if run_by == MODEL_RUN and n_prods else 0.0,
            "fallbacks": fallbacks,
            "model_set": model_set,
        }

    def _model_set(self, scored: list[Production], best: str) -> dict[str, Any] | None:
        """The model's own decisions against the best craftsman on exactly those lots (the line as run
        also holds the refused lots, which the craftsman on shift set), from the craftsman's replay of
        this quarter's lots; None where no model set a lot."""
        mine = [p for p in scored if p.set_by_code >= MODEL_CODE_BASE]
        if not mine:
            return None
        own = Scores()
        for p in mine:
            own.add(p.outcome, fault_probability(p.lot, p.params))
        ours = own.mean()
        theirs = [self.replayed[best][p.production_id] for p in mine]
        their_faults = sum(p.production_id in self.replayed_faults[best] for p in mine)
        return {
            "lots": own.n,
            "quality": ours["quality"],
            "fault_rate": ours["fault_rate"],
            "expected_fault_rate": ours["expected_fault_rate"],
            "faults": own.faults,
            "best_craftsman_quality": sum(theirs) / len(theirs),
            "best_craftsman_fault_rate": their_faults / len(mine),
            "best_craftsman_expected_fault_rate": sum(
                self.replayed_risks[best][p.production_id] for p in mine
            )
            / len(mine),
            "best_craftsman_faults": their_faults,
        }


def _rounded(obj: Any) -> Any:
    """Floats to 4 decimals, or 4 significant digits below 1 (fault rates are often 1e-5)."""
    if isinstance(obj, float):
        return round(obj, 4) if abs(obj) >= 1.0 else float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _checks(quarter: dict[str, Any]) -> str:
    """Both checks' verdicts, each followed by whether it agreed with the truth (= or !)."""
    out = []
    check, perf = quarter.get("check"), quarter.get("model_performance")
    if check and check["model_beats_best_craftsman"] is not None:
        out.append(
            f"{'pass' if check['model_beats_best_craftsman'] else 'fail'}{'=' if check['agrees'] else '!'}"
        )
    if perf:
        out.append(f"{perf['verdict']}{'' if perf['agrees'] is None else '=' if perf['agrees'] else '!'}")
    return " / ".join(out)


def summary_table(report: dict[str, Any]) -> str:
    """The report as a table for people: per quarter, the line against the best craftsman and the oracle."""
    head = (
        f"{'quarter':<11} {'run by':<10} {'line':>7} {'best craftsman':>20} {'oracle':>7} "
        f"{'faults line/best':>17} {'fallback':>9} {'retrains':>9} {'gate':>22} {'checks (vs truth)':>24}"
    )
    rows = [head, "-" * len(head)]
    for q in report["quarters"]:
        gate = q.get("gate")
        verdict = ""
        if gate:
            verdict = (
                f"{'promoted' if gate['promoted'] else 'kept'} ({'right' if gate['right'] else 'WRONG'})"
            )
        rows.append(
            f"{q['quarter']:<11} {q['run_by']:<10} {q['quality']['line']:>7.2f} "
            f"{q['best_craftsman_name'] + ' ' + format(q['quality']['best_craftsman'], '.2f'):>20} "
            f"{q['quality']['oracle']:>7.2f} "
            f"{format(q['fault_rate']['line'], '.2%') + '/' + format(q['fault_rate']['best_craftsman'], '.2%'):>17} "
            f"{q['fallback_rate']:>9.2%} {len(q.get('refusal_retrains', [])):>9} {verdict:>22} {_checks(q):>24}"
        )
    rows.append(f"mean gap to the oracle over the model-run quarters: {report['oracle_gap_mean']:.2f}")
    rows.append(
        "retrains: within the quarter, requested by the model's own refusals or far answers (refusal_retrains)"
    )
    rows.append("checks: model_beats_best_craftsman / model_performance; = agrees with the truth, ! does not")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factory-sim backtest",
        description="Run a line through consecutive quarters: the craftsmen first, then the platform's "
        "model, retrained and gated at every quarter's end; report each quarter against every craftsman "
        "and the oracle on the same lots.",
    )
    parser.add_argument("--seed", type=int, default=42, help="simulation seed (default 42)")
    parser.add_argument("--line", default="L1", help="line name (default L1)")
    parser.add_argument(
        "--quarters",
        type=int,
        default=5,
        help="quarters to run, the first by the craftsmen (default 5: a year of the model)",
    )
    parser.add_argument(
        "--lots",
        type=int,
        default=2000,
        help="lots per quarter replayed for every craftsman and the oracle (0: all; default 2000)",
    )
    parser.add_argument(
        "--start",
        type=dt.date.fromisoformat,
        default=DEFAULT_START,
        help="a day of the first quarter (default 2026-01-01)",
    )
    parser.add_argument(
        "--crew",
        default="",
        help="comma-separated craftsmen on the roster (default: all five: anna,bruno,carla,dmitri,emil)",
    )
    parser.add_argument(
        "--no-refusal-retrain",
        action="store_true",
        help="retrain at quarters' ends only, not also when the serving model refuses lots of its own "
        "accord or answers lots far from its history (the platform's refusal check; for comparison)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser  # fmt: skip


def cli(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.quarters < 2:
        print("factory-sim backtest: --quarters must be >= 2 (one run by the craftsmen, then the model)",
              file=sys.stderr)  # fmt: skip
        return 2
    crew = tuple(n.strip() for n in args.crew.split(",") if n.strip())
    try:
        SimConfig(seed=args.seed, lines=(args.line,), crew=crew)
    except ValueError as exc:
        print(f"factory-sim backtest: {exc}", file=sys.stderr)
        return 2
    bt = Backtest(
        args.seed, args.line, args.quarters, args.lots, args.start, crew, progress=not args.no_progress,
        refusal_rule=None if args.no_refusal_retrain else refusals.RefusalRule(),
    )  # fmt: skip
    report = _rounded(bt.run())
    print(json.dumps(report, indent=2) if args.json else summary_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
