"""Craftsmen who set the machine, the shift roster, and the policy interface.

A policy is anything that, given a lot and the production context, returns a Decision. The default
policy is the craftsman on shift; the control loop plugs in a model-backed policy that falls back to
``ctx.fallback()`` (the craftsman) when the model is unavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from factory_sim.config import NS_PER_S, ORIGIN_NS
from factory_sim.noise import derive_key, normal_at, uniform_at
from factory_sim.physics import Lot, Params, clip_to_safety, optimum, outcome_key

SHIFT_S = 8 * 3600
SHIFT_NS = SHIFT_S * NS_PER_S
SHIFT0_NS = ORIGIN_NS - 2 * 3600 * NS_PER_S
"""Start of shift 0: 2025-12-31T22:00Z (a night shift); shifts start 06:00, 14:00, 22:00 UTC."""
SLOT_NAMES = ("morning", "afternoon", "night")


@dataclass(frozen=True)
class Craftsman:
    """A machine operator: ``rule`` is how they reason, ``noise``/``bias`` how precisely they dial.

    rule "oracle": aims at p*(lot) (years of experience); "linear": first-order feel for each lot
    figure, blind to interactions and curvature; "thumb": looks at moisture only, else fixed defaults.
    """

    code: int
    name: str
    skill: str
    rule: str
    noise: tuple[float, float, float]  # std dev of (temperature, feed_rate, pressure) errors
    bias: tuple[float, float, float]

    def aim(self, lot: Lot) -> Params:
        """The setting this craftsman's reasoning arrives at, before hand error."""
        m, h, d = lot.moisture - 6.0, (lot.hardness - 65.0) / 10.0, (lot.density - 1.30) / 0.10
        if self.rule == "oracle":
            return optimum(lot)
        if self.rule == "linear":
            return Params(
                200.0 + 3.5 * m + 6.0 * h + 4.0 * d, 33.0 - 3.0 * h - 1.2 * m, 100.0 + 7.0 * h + 5.0 * d
            )
        if self.rule == "thumb":
            return Params(195.0 + 3.0 * m, 34.0, 100.0)
        raise ValueError(f"rule: unknown craftsman rule {self.rule!r}")

    def decide(self, lot: Lot, key: int) -> Params:
        """Setting dialled in for ``lot``: aim + bias + hand error (keyed), within the safety stops."""
        a = self.aim(lot).as_tuple()
        vals = [a[k] + self.bias[k] + self.noise[k] * normal_at(key, k) for k in range(3)]
        return clip_to_safety(Params(*vals))


CRAFTSMEN: tuple[Craftsman, ...] = (
    Craftsman(1, "anna", "expert", "oracle", (1.5, 0.6, 2.0), (0.0, 0.0, 0.0)),
    Craftsman(2, "bruno", "intermediate", "linear", (3.0, 1.2, 4.0), (2.0, 0.0, -3.0)),
    Craftsman(3, "carla", "intermediate", "linear", (4.0, 1.5, 5.0), (-3.0, 1.0, 0.0)),
    Craftsman(4, "dmitri", "novice", "thumb", (5.0, 2.0, 8.0), (4.0, 1.5, 0.0)),
    Craftsman(5, "emil", "novice", "thumb", (5.0, 2.5, 8.0), (-3.0, 2.0, 5.0)),
)
BY_CODE = {c.code: c for c in CRAFTSMEN}
BY_NAME = {c.name: c for c in CRAFTSMEN}


def roster(crew: tuple[str, ...] = ()) -> tuple[Craftsman, ...]:
    """The craftsmen of a line's crew (SimConfig.crew); () = every craftsman."""
    return tuple(BY_NAME[name] for name in crew) if crew else CRAFTSMEN


def shift_start_ns(shift_index: int) -> int:
    """Start of shift ``shift_index`` (shift 0 starts 2025-12-31T22:00Z)."""
    return SHIFT0_NS + shift_index * SHIFT_NS


def shift_index_at(t_ns: int) -> int:
    """Index of the shift in progress at ``t_ns``."""
    return (t_ns - SHIFT0_NS) // SHIFT_NS


def shift_slot(shift_index: int) -> int:
    """0 morning (06:00), 1 afternoon (14:00), 2 night (22:00)."""
    return (shift_index + 2) % 3


def on_shift(seed: int, line: str, shift_index: int, crew: tuple[str, ...] = ()) -> Craftsman:
    """Craftsman working ``shift_index`` on ``line``: a seeded crew order rotated by one each week.

    Three slots and five craftsmen (the default crew): every week each slot moves to the next
    craftsman, two are off. A crew of three works every shift slot in turn.
    """
    order = sorted(roster(crew), key=lambda c: derive_key(seed, line, "roster", c.code))
    week = (shift_index + 1) // 21  # 21 shifts per week; shift -1/0 are in week 0
    return order[(shift_slot(shift_index) + week) % len(order)]


@dataclass(frozen=True)
class Decision:
    """Parameters chosen for one production and who chose them (``set_by_code`` goes on the wire)."""

    params: Params
    set_by: str
    set_by_code: int


@dataclass(frozen=True)
class ProductionContext:
    """What a policy knows when a production starts."""

    seed: int
    line: str
    production_id: int
    shift_index: int
    start_ns: int
    craftsman: Craftsman
    history: tuple = field(default=(), repr=False)  # earlier Productions of this shift (oldest first)

    @property
    def decide_key(self) -> int:
        return derive_key(self.seed, self.line, "decide", self.production_id)

    def fallback(self, lot: Lot) -> Decision:
        """The craftsman on shift decides (used by policy=None and by model policies on failure)."""
        return craftsman_decision(self.craftsman, lot, self.decide_key)


Policy = Callable[[Lot, ProductionContext], Decision]


def craftsman_decision(craftsman: Craftsman, lot: Lot, key: int) -> Decision:
    """Decision of ``craftsman`` for ``lot`` with hand-error key ``key``."""
    return Decision(craftsman.decide(lot, key), craftsman.name, craftsman.code)


def craftsman_policy(lot: Lot, ctx: ProductionContext) -> Decision:
    """Default policy: the craftsman on shift decides."""
    return ctx.fallback(lot)


ORACLE_CODE = 99


def oracle_policy(lot: Lot, ctx: ProductionContext) -> Decision:
    """Upper bound: p*(lot) exactly (set_by_code 99, never used on the line by default)."""
    return Decision(optimum(lot), "oracle", ORACLE_CODE)


def evaluation_context(seed: int, index: int, craftsman: Craftsman = CRAFTSMEN[0]) -> ProductionContext:
    """Context for replaying held-out lot ``index`` outside the timeline (evaluate command)."""
    return ProductionContext(seed, "HELDOUT", index, 0, ORIGIN_NS, craftsman)


def evaluation_key(seed: int, index: int) -> int:
    """Outcome key for held-out lot ``index`` (same for every policy, so comparisons are paired)."""
    return outcome_key(seed, "HELDOUT", index)


def random_unit(seed: int, *parts: int | str) -> float:
    """Keyed uniform in [0, 1) (used by the schedule for changeover and QA delays)."""
    return uniform_at(derive_key(seed, *parts), 0)
