"""The crew roster format (factory master data) and the lot id rule shared by the simulator and Dagster."""

from __future__ import annotations

import pytest

from factory_core.crew import CrewMember, RosterError, encode_roster, parse_roster
from factory_core.machine import lot_id
from factory_sim.config import ORIGIN_NS, SimConfig
from factory_sim.roster import crew_roster
from factory_sim.schedule import LineTimeline


def test_the_simulated_factory_s_roster_round_trips_byte_for_byte() -> None:
    data = encode_roster(crew_roster())
    members = parse_roster(data)
    assert [(m.code, m.name) for m in members][:2] == [(1, "anna"), (2, "bruno")]
    assert members[0].set_by == "craftsman:01"
    assert encode_roster(reversed(members)) == data  # ordered by code: the same crew, the same bytes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"id,name\n1,anna\n", "header must be code,name,skill"),
        (b"code,name,skill\n1,anna\n", "roster row 2: expected 3 fields"),
        (b"code,name,skill\nx,anna,\n", "roster row 2: code 'x' must be an integer"),
        (b"code,name,skill\n0,anna,\n", "roster row 2: code 0 must be in 1..999"),
        (b"code,name,skill\n1001,model,\n", "(codes from 1000 on mean a model version)"),
        (b"code,name,skill\n1,,\n", "roster row 2: name '' must be 1-64 characters"),
        (b"code,name,skill\n1,anna,\n2,ANNA,\n", "roster row 3: name 'ANNA' is already used on row 2"),
        (b"code,name,skill\n1,anna,\n\n1,bob,\n", "roster row 4: code 1 is already used on row 2"),
        (b"\xff\xfe", "roster: not UTF-8"),
    ],
)
def test_a_roster_breaking_a_rule_is_refused_naming_row_field_and_rule(text: bytes, message: str) -> None:
    with pytest.raises(RosterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_roster(text)


def test_blank_lines_and_padding_are_tolerated() -> None:
    assert parse_roster(b"code,name,skill\n\n 3 , carla , intermediate \n") == [
        CrewMember(3, "carla", "intermediate")
    ]


def test_the_lot_id_rule_is_the_one_the_simulator_draws_lots_with() -> None:
    timeline = LineTimeline(SimConfig(lines=("L1",)), "L1")
    productions = timeline.productions_between(ORIGIN_NS, ORIGIN_NS + 86_400 * 10**9)
    assert productions
    assert all(p.lot.lot_id == lot_id(p.line, p.production_id) for p in productions)
