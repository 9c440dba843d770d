"""Deterministic production schedule of one line, planned shift by shift.

Each shift is planned from (seed, line, shift_index) alone: it starts with a handover idle at standby
temperature long enough (HANDOVER_S >= 10 thermal time constants) that the thermal state no longer
depends on the previous shift, so any shift can be planned - and any time range generated - without
simulating from the beginning of time. Productions are planned lazily, one at a time, so a policy is
called at (virtual) production start; with the default craftsman policy the result is identical
whether a shift is planned at once or piecemeal.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from factory_core.machine import CYCLE_MAX_S, FAULT_CODES
from factory_sim.config import NS_PER_S, SimConfig
from factory_sim.craftsmen import (
    SHIFT_NS,
    Decision,
    Policy,
    ProductionContext,
    on_shift,
    random_unit,
    shift_index_at,
    shift_start_ns,
)
from factory_sim.physics import Lot, Outcome, Params, draw_lot, outcome, outcome_key, within_safety

log = logging.getLogger(__name__)

HANDOVER_S = 1800  # idle at standby at the start of every shift
FAULT_CLEAR_S = 120  # machine_state=2 after a fault until the operator resets it
CHANGEOVER_S = (40.0, 80.0)  # idle between productions (uniform, keyed)
QA_DELAY_S = (30.0, 90.0)  # QA result published this long after the production ends (uniform, keyed)
LAST_START_BEFORE_END_S = CYCLE_MAX_S + FAULT_CLEAR_S + 180  # no production starts later in a shift
MAX_PER_SHIFT = 999
CACHE_SHIFTS = 256  # shift plans kept for craftsman timelines (recomputable, so evictable)


@dataclass(frozen=True)
class Production:
    """One production run: lot, the decision taken at start, and its outcome."""

    line: str
    production_id: int
    shift_index: int
    start_ns: int
    end_ns: int  # end of the run (the fault instant if it faulted)
    qa_ns: int  # QA score published
    lot: Lot
    params: Params
    set_by: str
    set_by_code: int
    outcome: Outcome

    @property
    def fault_code(self) -> int:
        return FAULT_CODES[self.outcome.fault] if self.outcome.fault else 0

    @property
    def fault_end_ns(self) -> int:
        """End of the fault state (== end_ns when there was no fault)."""
        return self.end_ns + (FAULT_CLEAR_S * NS_PER_S if self.outcome.fault else 0)


@dataclass
class ShiftPlan:
    """Productions of one shift planned so far; ``complete`` once no further production fits."""

    shift_index: int
    start_ns: int
    end_ns: int
    productions: list[Production] = field(default_factory=list)
    next_start_ns: int = 0
    complete: bool = False

    @property
    def planned_until_ns(self) -> int:
        """Everything before this instant is final (the next production cannot start earlier)."""
        return self.end_ns if self.complete else self.next_start_ns


class LineTimeline:
    """Deterministic productions of one line; shifts of 8 h starting 06:00/14:00/22:00 UTC (the night
    shift straddles midnight, so productions cross day boundaries). policy=None -> craftsman on shift.

    A policy decision outside a hard safety range (or non-finite, or a policy exception) is refused:
    the craftsman on shift decides that production instead, and the refusal is logged and counted.
    ``policy_since_ns``: productions starting before it are decided by the craftsman (the history
    before a control loop took over), so a live timeline never asks a model about the past.
    """

    def __init__(
        self, cfg: SimConfig, line: str, policy: Policy | None = None, policy_since_ns: int | None = None
    ) -> None:
        if line not in cfg.lines:
            raise ValueError(f"line: {line!r} is not one of the configured lines {cfg.lines!r}")
        self.cfg = cfg
        self.line = line
        self.policy = policy
        self.policy_since_ns = policy_since_ns
        self.refused = 0
        self._plans: OrderedDict[int, ShiftPlan] = OrderedDict()
        self._lock = threading.RLock()

    # -- public queries -------------------------------------------------------------------------
    def productions_between(self, t0_ns: int, t1_ns: int) -> list[Production]:
        """Productions whose [start, fault_end) overlaps [t0, t1), oldest first (plans up to t1)."""
        if t1_ns <= t0_ns:
            return []
        out: list[Production] = []
        for k in range(shift_index_at(t0_ns), shift_index_at(t1_ns - 1) + 1):
            plan = self.shift_plan(k, t1_ns)
            out.extend(p for p in plan.productions if p.start_ns < t1_ns and p.fault_end_ns > t0_ns)
        return out

    def shift_plan(self, shift_index: int, until_ns: int | None = None) -> ShiftPlan:
        """Plan of ``shift_index`` extended so that everything before ``until_ns`` is final
        (None: the whole shift)."""
        with self._lock:
            plan = self._plans.get(shift_index)
            if plan is None:
                start = shift_start_ns(shift_index)
                plan = ShiftPlan(
                    shift_index, start, start + SHIFT_NS, next_start_ns=start + HANDOVER_S * NS_PER_S
                )
                _close_if_no_start_fits(plan)
                self._plans[shift_index] = plan
                if self.policy is None:
                    while len(self._plans) > CACHE_SHIFTS:
                        self._plans.popitem(last=False)
            else:
                self._plans.move_to_end(shift_index)
            limit = plan.end_ns if until_ns is None else min(until_ns, plan.end_ns)
            while not plan.complete and plan.next_start_ns < limit:
                self._plan_next(plan)
            return plan

    def last_qa_before(self, t_ns: int) -> Production | None:
        """Most recent production whose QA was published at or before ``t_ns`` (None before any)."""
        k = shift_index_at(t_ns)
        for shift in (k, k - 1, k - 2):
            if shift < 0:
                break
            plan = self.shift_plan(shift, t_ns + 1)
            for p in reversed(plan.productions):
                if p.qa_ns <= t_ns:
                    return p
        return None

    # -- planning ---------------------------------------------------------------------------------
    def _plan_next(self, plan: ShiftPlan) -> None:
        if _close_if_no_start_fits(plan):
            return
        start = plan.next_start_ns
        n = len(plan.productions) + 1
        seed, line = self.cfg.seed, self.line
        pid = plan.shift_index * 1000 + n
        lot = draw_lot(seed, line, start, pid)
        ctx = ProductionContext(
            seed,
            line,
            pid,
            plan.shift_index,
            start,
            on_shift(seed, line, plan.shift_index, self.cfg.crew),
            tuple(plan.productions),
        )
        decision = self._decide(lot, ctx)
        out = outcome(lot, decision.params, outcome_key(seed, line, pid))
        end = start + round(out.cycle_time_s * NS_PER_S)
        qa = end + round(_between(QA_DELAY_S, random_unit(seed, line, "qa-delay", pid)) * NS_PER_S)
        prod = Production(line, pid, plan.shift_index, start, end, qa, lot, decision.params,
                          decision.set_by, decision.set_by_code, out)  # fmt: skip
        plan.productions.append(prod)
        changeover = _between(CHANGEOVER_S, random_unit(seed, line, "changeover", pid))
        plan.next_start_ns = prod.fault_end_ns + round(changeover * NS_PER_S)
        _close_if_no_start_fits(plan)

    def _decide(self, lot: Lot, ctx: ProductionContext) -> Decision:
        if self.policy is None or (self.policy_since_ns is not None and ctx.start_ns < self.policy_since_ns):
            return ctx.fallback(lot)
        try:
            decision = self.policy(lot, ctx)
        except Exception:
            log.exception(
                "policy failed for production %s on %s; craftsman takes over", ctx.production_id, ctx.line
            )
            self.refused += 1
            return ctx.fallback(lot)
        if not isinstance(decision, Decision) or not within_safety(decision.params):
            log.warning(
                "policy decision refused (outside safety ranges) for production %s on %s: %r; craftsman takes over",
                ctx.production_id,
                ctx.line,
                decision,
            )
            self.refused += 1
            return ctx.fallback(lot)
        if not 1 <= decision.set_by_code <= 65535:
            log.warning("policy set_by_code %r out of range; craftsman takes over", decision.set_by_code)
            self.refused += 1
            return ctx.fallback(lot)
        return decision


def _close_if_no_start_fits(plan: ShiftPlan) -> bool:
    """Mark ``plan`` complete as soon as its next start is known not to fit (too late, or too many).

    Decided when the previous production is planned (its changeover fixes the next start), never
    later: the machine goes to STANDBY at that production's end, so a live timeline must know it then.
    Deciding only once the next start was reached served HOLD during the changeover where history (the
    whole shift planned at once) has STANDBY (issue 14 #13). The rule reads only the plan so far.
    """
    late = plan.next_start_ns > plan.end_ns - LAST_START_BEFORE_END_S * NS_PER_S
    if late or len(plan.productions) + 1 > MAX_PER_SHIFT:
        plan.complete = True
    return plan.complete


def _between(bounds: tuple[float, float], u: float) -> float:
    lo, hi = bounds
    return lo + (hi - lo) * u
