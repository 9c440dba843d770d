"""The bucket layout module against its documentation, and its non-raw key builders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factory_core import layout

DOC = Path(__file__).resolve().parents[2] / "docs" / "data-layout.md"


def test_every_prefix_of_the_layout_is_documented_and_nothing_else() -> None:
    text = DOC.read_text()
    block = text.split("## Bucket layout", 1)[1].split("```")[1]
    documented = {line.split("/", 1)[0] + "/" for line in block.strip().splitlines()}
    assert documented == set(layout.PREFIXES.values())
    table = {m.group(1) for m in re.finditer(r"^\| `([a-z]+/)` \|", text, re.M)}
    assert table == set(layout.PREFIXES.values())


def test_prefixes_are_disjoint_top_level_folders() -> None:
    values = list(layout.PREFIXES.values())
    assert len(set(values)) == len(values)
    assert all(v.endswith("/") and v.count("/") == 1 for v in values)


def test_model_keys_live_under_models_and_versions_are_checked() -> None:
    version = "v00003-0123456789ab"
    assert layout.version_key(version, "metadata.json") == f"models/versions/{version}/metadata.json"
    assert layout.parse_key(layout.version_key(version, "quality.ubj")).kind == "models"
    assert layout.parse_key(layout.POINTER_KEY).kind == "models"
    assert layout.is_version(version) and not layout.is_version("v3-abc")
    with pytest.raises(ValueError, match="vNNNNN-<12 hex digits>"):
        layout.check_version("../../etc")


def test_decision_and_quarantine_keys_are_deterministic() -> None:
    body = b'{"request_id":"r1"}\n'
    key = layout.decision_key("L1", "2026-03-02", "node1", "2026-03-02T10:11:12.5+00:00", body)
    assert key == layout.decision_key("L1", "2026-03-02", "node1", "2026-03-02T10:11:12.5+00:00", body)
    assert key.startswith(layout.decisions_date_prefix("L1", "2026-03-02") + "node1-101112-")
    assert key.endswith(".jsonl.zst")
    raw = "raw/line=L1/date=2026-03-02/hour=00/x.fsr"
    assert layout.quarantine_key(raw) == "quarantine/" + raw
    assert layout.quarantine_reason_key(raw) == "quarantine/" + raw + ".reason.json"
