"""The collector's documented defaults are the code's defaults (issue 14 #14).

docs/configuration.md once said `max_samples` was 20000 per request while the code (and
docs/edge-collector.md) had 6000 per channel; protocol.md put the field per channel in the READ table
although the wire carries one u32 after the channels. Both tables are read here and compared with
`CollectorConfig`, and the protocol table's layout with the codec.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from edge_collector.config import CollectorConfig, env_name
from factory_core.protocol import ReadRequest, encode_message
from factory_core.protocol.framer import HEADER_SIZE

DOCS = Path(__file__).resolve().parents[2] / "docs"
DEFAULTS = {f.name: getattr(CollectorConfig(), f.name) for f in dataclasses.fields(CollectorConfig)}


def _rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def _ticked(cell: str) -> list[str]:
    """The backticked values of a cell ("`a` / `b`" -> ["a", "b"]); [] when any part is not one."""
    parts = [p.strip() for p in cell.split(" / ")]
    found = [re.fullmatch(r"`([^`]*)`", p) for p in parts]
    return [m[1] for m in found] if all(found) else []


def _same(documented: str, value: object) -> bool:
    if isinstance(value, str):
        return documented == value
    return float(documented) == float(value)  # "60" documents 60.0


def test_configuration_md_documents_every_collector_default_as_in_the_code() -> None:
    rows = {
        r[0].strip("`"): r
        for r in _rows((DOCS / "configuration.md").read_text())
        if r[0].startswith("`EDGE_")
    }
    for name, default in DEFAULTS.items():
        row = rows.get(env_name(name))
        assert row is not None, f"docs/configuration.md: no row for {env_name(name)}"
        assert row[1] == f"`{name}`", row
        assert ast.literal_eval(row[2].strip("`")) == default, (
            f"{name}: documented {row[2]}, code {default!r}"
        )
    assert "per channel" in rows["EDGE_MAX_SAMPLES"][3]


def test_edge_collector_md_defaults_match_the_code() -> None:
    text = (DOCS / "edge-collector.md").read_text()
    checked = set()
    for row in _rows(text):
        if len(row) != 4:
            continue
        keys, values = _ticked(row[0]), _ticked(row[2])
        if not keys or len(keys) != len(values) or any(k not in DEFAULTS for k in keys):
            continue
        for key, documented in zip(keys, values, strict=True):
            assert _same(documented, DEFAULTS[key]), (
                f"docs/edge-collector.md {key}: {documented} != {DEFAULTS[key]!r}"
            )
            checked.add(key)
    assert {
        "max_samples",
        "group_size",
        "poll_interval_s",
        "upload_concurrency",
        "shutdown_timeout_s",
    } <= checked
    max_samples_row = next(r for r in _rows(text) if r[0] == "`max_samples`")
    assert "per channel" in max_samples_row[3]


def test_protocol_md_read_request_has_one_max_samples_after_the_channels() -> None:
    text = (DOCS / "protocol.md").read_text()
    start = text.index("One request reads several channels")
    table = text[start : text.index("Response payload", start)]
    layout = [r[1] or r[0] for r in _rows(table)[2:]]  # field, or the "per channel:" / "after ..." marks
    assert layout == [
        "count",
        "per channel:",
        "channel_id",
        "since_seq",
        "after the channels:",
        "max_samples",
    ]
    assert "ONE value for the request" in table and "**each** channel" in table
    # The codec agrees: 2 (count) + n x (2 + 8) + 4 (one max_samples) bytes.
    payload = encode_message(ReadRequest(((1, 0), (2, 5), (3, 9)), 100), 1)[HEADER_SIZE:-4]
    assert len(payload) == 2 + 3 * 10 + 4 and payload[-4:] == (100).to_bytes(4, "big")
