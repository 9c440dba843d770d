"""Markdown tables for UI metadata (no pandas/tabulate dependency on this path)."""

from __future__ import annotations

from typing import Any

import polars as pl


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def md_table(frame: pl.DataFrame) -> str:
    """A GitHub-style Markdown table of `frame`."""
    if frame.height == 0:
        return "_no rows_"
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([head, rule, *rows])
