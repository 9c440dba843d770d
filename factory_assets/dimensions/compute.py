"""Rows of the dimension tables (pure: the roster's members, a day's production table)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from factory_core.crew import CrewMember
from factory_core.machine import LOT_COLUMN, lot_id


def crew_rows(members: list[CrewMember]) -> list[dict[str, Any]]:
    """One `crew` row per craftsman of the roster."""
    return [{"code": m.code, "set_by": m.set_by, "name": m.name, "skill": m.skill} for m in members]


def lot_rows(line: str, date: str, frame: pl.DataFrame) -> list[dict[str, Any]]:
    """One `lots` row per production of a line-day: the lot it consumed and that lot's figures."""
    day = dt.date.fromisoformat(date)
    figures = list(LOT_COLUMN.values())
    return [
        {"lot_id": lot_id(line, r["production_id"]), "line": line, "production_id": int(r["production_id"]),
         "date": day, **{c: r[c] for c in figures}}
        for r in frame.select("production_id", *figures).iter_rows(named=True)
    ]  # fmt: skip
