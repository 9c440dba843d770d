"""Constrained search for the best machine setting of one lot, scored by the forward models.

Why this shape: a request must cost tens of microseconds of CPU, so the candidate set is small and
bounded (MAX_CANDIDATES) and the whole search is ONE call of a compiled kernel (quality_model/search/
kernels.py, over the boosters' table form from forest.py); ``search_reference`` is the same search in
numpy with XGBoost's own predictions, used when the boosters cannot be compiled and as the kernel's
test oracle. Candidates
come from two model-free sources learned at training time: an outcome-weighted "best operators'
policy" prior (a quadratic map lot -> setting) with a lattice around it, and the settings used for the
most similar historical lots. Feasible = inside the hard safety limits, predicted fault
risk under the threshold, and inside the support of history (nearest-neighbour distance of the
candidate (lot, setting) to historical rows, in normalized space, under a threshold), so the model is
never asked to extrapolate into settings nobody ever tried. The support distance is measured to the
SUPPORT_NEIGHBOURS rows whose lots are closest (an upper bound of the true nearest-neighbour distance,
so the approximation can only refuse, never admit, a point).

Choice: tree ensembles are piecewise constant and noisy near the optimum, so the raw argmax chases
noise. Among feasible candidates whose predicted expected quality is within ``indifference_margin`` of
the best, the one closest to the prior wins (a trust region around what worked in history; lattice
points at equal distance go to the higher prediction); the model moves the setting only when it
predicts a clear gain, and vetoes risky or unsupported settings.

Prior first (a model whose search section says ``"selection": "prior_first"``, what training writes
since 2026-12-06): the feasible candidate closest to the prior wins outright; the prior itself needs no
support check and is vetoed for fault risk only where the trees know such lots. Every answer carries
the lot's distance to history, the prior's leverage and the quality model's local error; a lot beyond
the leverage limit is refused as ``out_of_support``, a setting expected to be poor where history backs
the expectation as ``low_predicted_quality`` (docs/model.md gives the measurements behind each rule). A lot
whose nearest training lot lies beyond ``lot_distance_refuse_ratio`` x history's own q99 distance is refused
as ``out_of_support`` too: there the prior's extrapolation was measured to go wrong. The trees' objections
need evidence: a fault veto of the prior stands only where one of the past productions nearest to the lot
and the prior's setting faulted, a low prediction refuses only where those nearest to the chosen setting
realized poor quality too (the artefact's ``support_faulted`` and ``support_quality``); elsewhere the trees
were measured to blur other settings' outcomes over the prior's, and the prior is answered.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Any, NamedTuple

import numpy as np
import xgboost as xgb
from scipy.spatial import cKDTree

from quality_model.features import FEATURES, LOT_FEATURES, PARAM_BOUNDS, PARAM_FEATURES
from quality_model.search import kernels
from quality_model.search.forest import CompiledForest, compile_boosters
from quality_model.search.neighbours import build_lot_index

MAX_CANDIDATES = 512
LATTICE_STEPS = (-1.5, 0.0, 1.5)  # in units of the prior's residual std, per parameter
PRIOR_STEP = LATTICE_STEPS.index(0.0)
# Settings of the most similar historical lots become candidates. 8 (formerly 12, and before that 64 of
# 116 candidates with a global grid) measured as good or better vs the expert on held-out and
# season-drifted lots, with less scoring work per request (docs/inference.md, Benchmark).
NEIGHBOURS = 8
# Support distance is measured to the rows of the most similar historical lots. 48 (formerly 96; the
# trainer calibrates the threshold with the same count) gave equal or better held-out and drifted-lot
# quality against the expert and the same fallbacks, at three quarters of the search cost (docs/inference.md).
SUPPORT_NEIGHBOURS = 48
CHECK_ROWS = 256  # rows on which the compiled forest must agree with the boosters before it is used
N_LOT = len(LOT_FEATURES)
_P0, _P1, _P2 = PARAM_FEATURES  # the kernel returns exactly these three, in this order


class NoFeasibleSetting(Exception):
    """No setting the model would stand behind: the operator decides. ``reason`` is machine-readable:
    ``out_of_support`` (the lot lies outside the history the model learned from),
    ``low_predicted_quality`` (the best setting found is expected to be poor), or
    ``no_feasible_setting`` (no candidate passed the fault-risk and support checks)."""

    def __init__(self, message: str, reason: str = "no_feasible_setting") -> None:
        super().__init__(message)
        self.reason = reason


class Recommendation(NamedTuple):
    """Best feasible setting and what the forward models predict for it (a NamedTuple: immutable, and
    built per request in a fraction of a frozen dataclass's time), with what the model knows of the lot:
    how far it lies from the training data and how uncertain the predicted quality is."""

    parameters: dict[str, float]
    predicted_quality: float  # expected QA score (no-fault quality x (1 - fault risk))
    predicted_fault_risk: float
    candidates: int
    lot_distance: float = (
        math.nan
    )  # to the nearest training lot, in units of history's own q99 (<= 1: typical)
    leverage: float = math.nan  # the prior's leverage, in units of history's q99.9 (refused above the limit)
    quality_uncertainty: float = math.nan  # RMS error of the quality model on the nearest past productions


class SearchResult(NamedTuple):
    """The reference path's full answer (what the kernel computes, in numpy + XGBoost)."""

    candidates: np.ndarray
    fault_risk: np.ndarray
    expected: np.ndarray  # -inf: infeasible or not checked
    n_feasible: int
    best: int  # -1: nothing feasible, -3: out of the prior's support
    quality: np.ndarray  # no-fault quality per candidate
    lot_distance: float  # raw normalized distance to the nearest support lot
    leverage: float  # raw d' C^-1 d
    uncertainty: float
    setting_distance: float  # the chosen (lot, setting)'s support distance (NaN: nothing chosen)


def lot_design(lots: np.ndarray) -> np.ndarray:
    """Quadratic design matrix of centred lot figures (n x 15) used by the prior policy."""
    m = lots[:, 0] - 6.0
    h = (lots[:, 1] - 65.0) / 10.0
    d = (lots[:, 2] - 1.30) / 0.10
    i = lots[:, 3]
    cols = [np.ones_like(m), m, h, d, i, m * m, h * h, d * d, i * i, m * h, m * d, m * i, h * d, h * i, d * i]
    return np.column_stack(cols)


class Recommender:
    """Immutable search state built from a verified artefact (boosters + metadata)."""

    def __init__(self, quality: xgb.Booster, fault: xgb.Booster, meta: dict[str, Any]) -> None:
        search = meta["search"]
        self.quality = quality
        self.fault = fault
        self.meta = meta
        self.mean = np.asarray(search["feature_mean"], dtype=np.float64)
        self.scale = np.asarray(search["feature_scale"], dtype=np.float64)
        support = np.asarray(search["support"], dtype=np.float64)
        if support.ndim != 2 or support.shape[1] != len(FEATURES) or len(support) == 0:
            raise ValueError(
                f"search.support: expected an n x {len(FEATURES)} array, got shape {support.shape}"
            )
        norm = (support - self.mean) / self.scale
        self.support_norm = norm
        self.support_par_sq = (norm[:, N_LOT:] ** 2).sum(axis=1)
        # contiguous per-part copies: the per-request gathers and arithmetic then skip slicing
        self.support_lot_norm = np.ascontiguousarray(norm[:, :N_LOT])
        self.support_par_norm = np.ascontiguousarray(norm[:, N_LOT:])
        self.lot_mean, self.lot_scale = self.mean[:N_LOT].copy(), self.scale[:N_LOT].copy()
        self.par_mean, self.par_scale = self.mean[N_LOT:].copy(), self.scale[N_LOT:].copy()
        self.lot_tree = cKDTree(norm[:, :N_LOT])
        self.support_params = support[:, N_LOT:]
        self.support_threshold = float(search["support_threshold"])
        self.fault_threshold = float(search["fault_risk_threshold"])
        self.margin = float(search["indifference_margin"])
        self.prior_first = search.get("selection") == "prior_first"
        self.tree_lot_threshold = float(search.get("tree_lot_threshold", math.inf))
        self.lot_q99 = float(search.get("lot_distance_q99", 1.0))
        self.lev_inv = np.asarray(search.get("leverage_inv", np.zeros((15, 15))), dtype=np.float64)
        self.lev_q999 = float(search.get("leverage_q999", 1.0))
        self.lev_limit = float(search.get("leverage_refuse_ratio", math.inf)) * self.lev_q999
        self.lot_limit = float(search.get("lot_distance_refuse_ratio", math.inf)) * self.lot_q99
        self.low_quality = float(search.get("low_quality_threshold", -math.inf))
        self.uncertainty_k = float(search.get("uncertainty_k", 0.0))
        self.u_k = int(search.get("uncertainty_neighbours", 8))
        resid = search.get("support_residuals")
        self.support_resid = (
            np.full(len(support), np.nan)
            if resid is None
            else np.array([math.nan if v is None else float(v) for v in resid], dtype=np.float64)
        )
        if self.lev_inv.shape != (15, 15) or self.support_resid.shape != (len(support),):
            raise ValueError("search: leverage_inv must be 15 x 15 and support_residuals one per support row")
        # what each support row realized (QA quality, a fault as 0) and whether it faulted: the evidence a
        # tree veto or low prediction must agree with (absent in artefacts before 2026-12-06: trees alone)
        realized, faulted = search.get("support_quality"), search.get("support_faulted")
        self.support_realized = None if realized is None else np.asarray(realized, dtype=np.float64)
        self.support_faulted = None if faulted is None else np.asarray(faulted, dtype=bool)
        for name, arr in (
            ("support_quality", self.support_realized),
            ("support_faulted", self.support_faulted),
        ):
            if arr is not None and arr.shape != (len(support),):
                raise ValueError(f"search: {name} must hold one value per support row, got shape {arr.shape}")
        self.prior_coef = np.asarray(search["prior_coef"], dtype=np.float64)
        self.prior_std = np.asarray(search["prior_resid_std"], dtype=np.float64)
        self.safe_lo = np.array([PARAM_BOUNDS[p][0] for p in PARAM_FEATURES])
        self.safe_hi = np.array([PARAM_BOUNDS[p][1] for p in PARAM_FEATURES])
        # the lattice around the prior, without its centre (that is the prior itself, candidate 0): as
        # offsets (the reference path) and as step indices per parameter (the kernel)
        grid = [p for p in itertools.product(range(len(LATTICE_STEPS)), repeat=3) if p != (PRIOR_STEP,) * 3]
        self.lattice_steps = np.array(grid, dtype=np.int64)
        self.step_offsets = np.array(LATTICE_STEPS, dtype=np.float64)[:, None] * self.prior_std[None, :]
        self.lattice = self.step_offsets[self.lattice_steps, np.arange(3)]
        self.k_neighbours = min(NEIGHBOURS, len(support))
        self.k_support = min(SUPPORT_NEIGHBOURS, len(support))
        total = 1 + len(self.lattice) + self.k_neighbours
        if total > MAX_CANDIDATES:
            raise ValueError(f"candidate set {total} exceeds MAX_CANDIDATES {MAX_CANDIDATES}")
        for booster in (quality, fault):
            booster.set_param({"nthread": 1})  # one request = one core; concurrency comes from requests
        self.forest: CompiledForest | None = compile_boosters(
            [quality, fault], len(FEATURES), self._check_rows(support)
        )
        self._kernel_args: tuple[Any, ...] | None = None
        if self.forest is not None:
            if self.prior_coef.shape != (15, 3) or len(PARAM_FEATURES) != 3 or N_LOT != 4:
                raise ValueError(
                    f"search: the compiled search needs 4 lot figures, 3 parameters and a 15 x 3 prior_coef, "
                    f"got {N_LOT}, {len(PARAM_FEATURES)} and {self.prior_coef.shape}"
                )
            index = build_lot_index(self.support_lot_norm)
            # without evidence (older artefacts) the kernel ignores this array: the trees' veto stands alone
            faulted = (
                np.zeros(len(support), dtype=np.bool_)
                if self.support_faulted is None
                else self.support_faulted
            )
            self._kernel_args = (
                self.prior_coef, self.lattice_steps, np.ascontiguousarray(self.step_offsets), PRIOR_STEP,
                self.safe_lo.astype(np.float64),
                self.safe_hi.astype(np.float64), self.lot_mean, self.lot_scale, self.par_mean,
                self.par_scale, self.prior_std, index.columns, index.order, index.bucket_lo,
                index.bucket_hi, index.box_lo, index.box_hi,
                np.ascontiguousarray(self.support_par_norm[index.order]),
                np.ascontiguousarray(self.support_params[index.order]), self.k_neighbours,
                self.k_support, self.fault_threshold, self.support_threshold, self.margin,
                self.prior_first, self.tree_lot_threshold, np.ascontiguousarray(self.lev_inv), self.lev_limit,
                np.ascontiguousarray(self.support_resid[index.order]), self.u_k,
                np.ascontiguousarray(faulted[index.order]), self.support_faulted is not None,
                *self.forest.kernel_args(),
            )  # fmt: skip
            # compile (or load from numba's on-disk cache) now, while the model loads, not on the
            # first request: a cold compile takes seconds and would blow the request deadline
            with contextlib.suppress(NoFeasibleSetting):
                self.recommend(tuple(float(v) for v in self.mean[:N_LOT]))

    @property
    def bounded_cost(self) -> bool:
        """True when a search is the compiled kernel over at most MAX_CANDIDATES settings (tens of
        microseconds): cheap enough to run on the event loop instead of a worker thread."""
        return self._kernel_args is not None

    def _check_rows(self, support: np.ndarray) -> np.ndarray:
        """Historical rows plus historical lots with settings spread over the safety ranges: where the
        compiled forest must reproduce the boosters before it serves (deterministic)."""
        rng = np.random.default_rng(0)
        rows = support[rng.choice(len(support), size=min(CHECK_ROWS, len(support)), replace=False)]
        spread = rows.copy()
        spread[:, N_LOT:] = rng.uniform(self.safe_lo, self.safe_hi, size=(len(rows), len(PARAM_FEATURES)))
        return np.vstack([rows, spread])

    def predict(self, lot: np.ndarray, settings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(no-fault quality, fault risk) of one lot under each setting (k x 3), by XGBoost itself."""
        x = np.hstack([np.broadcast_to(lot, (len(settings), N_LOT)), settings]).astype(np.float32)
        q = self.quality.inplace_predict(x, validate_features=False)
        r = self.fault.inplace_predict(x, validate_features=False)
        return np.asarray(q, dtype=np.float64), np.asarray(r, dtype=np.float64)

    def prior(self, lot: np.ndarray) -> np.ndarray:
        """The prior policy's setting for one lot (before the forward models are consulted).

        Same terms as lot_design, in scalar arithmetic: for one row that is 5x cheaper than numpy."""
        m, h, d, i = (
            float(lot[0]) - 6.0,
            (float(lot[1]) - 65.0) / 10.0,
            (float(lot[2]) - 1.30) / 0.10,
            float(lot[3]),
        )
        row = [1.0, m, h, d, i, m * m, h * h, d * d, i * i, m * h, m * d, m * i, h * d, h * i, d * i]
        return np.dot(row, self.prior_coef)

    def near_lots(self, lot: np.ndarray) -> np.ndarray:
        """Indices of the support rows of the k_support lots most similar to ``lot`` (nearest first)."""
        _, idx = self.lot_tree.query((lot - self.lot_mean) / self.lot_scale, k=self.k_support)
        return np.atleast_1d(idx)

    def candidates(self, lot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bounded candidate settings (k x 3, row 0 = the prior) clipped to the safety limits, and the
        indices of the support rows of the most similar lots."""
        centre = self.prior(lot)
        idx = self.near_lots(lot)
        neighbours = self.support_params[idx[: self.k_neighbours]]
        cands = np.vstack([centre[None, :], centre + self.lattice, neighbours])
        return np.clip(cands, self.safe_lo, self.safe_hi), idx

    def support_distance(self, lot: np.ndarray, settings: np.ndarray, near: np.ndarray) -> np.ndarray:
        """Normalized distance of each (lot, setting) to the nearest support row among ``near``
        (the lot part is the same for every setting, so it is computed once)."""
        a_lot = (lot - self.lot_mean) / self.lot_scale
        a_par = (settings - self.par_mean) / self.par_scale
        b_par = self.support_par_norm[near]
        lot_d2 = ((self.support_lot_norm[near] - a_lot) ** 2).sum(axis=1) + self.support_par_sq[near]
        d2 = (a_par * a_par).sum(axis=1)[:, None] + lot_d2[None, :] - 2.0 * (a_par @ b_par.T)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def leverage_of(self, lot: np.ndarray) -> float:
        design = lot_design(np.asarray(lot, dtype=np.float64)[None, :])[0]
        return float(design @ self.lev_inv @ design)

    def search_reference(self, lot: np.ndarray) -> SearchResult:
        """The search in numpy with XGBoost's own predictions: what serves when the trees cannot be
        compiled, and the oracle the compiled kernel is tested against (finite lot figures only)."""
        lot = np.asarray(lot, dtype=np.float64)
        leverage = self.leverage_of(lot)
        lot_norm = (lot - self.lot_mean) / self.lot_scale
        lot_dist = float(np.sqrt(((self.support_lot_norm - lot_norm) ** 2).sum(axis=1).min()))
        if leverage > self.lev_limit:
            empty = np.empty((0, 3))
            return SearchResult(
                empty, np.empty(0), np.empty(0), 0, -3, np.empty(0), lot_dist, leverage, math.nan, math.nan
            )
        cands, near = self.candidates(lot)
        q, r = self.predict(lot, cands)
        dist = self.support_distance(lot, cands, near)
        supported = dist <= self.support_threshold
        safe = r < self.fault_threshold
        if self.prior_first:
            supported[0] = True  # the prior is what worked in history: no support check
            # the trees veto the prior only where they know such lots and a past production like it faulted
            safe[0] = (
                safe[0] or lot_dist > self.tree_lot_threshold or not self.past_faulted(lot, cands[0], near)
            )
            feasible = supported & safe
            away = np.round((((cands - cands[0]) / self.prior_std) ** 2).sum(axis=1), 9)
            order = np.lexsort((-q, away))  # nearest to the prior first, then the higher quality
            ok = order[feasible[order]]
            best = int(ok[0]) if len(ok) else -1
            expected = np.full(len(cands), -np.inf)
            if best >= 0:
                expected[best] = q[best] * (1.0 - r[best])
            n_feasible = 1 if best >= 0 else 0
        else:
            feasible = supported & safe
            n_feasible = int(feasible.sum())
            expected = np.where(feasible, q * (1.0 - r), -np.inf)
            best = -1
            if n_feasible:
                good = np.flatnonzero(expected >= expected.max() - self.margin)
                away = (((cands[good] - cands[0]) / self.prior_std) ** 2).sum(axis=1)
                closest = good[away <= away.min() + kernels.TIE_TOLERANCE]  # equidistant lattice points:
                best = int(closest[np.argmax(expected[closest])])  # the better
        uncertainty = setting_dist = math.nan
        if best >= 0:
            uncertainty = self.local_error(lot, cands[best], near)
            setting_dist = float(dist[best])
        return SearchResult(
            cands, r, expected, n_feasible, best, q, lot_dist, leverage, uncertainty, setting_dist
        )

    def _by_distance(
        self, lot: np.ndarray, setting: np.ndarray, near: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The support rows ``near`` ordered by normalized distance to (lot, setting), with their squared
        distances in that order (ties keep the rows' order)."""
        a = np.concatenate(
            [(lot - self.lot_mean) / self.lot_scale, (setting - self.par_mean) / self.par_scale]
        )
        d2 = ((self.support_norm[near] - a) ** 2).sum(axis=1)
        order = np.argsort(d2, kind="mergesort")
        return near[order], d2[order]

    def local_error(self, lot: np.ndarray, setting: np.ndarray, near: np.ndarray) -> float:
        """RMS of the out-of-fold residuals of the nearest past fault-free productions to (lot, setting)."""
        resid = self.support_resid[self._by_distance(lot, setting, near)[0]]
        resid = resid[np.isfinite(resid)][: self.u_k]
        return float(np.sqrt((resid**2).mean())) if len(resid) else math.nan

    def nearest_past(
        self, lot: np.ndarray, setting: np.ndarray, near: np.ndarray | None = None
    ) -> np.ndarray:
        """Indices of the past productions like (lot, setting): of the u_k support rows nearest to it
        (among the rows of the most similar lots, as `local_error` measures), those within the support
        distance, the radius inside which the search counts a (lot, setting) as seen. ``near``: those
        rows when the caller has them already (`candidates` returns them), else `near_lots`."""
        if near is None:
            near = self.near_lots(lot)
        rows, d2 = self._by_distance(lot, setting, near)
        return rows[: self.u_k][d2[: self.u_k] <= self.support_threshold**2]

    def past_faulted(self, lot: np.ndarray, setting: np.ndarray, near: np.ndarray | None = None) -> bool:
        """Did a past production like (lot, setting) fault? (True when the artefact holds no evidence.)"""
        if self.support_faulted is None:
            return True
        return bool(self.support_faulted[self.nearest_past(lot, setting, near)].any())

    def past_poor(self, lot: np.ndarray, setting: np.ndarray) -> bool:
        """Did the past productions like (lot, setting) realize, on average, less than the low-quality
        threshold (a fault as 0)? (True when the artefact holds no evidence; False when no past production
        lies within the support distance.)"""
        if self.support_realized is None:
            return True
        realized = self.support_realized[self.nearest_past(lot, setting)]
        realized = realized[np.isfinite(realized)]
        return len(realized) > 0 and float(realized.mean()) < self.low_quality

    def recommend(self, lot_values: tuple[float, float, float, float]) -> Recommendation:
        """Best feasible setting for a lot (moisture, hardness, density, impurity), or NoFeasibleSetting
        with its reason: out_of_support, low_predicted_quality or no_feasible_setting."""
        lot = tuple(map(float, lot_values))  # one numba signature: a tuple of 4 floats
        if self._kernel_args is not None:
            out = kernels.search(lot, *self._kernel_args)
            # (best, candidates, feasible, 3 parameters, expected quality, fault risk, quality,
            #  lot distance, leverage, uncertainty, setting's support distance)
            if out[0] != -2 and out[9] > self.lot_limit:
                raise self._too_far(out[9])
            if out[0] >= 0:
                params = {_P0: round(out[3], 3), _P1: round(out[4], 3), _P2: round(out[5], 3)}
                return self._answer(
                    params, out[6], out[7], out[8], out[1], out[9], out[10], out[11], out[12], lot,
                    prior=out[0] == 0,
                )  # fmt: skip
            if out[0] == -3:
                raise self._out_of_support(out[10])
            if out[0] == -1:
                raise self._refusal(out[1])
        missing = [name for name, v in zip(LOT_FEATURES, lot, strict=True) if not math.isfinite(v)]
        if missing:  # the API refuses these; a Python caller gets the operator, not a guess
            raise NoFeasibleSetting(
                f"lot figure(s) {', '.join(missing)} not finite: no history to compare", "out_of_support"
            )
        res = self.search_reference(np.asarray(lot, dtype=np.float64))
        if res.lot_distance > self.lot_limit:
            raise self._too_far(res.lot_distance)
        if res.best == -3:
            raise self._out_of_support(res.leverage)
        if res.best < 0:
            raise self._refusal(len(res.candidates))
        params = {name: round(float(res.candidates[res.best, k]), 3) for k, name in enumerate(PARAM_FEATURES)}
        return self._answer(
            params, float(res.expected[res.best]), float(res.fault_risk[res.best]), float(res.quality[res.best]),
            len(res.candidates), res.lot_distance, res.leverage, res.uncertainty, res.setting_distance, lot,
            prior=res.best == 0,
        )  # fmt: skip

    def _answer(
        self, params: dict[str, float], expected: float, risk: float, quality: float, n_cand: int,
        lot_dist: float, leverage: float, uncertainty: float, setting_dist: float,
        lot: tuple[float, ...], prior: bool,
    ) -> Recommendation:  # fmt: skip
        """The recommendation, unless the model expects it to be poor where history backs the expectation.

        The forward models' quality is evidence only near past productions: where the lot lies inside
        the trees' support and the chosen setting inside the support of (lot, setting) rows. Elsewhere
        the prior's setting (what the best producers did for such lots) stands; measured with the
        backtest, refusing there hands the lot to the crew on shift, who do worse (docs/model.md). The
        prior's own setting is refused only where the past productions like it were poor too; any other
        candidate is one the trees chose, and their low prediction refuses it (measured: answering such
        a candidate against the trees set a lot at 0.73 fault probability)."""
        if lot_dist <= self.tree_lot_threshold and setting_dist <= self.support_threshold:
            spread = uncertainty if math.isfinite(uncertainty) else 0.0
            pessimistic = (quality - self.uncertainty_k * spread) * (1.0 - risk)
            if pessimistic < self.low_quality and (
                not prior
                or self.past_poor(
                    np.asarray(lot, dtype=np.float64), np.array([params[p] for p in PARAM_FEATURES])
                )
            ):
                raise NoFeasibleSetting(
                    f"predicted quality {expected:.1f} (pessimistic {pessimistic:.1f} with uncertainty "
                    f"{spread:.1f}) is below {self.low_quality:.0f}, as were the past productions most like "
                    "it: the operator decides",
                    "low_predicted_quality",
                )
        return Recommendation(
            params, expected, risk, n_cand, lot_dist / self.lot_q99, leverage / self.lev_q999, uncertainty
        )

    def _out_of_support(self, leverage: float) -> NoFeasibleSetting:
        return NoFeasibleSetting(
            f"lot outside the history the model learned from: prior leverage {leverage / self.lev_q999:.1f}x "
            f"the history's 99.9th percentile (limit {self.lev_limit / self.lev_q999:.0f}x)",
            "out_of_support",
        )

    def _too_far(self, lot_dist: float) -> NoFeasibleSetting:
        return NoFeasibleSetting(
            f"lot outside the history the model learned from: nearest training lot {lot_dist / self.lot_q99:.1f}x "
            f"the history's 99th-percentile distance (limit {self.lot_limit / self.lot_q99:.0f}x)",
            "out_of_support",
        )

    def _refusal(self, n_cand: int) -> NoFeasibleSetting:
        evidence = (
            ", and a past production like the prior's setting faulted"
            if self.prior_first and self.support_faulted is not None
            else ""
        )
        return NoFeasibleSetting(
            f"none of {n_cand} candidate settings is inside the support of history with fault risk "
            f"< {self.fault_threshold}{evidence}"
        )


def compile_kernels(seed: int = 0) -> Recommender:
    """Build a small synthetic Recommender so every search kernel compiles into numba's cache.

    Why: a cold compile takes seconds; container images run this at build time (no pandas or training
    data needed: two tiny boosters on random rows of the real feature schema, so the kernels' argument
    types are exactly those of a real model)."""
    rng = np.random.default_rng(seed)
    n = 512
    lots = np.column_stack([rng.uniform(4.0, 8.0, n), rng.uniform(55.0, 75.0, n),
                            rng.uniform(1.25, 1.35, n), rng.uniform(0.2, 1.0, n)])  # fmt: skip
    params = np.column_stack([rng.uniform(*PARAM_BOUNDS[p], n) for p in PARAM_FEATURES])
    x = np.hstack([lots, params]).astype(np.float32)
    # the trainer's depths (6 and 4), so the trees need the same leaf-mask widths (64 and 16 bits) and
    # the kernels the same signatures as a trained model's
    common = {"tree_method": "hist", "nthread": 1, "seed": seed}
    quality = xgb.train({**common, "max_depth": 6, "objective": "reg:squarederror"},
                        xgb.DMatrix(x, rng.normal(90, 5, n)), 8)  # fmt: skip
    fault = xgb.train({**common, "max_depth": 4, "objective": "binary:logistic"},
                      xgb.DMatrix(x, rng.random(n) < 0.1), 8)  # fmt: skip
    prior = np.zeros((15, len(PARAM_FEATURES)))
    prior[0] = params.mean(axis=0)
    meta = {"search": {
        "feature_mean": x.mean(axis=0).astype(float).tolist(), "feature_scale": x.std(axis=0).astype(float).tolist(),
        "support": x.astype(float).tolist(), "support_threshold": 10.0, "fault_risk_threshold": 0.5,
        "indifference_margin": 3.0, "prior_coef": prior.tolist(), "prior_resid_std": [1.0] * len(PARAM_FEATURES),
    }}  # fmt: skip
    rec = Recommender(quality, fault, meta)
    if not rec.bounded_cost:
        raise RuntimeError("the synthetic boosters did not compile: the search kernels are unavailable")
    return rec
