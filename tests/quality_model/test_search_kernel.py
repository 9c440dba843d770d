"""The compiled search (inference_server/kernels.py) must give the answers of the reference search
(numpy, scipy's cKDTree and XGBoost's own predictions) on every lot, and its neighbour index must be
exact."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.spatial import cKDTree

from factory_sim import physics
from factory_sim.config import NS_PER_S, ORIGIN_NS
from quality_model import training as trainer
from quality_model.search import kernels
from quality_model.search.neighbours import build_lot_index
from quality_model.search.recommender import NoFeasibleSetting
from tests.support.inference import trained

QUARTER_NS = 91 * 24 * 3600 * NS_PER_S


@pytest.fixture(scope="module")
def model() -> trainer.TrainedModel:
    return trained(7.0)


def _lots() -> list[tuple[float, float, float, float]]:
    """Held-out lots now and a quarter ahead (drift), plus uniform draws over the API's ranges that
    reach far outside history (refusals included)."""
    out = []
    for i in range(150):
        for at in (ORIGIN_NS + i * 3600 * NS_PER_S, ORIGIN_NS + QUARTER_NS + i * 3600 * NS_PER_S):
            lot = physics.heldout_lot(7, i, at)
            out.append((lot.moisture, lot.hardness, lot.density, lot.impurity))
    rng = np.random.default_rng(5)
    for _ in range(300):
        out.append((rng.uniform(2, 12), rng.uniform(45, 90), rng.uniform(1.15, 1.5), rng.uniform(0.0, 2.5)))
    for _ in range(60):  # the supplier's physical extremes: the prior's leverage refuses these
        out.append((rng.uniform(1, 14), rng.uniform(35, 95), rng.uniform(1.05, 1.6), rng.uniform(2.5, 4.0)))
    return out


def test_compiled_search_equals_reference_search(model: trainer.TrainedModel) -> None:
    rec = model.recommender()
    assert rec.bounded_cost, "the trained boosters must compile"
    refused = 0
    for lot in _lots():
        res = rec.search_reference(np.asarray(lot))
        try:
            got = rec.recommend(lot)
        except NoFeasibleSetting as exc:
            too_far = res.lot_distance > rec.lot_limit  # out_of_support by the nearest training lot
            reference_refuses = res.n_feasible == 0 or exc.reason == "low_predicted_quality" or too_far
            assert reference_refuses, (lot, exc.reason)
            refused += 1
            continue
        assert len(res.candidates) == got.candidates, lot
        assert list(got.parameters.values()) == [round(float(v), 3) for v in res.candidates[res.best]], lot
        assert got.predicted_quality == pytest.approx(res.expected[res.best], abs=1e-3)
        assert got.predicted_fault_risk == pytest.approx(res.fault_risk[res.best], abs=1e-5)
        assert got.lot_distance == pytest.approx(res.lot_distance / rec.lot_q99, rel=1e-9)
        assert got.leverage == pytest.approx(res.leverage / rec.lev_q999, rel=1e-6)
        assert got.quality_uncertainty == pytest.approx(res.uncertainty, rel=1e-9, nan_ok=True)
    assert 0 < refused < 300, refused  # both branches exercised


def test_search_kernel_is_deterministic_and_leaves_inputs_alone(model: trainer.TrainedModel) -> None:
    rec = model.recommender()
    args = rec._kernel_args
    assert args is not None
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    lot = np.array([6.2, 64.0, 1.31, 0.55])
    first = kernels.search_arrays(lot, *args)
    second = kernels.search_arrays(lot, *args)
    for a, b in zip(first[:2], second[:2], strict=True):
        np.testing.assert_array_equal(a, b)
    assert first[2:4] == second[2:4]
    np.testing.assert_array_equal(first[4], second[4])  # lot distance, leverage, uncertainty
    for a, b in zip(args, before, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("leaf_rows", [1, 7, 64, 5000])
def test_lot_index_returns_the_exact_nearest_rows(leaf_rows: int) -> None:
    rng = np.random.default_rng(leaf_rows)
    # clustered, drifting rows like the history (not uniform), queries inside and far outside
    centres = rng.normal(scale=2.0, size=(6, 4))
    points = np.vstack([c + rng.normal(scale=0.4, size=(500, 4)) for c in centres])
    index = build_lot_index(points, leaf_rows)
    assert sorted(index.order.tolist()) == list(range(len(points)))
    np.testing.assert_array_equal(index.columns, points[index.order].T)
    assert (index.bucket_hi - index.bucket_lo).max() <= leaf_rows
    tree = cKDTree(points)
    queries = np.vstack([points[:50] + 0.01, rng.normal(scale=6.0, size=(100, 4))])
    for k in (1, 12, 96):
        for q in queries:
            pos, d2 = kernels.nearest_lots(
                q, index.columns, index.order, index.bucket_lo, index.bucket_hi, index.box_lo,
                index.box_hi, k, k,
            )  # fmt: skip
            dist, want = tree.query(q, k=k)
            np.testing.assert_array_equal(index.order[pos], np.atleast_1d(want))
            np.testing.assert_allclose(np.sqrt(d2), np.atleast_1d(dist), rtol=1e-12)
            # only the first few in order, the rest as a set (what the search asks for)
            head, d2_head = kernels.nearest_lots(
                q, index.columns, index.order, index.bucket_lo, index.bucket_hi, index.box_lo,
                index.box_hi, k, 3,
            )  # fmt: skip
            np.testing.assert_array_equal(index.order[head[:3]], np.atleast_1d(want)[:3])
            assert sorted(index.order[head]) == sorted(np.atleast_1d(want))
            np.testing.assert_allclose(np.sort(d2_head), d2, rtol=1e-12)


def test_lot_index_orders_equal_distances_by_original_row() -> None:
    points = np.zeros((40, 4))
    points[::2] = 1.0  # 20 rows at distance 0 from the origin, 20 at distance 2
    index = build_lot_index(points, 4)
    pos, d2 = kernels.nearest_lots(
        np.zeros(4), index.columns, index.order, index.bucket_lo, index.bucket_hi, index.box_lo,
        index.box_hi, 5, 5,
    )  # fmt: skip
    np.testing.assert_array_equal(d2, 0.0)
    assert (index.order[pos] % 2 == 1).all()
    assert list(index.order[pos]) == sorted(index.order[pos])


def test_lot_index_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-empty n x d"):
        build_lot_index(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="leaf_rows"):
        build_lot_index(np.zeros((3, 4)), 0)


def test_missing_lot_figures_are_refused(model: trainer.TrainedModel) -> None:
    """A NaN or infinite lot figure (only reachable from Python: the API refuses it) cannot be placed
    in history: the operator decides, on both the compiled and the reference path."""
    rec = model.recommender()
    reference = copy.copy(rec)
    reference._kernel_args = None
    for engine in (rec, reference):
        for lot in ((float("nan"), 65.0, 1.3, 0.5), (6.0, 65.0, float("inf"), 0.5)):
            with pytest.raises(NoFeasibleSetting, match="not finite"):
                engine.recommend(lot)


def test_compile_kernels_builds_a_working_synthetic_search(capsys: pytest.CaptureFixture[str]) -> None:
    """What image builds run (`inference-server compile`): a synthetic model with the real feature
    schema compiles every kernel signature a trained model uses, without pandas or training data."""
    from inference_server import cli
    from quality_model.search.recommender import compile_kernels

    rec = compile_kernels()
    assert rec.bounded_cost
    # the same leaf-mask widths as a trained model's boosters (64 and 16 bits): the same signatures
    widths = [tables.tables.dtype for tables in rec.forest.boosters]
    assert widths == [tables.tables.dtype for tables in trained(7.0).recommender().forest.boosters]
    assert widths == [np.uint64, np.uint16]
    out = rec.recommend((6.0, 65.0, 1.3, 0.5))
    assert set(out.parameters) == {"temperature", "feed_rate", "pressure"}
    assert cli.main(["compile"]) == 0
    assert '"ok": true' in capsys.readouterr().out
