"""The crew roster: who may set the machine, by the code the machine records (`set_by`), and their names.

Why here: the crew is the factory's master data, not sensor data. The machine records only a craftsman's
code on its `set_by` channel (1..99); the factory keeps the roster that says who code 1 is. The simulated
factory writes it to the bucket (`factory-sim roster`, layout.CREW_KEY) and Dagster loads it into the
warehouse's `crew` table (factory_assets/dimensions/), so the data team's breakdowns read "anna", not
"craftsman:01". Writer and reader share this one definition of the format: a CSV with a header row,
`code,name,skill`, one craftsman per line, UTF-8.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from factory_core.machine import MODEL_CODE_BASE, set_by_label

COLUMNS: tuple[str, ...] = ("code", "name", "skill")
"""The roster's columns, in file order."""
_NAME_RE = re.compile(r"^[^\x00-\x1f,]{1,64}$")


class RosterError(ValueError):
    """The roster file breaks a rule; the message names the row, the field and the rule."""


@dataclass(frozen=True)
class CrewMember:
    """One craftsman: the code the machine records, the name people use, and their seniority."""

    code: int
    name: str
    skill: str = ""

    @property
    def set_by(self) -> str:
        """The production table's `set_by` label of this craftsman (craftsman:NN): the join key."""
        return set_by_label(self.code)


def encode_roster(members: Iterable[CrewMember]) -> bytes:
    """The roster file's bytes, ordered by code (deterministic: the same crew gives the same bytes)."""
    members = sorted(members, key=lambda m: m.code)
    check_roster(members)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for m in members:
        writer.writerow((m.code, m.name, m.skill))
    return out.getvalue().encode()


def parse_roster(data: bytes) -> list[CrewMember]:
    """The roster's members, ordered by code; RosterError names the row, field and rule it breaks."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RosterError(f"roster: not UTF-8 text ({exc})") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        got = rows[0] if rows else []
        raise RosterError(f"roster: header must be {','.join(COLUMNS)}, got {','.join(got)!r}")
    members: list[CrewMember] = []
    row_numbers: list[int] = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue  # blank lines are allowed
        if len(row) != len(COLUMNS):
            raise RosterError(
                f"roster row {n}: expected {len(COLUMNS)} fields ({','.join(COLUMNS)}), got {len(row)}"
            )
        code, name, skill = (c.strip() for c in row)
        if not re.fullmatch(r"\d{1,4}", code):
            raise RosterError(f"roster row {n}: code {code!r} must be an integer")
        members.append(CrewMember(int(code), name, skill))
        row_numbers.append(n)
    check_roster(members, row_numbers)
    return sorted(members, key=lambda m: m.code)


def check_roster(members: list[CrewMember], row_numbers: list[int] | None = None) -> None:
    """Codes are craftsman codes (1..MODEL_CODE_BASE-1) and unique; names are 1-64 printable chars and
    unique (a name is how people tell craftsmen apart); the skill has no control characters.
    `row_numbers`: each member's row in the file (for the message), else its position."""
    seen_codes: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    numbers = row_numbers or list(range(1, len(members) + 1))
    for n, m in zip(numbers, members, strict=True):
        if not 1 <= m.code < MODEL_CODE_BASE:
            raise RosterError(
                f"roster row {n}: code {m.code} must be in 1..{MODEL_CODE_BASE - 1} "
                f"(codes from {MODEL_CODE_BASE} on mean a model version)"
            )
        if not _NAME_RE.match(m.name):
            raise RosterError(f"roster row {n}: name {m.name!r} must be 1-64 characters, no comma or control")
        if m.skill and not _NAME_RE.match(m.skill):
            raise RosterError(
                f"roster row {n}: skill {m.skill!r} must be at most 64 characters, no comma or control"
            )
        if m.code in seen_codes:
            raise RosterError(f"roster row {n}: code {m.code} is already used on row {seen_codes[m.code]}")
        if m.name.casefold() in seen_names:
            raise RosterError(
                f"roster row {n}: name {m.name!r} is already used on row {seen_names[m.name.casefold()]}"
            )
        seen_codes[m.code] = n
        seen_names[m.name.casefold()] = n
