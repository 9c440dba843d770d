"""A line's crew is configurable (the skill mix the backtest studies) and validated at construction."""

from __future__ import annotations

import pytest

from factory_sim.config import SimConfig
from factory_sim.craftsmen import CRAFTSMEN, on_shift, roster
from factory_sim.schedule import LineTimeline


def test_default_crew_is_all_five_craftsmen_on_rotation() -> None:
    assert roster() == CRAFTSMEN
    seen = {on_shift(42, "L1", k).name for k in range(21 * 5)}
    assert seen == {c.name for c in CRAFTSMEN}


def test_a_configured_crew_alone_works_the_line() -> None:
    cfg = SimConfig(seed=7, lines=("KX2",), crew=("anna", "dmitri", "emil"))
    timeline = LineTimeline(cfg, "KX2")
    day = 86_400 * 10**9
    prods = timeline.productions_between(
        timeline.shift_plan(0).start_ns, timeline.shift_plan(0).start_ns + 14 * day
    )
    assert {p.set_by for p in prods} == {"anna", "dmitri", "emil"}


@pytest.mark.parametrize("crew", [("zoe",), ("anna", "anna"), ("Anna",)])
def test_unknown_or_repeated_craftsmen_are_refused_naming_the_field(crew: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match=r"^crew: names must be distinct craftsmen of"):
        SimConfig(crew=crew)
