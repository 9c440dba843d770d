"""Shared machinery for the collector tests (real sensor server thread, conservation checker).

Why in a test module: helpers live beside the tests that use them; the few tests here check the
checker itself, so a broken checker cannot make the durability tests pass vacuously.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factory_core.rawformat import (
    ChannelBlock,
    GapRecord,
    RawBatch,
    encode_batch,
    encode_gaps,
)
from factory_core.store import LocalDirStore
from tests.support.collector import T0_NS, assert_conserved, read_coverage

# ------------------------------------------------------------------------- tests of the checker itself


def _block(cid: int, first: int, n: int) -> ChannelBlock:
    t = np.arange(first, first + n, dtype=np.int64) * 100_000_000 + T0_NS
    return ChannelBlock(cid, f"c{cid}", "u", 10.0, first, t, np.zeros(n))


def _store_with(
    tmp_path: Path, blocks: list[tuple[int, int, int]], gaps: list[tuple[int, int, int]]
) -> LocalDirStore:
    from factory_core.layout import batch_key, gap_key

    store = LocalDirStore(tmp_path)
    for i, (cid, first, n) in enumerate(blocks):
        batch = RawBatch("L1", f"g{i}", (_block(cid, first, n),))
        store.put(batch_key(batch), encode_batch(batch))
    if gaps:
        recs = [
            GapRecord("L1", c, f"c{c}", a, b, T0_NS, T0_NS, T0_NS, "retention_expired") for c, a, b in gaps
        ]
        store.put(gap_key("L1", recs), encode_gaps("L1", recs))
    return store


def test_checker_accepts_exact_cover(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 10), (1, 15, 5)], [(1, 10, 15)])
    assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_hole(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 10), (1, 15, 5)], [])
    with pytest.raises(AssertionError, match="holes"):
        assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_gap_overlapping_data(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 0, 20)], [(1, 5, 8)])
    with pytest.raises(AssertionError, match="overlaps"):
        assert_conserved(read_coverage(store), {1: (0, 20)})


def test_checker_rejects_wrong_start_and_short_end(tmp_path: Path) -> None:
    store = _store_with(tmp_path, [(1, 3, 10)], [])
    with pytest.raises(AssertionError, match="starts at"):
        assert_conserved(read_coverage(store), {1: (0, 13)})
    with pytest.raises(AssertionError, match="ends at"):
        assert_conserved(read_coverage(store), {1: (3, 20)})
