"""The inference server's documented defaults are the code's (docs/configuration.md and the Settings
table of docs/inference.md), so a limit changed in one place cannot silently disagree with the other
(issue 14 asks for the limits as documented settings)."""

from __future__ import annotations

import re
from pathlib import Path

from inference_server.core.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEFAULTS = {name: f.default for name, f in Settings.model_fields.items()}
LIMITS = ("max_header_bytes", "max_headers", "max_url_bytes", "idle_timeout_s", "header_timeout_s",
          "body_timeout_s", "max_connections", "max_body_bytes")  # fmt: skip


def _same(documented: str, value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(documented) == float(value)
    return documented == str(value)


def _rows(path: Path) -> list[list[str]]:
    text = path.read_text()
    return [
        [c.strip() for c in ln.strip().strip("|").split("|")]
        for ln in text.splitlines()
        if ln.startswith("|")
    ]


def test_configuration_md_defaults_are_the_settings_defaults() -> None:
    checked = set()
    for row in _rows(DOCS / "configuration.md"):
        m = re.fullmatch(r"`INFERENCE_([A-Z0-9_]+)`", row[0])
        value = re.match(r"`([^`]*)`", row[1]) if len(row) > 1 else None
        if not m or not value or m[1].lower() not in DEFAULTS or value[1] == "unset":
            continue
        name = m[1].lower()
        assert _same(value[1], DEFAULTS[name]), f"configuration.md {name}: {value[1]} != {DEFAULTS[name]!r}"
        checked.add(name)
    assert set(LIMITS) <= checked, set(LIMITS) - checked


def test_inference_md_settings_table_lists_the_limits_with_the_code_defaults() -> None:
    checked = set()
    for row in _rows(DOCS / "inference.md"):
        names = re.findall(r"`([A-Z0-9_]+)`", row[0])
        values = [v.strip() for v in row[1].split(",")] if len(row) > 1 else []
        if not names or len(names) != len(values) or any(n.lower() not in LIMITS for n in names):
            continue
        for name, value in zip(names, values, strict=True):
            assert _same(value, DEFAULTS[name.lower()]), (
                f"inference.md {name}: {value} != {DEFAULTS[name.lower()]!r}"
            )
            checked.add(name.lower())
    assert checked == set(LIMITS), set(LIMITS) - checked
