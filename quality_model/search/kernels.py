"""Compiled (numba) kernels of the request path: tree-ensemble scoring and the whole constrained search.

Why compiled: one recommendation is ~35 candidate settings x ~300 trees plus a nearest-neighbour
support check. As numpy array operations that is ~60 calls of 1-5 us fixed cost each and several MB of
temporaries (0.2-0.6 ms a request, the cache thrashed by the web framework in between); as one loop
nest it is tens of microseconds. ``cache=True`` keeps the machine code on disk (numba's own cache
locator: next to this file, or the user cache directory when that is read-only), so only the first
start after an install compiles.

Forest layout (built by inference_server/forest.py, QuickScorer-style, Lucchese et al. 2015), one set of
arrays per booster: leaves of each tree are numbered left to right; ``tables[row_base[f] + k, t]`` is
the mask of tree t's leaves still reachable once the k smallest cuts of feature f are known to be
<= x[f] (every split ``x[f] < cut`` on them is false); masks are 16, 32 or 64-bit, the narrowest that
holds the booster's largest tree. The exit leaf is the lowest bit of the AND over features, its value
``values[t, leaf]``. Features are compared in float32, as XGBoost does. The search kernel mirrors
Recommender's reference path (numpy + XGBoost) step by step; tests/quality_model/test_search_kernel.py
holds the two to the same answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM cttz: one instruction

TIE_TOLERANCE = 1e-9  # squared prior-std units: distances this close are equal (rounding noise)
_N_PRIOR_TERMS = 15


@njit(cache=True, inline="always")
def _count_le(cuts: np.ndarray, lo: int, hi: int, value: np.float32) -> int:
    """How many of the sorted cuts[lo:hi] are <= value (numpy's searchsorted side='right')."""
    a, b = lo, hi
    while a < b:
        mid = (a + b) >> 1
        if cuts[mid] <= value:
            a = mid + 1
        else:
            b = mid
    return a - lo


@njit(cache=True, inline="always")
def _row(cuts: np.ndarray, cut_lo: np.ndarray, cut_hi: np.ndarray, row_base: np.ndarray, f: int,
         value: float) -> int:  # fmt: skip
    """The table row of feature ``f`` at ``value``."""
    return row_base[f] + _count_le(cuts, cut_lo[f], cut_hi[f], np.float32(value))


@njit(cache=True, fastmath={"reassoc"})
def _score(
    head_mask: np.ndarray, rows: np.ndarray, tables: np.ndarray, values: np.ndarray, base: float,
    sigmoid: bool,
) -> float:  # fmt: skip
    """Prediction of one booster for one row: per tree, the exit leaf of ``head_mask`` AND the table
    ``rows`` (hardware trailing-zero count), its value summed; ``reassoc`` lets the sum use several
    accumulators instead of one long dependency chain.

    Three rows (one lot, three machine parameters: the search) take a fused loop, twice as fast as the
    general one."""
    s = 0.0
    n_trees = tables.shape[1]
    if rows.shape[0] == 3:
        r0, r1, r2 = tables[rows[0]], tables[rows[1]], tables[rows[2]]
        for t in range(n_trees):
            s += values[t, trailing_zeros(head_mask[t] & r0[t] & r1[t] & r2[t])]
    else:
        for t in range(n_trees):
            m = head_mask[t]
            for j in range(rows.shape[0]):
                m &= tables[rows[j], t]
            s += values[t, trailing_zeros(m)]
    s += base
    return 1.0 / (1.0 + np.exp(-s)) if sigmoid else s


@njit(cache=True, fastmath={"reassoc"})
def _score_pair(
    pair_mask: np.ndarray, row: np.ndarray, values: np.ndarray, base: float, sigmoid: bool
) -> float:
    """``_score`` for a row whose first two parameters' masks are already ANDed into ``pair_mask``."""
    s = 0.0
    for t in range(pair_mask.shape[0]):
        s += values[t, trailing_zeros(pair_mask[t] & row[t])]
    s += base
    return 1.0 / (1.0 + np.exp(-s)) if sigmoid else s


@njit(cache=True)
def _head_mask(
    head: np.ndarray, cuts: np.ndarray, cut_lo: np.ndarray, cut_hi: np.ndarray, row_base: np.ndarray,
    tables: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Per-tree AND of the table rows of the leading features (the same for every candidate)."""
    mask = tables[row_base[0]].copy()  # any feature's row 0: no split decided yet, every leaf reachable
    for f in range(head.shape[0]):
        row = tables[_row(cuts, cut_lo, cut_hi, row_base, f, head[f])]
        for t in range(mask.shape[0]):
            mask[t] &= row[t]
    return mask


@njit(cache=True)
def predict_fixed(
    head: np.ndarray, tail: np.ndarray, cuts: np.ndarray, cut_lo: np.ndarray, cut_hi: np.ndarray,
    row_base: np.ndarray, tables: np.ndarray, values: np.ndarray, base: float, sigmoid: bool,
) -> np.ndarray:  # fmt: skip
    """One booster's predictions for rows ``[head, tail[i]]``: the head's masks are looked up once
    (an empty head scores full feature rows)."""
    mask = _head_mask(head, cuts, cut_lo, cut_hi, row_base, tables)
    n_head = head.shape[0]
    n, n_tail = tail.shape
    out = np.empty(n, dtype=np.float64)
    rows = np.empty(n_tail, dtype=np.int64)
    for i in range(n):
        for j in range(n_tail):
            rows[j] = _row(cuts, cut_lo, cut_hi, row_base, n_head + j, tail[i, j])
        out[i] = _score(mask, rows, tables, values, base, sigmoid)
    return out


@njit(cache=True)
def nearest_lots(
    a_lot: np.ndarray, columns: np.ndarray, order: np.ndarray, bucket_lo: np.ndarray,
    bucket_hi: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray, k: int, n_sorted: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The k rows of the bucket index (neighbours.LotIndex) closest to ``a_lot``: (positions, squared
    distances), the first ``n_sorted`` of them ascending by (distance, original row) (the search needs
    the few nearest in order and the rest only as a set). Exact: buckets are visited by the distance to
    their bounding box, and the scan stops when that exceeds the k-th best distance found so far.
    (Rows at exactly the k-th distance are kept in scan order: lot figures are continuous measurements,
    so exact ties at that place do not occur in practice.)

    Why this shape: a query reads about a fifth of the buckets, so the next bucket is picked by a scan
    for the smallest remaining bound (no sort of all of them), and a bucket's distances are computed one
    feature column at a time (``columns`` is feature-major: the loops vectorize) before the heap sees
    them."""
    n_buckets, n_dim = box_lo.shape
    bound = np.empty(n_buckets, dtype=np.float64)
    widest = 0
    for b in range(n_buckets):
        acc = 0.0
        for j in range(n_dim):
            gap = max(max(box_lo[b, j] - a_lot[j], a_lot[j] - box_hi[b, j]), 0.0)
            acc += gap * gap
        bound[b] = acc
        widest = max(widest, bucket_hi[b] - bucket_lo[b])
    dist = np.empty(widest, dtype=np.float64)
    # bounded max-heap of the best k so far
    heap_d = np.empty(k, dtype=np.float64)
    heap_p = np.empty(k, dtype=np.int64)
    size = 0
    for _ in range(n_buckets):
        b = 0
        for c in range(1, n_buckets):
            if bound[c] < bound[b]:
                b = c
        if bound[b] == np.inf or (size == k and bound[b] > heap_d[0]):
            break
        bound[b] = np.inf  # visited
        lo, n = bucket_lo[b], bucket_hi[b] - bucket_lo[b]
        for q in range(n):
            dist[q] = 0.0
        for j in range(n_dim):
            column = columns[j, lo : lo + n]
            aj = a_lot[j]
            for q in range(n):
                diff = column[q] - aj
                dist[q] += diff * diff
        for q in range(n):
            d, p = dist[q], lo + q
            if size < k:  # sift up
                pos = size
                size += 1
                while pos > 0:
                    parent = (pos - 1) >> 1
                    if heap_d[parent] >= d:
                        break
                    heap_d[pos], heap_p[pos] = heap_d[parent], heap_p[parent]
                    pos = parent
                heap_d[pos], heap_p[pos] = d, p
            elif d < heap_d[0]:  # replace the worst, sift down
                pos = 0
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    if child + 1 < k and heap_d[child + 1] > heap_d[child]:
                        child += 1
                    if heap_d[child] <= d:
                        break
                    heap_d[pos], heap_p[pos] = heap_d[child], heap_p[child]
                    pos = child
                heap_d[pos], heap_p[pos] = d, p
    # the first n_sorted ascending by (distance, original row), by selection (n_sorted is small); the
    # rest of the k follow in heap order
    pos_out, d_out = heap_p[:size].copy(), heap_d[:size].copy()
    for i in range(min(n_sorted, size)):
        m = i
        for c in range(i + 1, size):
            if d_out[c] < d_out[m] or (d_out[c] == d_out[m] and order[pos_out[c]] < order[pos_out[m]]):
                m = c
        pos_out[i], pos_out[m] = pos_out[m], pos_out[i]
        d_out[i], d_out[m] = d_out[m], d_out[i]
    return pos_out, d_out


@njit(cache=True)
def search_arrays(
    lot: np.ndarray,
    prior_coef: np.ndarray,
    lattice: np.ndarray,
    steps: np.ndarray,
    prior_step: int,
    safe_lo: np.ndarray,
    safe_hi: np.ndarray,
    lot_mean: np.ndarray,
    lot_scale: np.ndarray,
    par_mean: np.ndarray,
    par_scale: np.ndarray,
    prior_std: np.ndarray,
    columns: np.ndarray,
    order: np.ndarray,
    bucket_lo: np.ndarray,
    bucket_hi: np.ndarray,
    box_lo: np.ndarray,
    box_hi: np.ndarray,
    support_par_norm: np.ndarray,
    support_params: np.ndarray,
    k_neighbours: int,
    k_support: int,
    fault_threshold: float,
    support_threshold: float,
    margin: float,
    prior_first: bool,
    tree_lot_threshold: float,
    lev_inv: np.ndarray,
    lev_limit: float,
    support_resid: np.ndarray,
    u_k: int,
    support_faulted: np.ndarray,
    veto_needs_evidence: bool,
    q_cuts: np.ndarray,
    q_cut_lo: np.ndarray,
    q_cut_hi: np.ndarray,
    q_row_base: np.ndarray,
    q_tables: np.ndarray,
    q_values: np.ndarray,
    q_base: float,
    q_sigmoid: bool,
    f_cuts: np.ndarray,
    f_cut_lo: np.ndarray,
    f_cut_hi: np.ndarray,
    f_row_base: np.ndarray,
    f_tables: np.ndarray,
    f_values: np.ndarray,
    f_base: float,
    f_sigmoid: bool,
) -> tuple[np.ndarray, np.ndarray, int, int, np.ndarray]:
    """The whole constrained search for one lot (Recommender.search_reference, compiled).

    Returns (candidates k x 3, predictions 3 x k: quality, fault risk (NaN where not needed), expected
    quality (-inf where infeasible or not needed), feasible candidates among those checked, best index
    or -1 when nothing is feasible or -3 when the lot is out of the prior's support, and what the
    model knows of the lot: [nearest historical lot's distance, the prior's leverage, the quality
    prediction's uncertainty at the chosen setting, the chosen (lot, setting)'s support distance]
    (NaN where not computed))."""
    n_lot = lot.shape[0]
    n_par = safe_lo.shape[0]
    # prior policy: quadratic design row of the centred lot figures (recommender.lot_design)
    m = lot[0] - 6.0
    h = (lot[1] - 65.0) / 10.0
    d = (lot[2] - 1.30) / 0.10
    im = lot[3]
    terms = np.array(
        [1.0, m, h, d, im, m * m, h * h, d * d, im * im, m * h, m * d, m * im, h * d, h * im, d * im]
    )
    centre = np.zeros(n_par, dtype=np.float64)
    for j in range(n_par):
        acc = 0.0
        for t in range(_N_PRIOR_TERMS):
            acc += terms[t] * prior_coef[t, j]
        centre[j] = acc
    # the prior's leverage d' C^-1 d: how far this lot's design row lies from the rows it was fitted on
    info = np.full(4, np.nan)
    leverage = 0.0
    for a in range(_N_PRIOR_TERMS):
        acc = 0.0
        for b in range(_N_PRIOR_TERMS):
            acc += lev_inv[a, b] * terms[b]
        leverage += terms[a] * acc
    info[1] = leverage
    # the historical lots most similar to this one (normalized lot space); positions index the
    # bucket-ordered support arrays
    near, lot_d2 = nearest_lots(
        (lot - lot_mean) / lot_scale,
        columns,
        order,
        bucket_lo,
        bucket_hi,
        box_lo,
        box_hi,
        k_support,
        k_neighbours,
    )
    lot_dist = np.sqrt(max(lot_d2.min(), 0.0))
    info[0] = lot_dist
    if leverage > lev_limit:
        return np.empty((0, n_par)), np.full((3, 0), np.nan), 0, -3, info
    in_trees = lot_dist <= tree_lot_threshold
    # candidates: the prior, a lattice around it, the settings used for the nearest lots; clipped. The
    # lattice takes 3 values per parameter (steps[s] = the step-s offsets; step 1 is 0, the prior), so
    # its table rows are found once per (step, parameter) and pairs of them are ANDed once per tree
    n_grid = lattice.shape[0]
    n_steps = steps.shape[0]
    n_cand = 1 + n_grid + k_neighbours
    cands = np.empty((n_cand, n_par), dtype=np.float64)
    rows = np.empty((n_cand, n_par), dtype=np.int64)
    step_of = np.empty((1 + n_grid, n_par), dtype=np.int64)
    step_row = np.empty((n_steps, n_par), dtype=np.int64)
    step_value = np.empty((n_steps, n_par), dtype=np.float64)
    for j in range(n_par):
        f = n_lot + j
        for st in range(n_steps):
            v = min(max(centre[j] + steps[st, j], safe_lo[j]), safe_hi[j])
            step_value[st, j] = v
            step_row[st, j] = _row(q_cuts, q_cut_lo, q_cut_hi, q_row_base, f, v)
        step_of[0, j] = prior_step
        for i in range(n_grid):
            step_of[1 + i, j] = lattice[i, j]
    for i in range(1 + n_grid):
        for j in range(n_par):
            cands[i, j] = step_value[step_of[i, j], j]
            rows[i, j] = step_row[step_of[i, j], j]
    for i in range(1 + n_grid, n_cand):
        for j in range(n_par):
            f = n_lot + j
            v = min(max(support_params[near[i - 1 - n_grid], j], safe_lo[j]), safe_hi[j])
            cands[i, j] = v
            rows[i, j] = _row(q_cuts, q_cut_lo, q_cut_hi, q_row_base, f, v)
    # quality model for every candidate (``rows`` index its tables), then the rest in descending
    # predicted quality: expected quality q * (1 - risk) never exceeds q, so once q is below the best
    # expected quality found minus the margin, no later candidate can be chosen and its fault risk and
    # support distance are not needed (when nothing is feasible, every candidate is checked: a refusal is exact)
    pred = np.full((3, n_cand), np.nan)
    q_mask = _head_mask(lot, q_cuts, q_cut_lo, q_cut_hi, q_row_base, q_tables)
    n_q_trees = q_tables.shape[1]
    pair = np.empty((n_steps * n_steps, n_q_trees), dtype=q_tables.dtype)
    for sa in range(n_steps):
        ra = q_tables[step_row[sa, 0]]
        for sb in range(n_steps):
            rb = q_tables[step_row[sb, 1]]
            pm = pair[sa * n_steps + sb]
            for t in range(n_q_trees):
                pm[t] = q_mask[t] & ra[t] & rb[t]
    for i in range(1 + n_grid):
        pm = pair[step_of[i, 0] * n_steps + step_of[i, 1]]
        pred[0, i] = _score_pair(pm, q_tables[rows[i, 2]], q_values, q_base, q_sigmoid)
    for i in range(1 + n_grid, n_cand):
        pred[0, i] = _score(q_mask, rows[i], q_tables, q_values, q_base, q_sigmoid)
    # feasibility: inside the support of history (distance to the nearest of the near rows; their
    # setting coordinates gathered feature-major so the loops vectorize) and fault risk (the fault
    # model: its own tables, looked up only for the candidates that get this far) under the threshold
    f_mask = _head_mask(lot, f_cuts, f_cut_lo, f_cut_hi, f_row_base, f_tables)
    f_rows = np.empty(n_par, dtype=np.int64)
    k_near = near.shape[0]
    near_par = np.empty((n_par, k_near), dtype=np.float64)
    for q in range(k_near):
        for j in range(n_par):
            near_par[j, q] = support_par_norm[near[q], j]
    d2 = np.empty(k_near, dtype=np.float64)
    n_feasible = 0
    best_value = -np.inf
    pred[2, :] = -np.inf
    best = -1
    if prior_first:
        # trust region: the feasible candidate closest to the prior wins (equal distances: the higher
        # predicted quality); the prior itself needs no support check (it is what worked in history)
        # and its fault veto applies only where the trees have seen such lots and, when the model
        # carries the evidence, only where a past production like the prior's setting faulted
        by_quality = np.argsort(-pred[0], kind="mergesort")
        away = np.empty(n_cand, dtype=np.float64)
        for i in range(n_cand):
            acc = 0.0
            for j in range(n_par):
                step = (cands[i, j] - cands[0, j]) / prior_std[j]
                acc += step * step
            away[i] = acc
        away = np.round(away, 9)  # equidistant lattice points tie exactly, whatever the rounding
        ordered = by_quality[np.argsort(away[by_quality], kind="mergesort")]
        for i in ordered:
            if i != 0 and not _supported(
                i, cands, par_mean, par_scale, near_par, lot_d2, d2, support_threshold
            ):
                continue
            for j in range(n_par):
                f_rows[j] = _row(f_cuts, f_cut_lo, f_cut_hi, f_row_base, n_lot + j, cands[i, j])
            pred[1, i] = _score(f_mask, f_rows, f_tables, f_values, f_base, f_sigmoid)
            if (
                pred[1, i] < fault_threshold
                or (i == 0 and not in_trees)
                or (
                    i == 0
                    and veto_needs_evidence
                    and not _past_faulted(
                        0, cands, par_mean, par_scale, near_par, lot_d2, d2, support_faulted, near, u_k,
                        support_threshold,
                    )
                )
            ):  # fmt: skip
                n_feasible = 1
                pred[2, i] = pred[0, i] * (1.0 - pred[1, i])
                best = i
                break
    else:
        for i in np.argsort(-pred[0], kind="mergesort"):
            if pred[0, i] < best_value - margin:
                break
            if not _supported(i, cands, par_mean, par_scale, near_par, lot_d2, d2, support_threshold):
                continue
            for j in range(n_par):
                f_rows[j] = _row(f_cuts, f_cut_lo, f_cut_hi, f_row_base, n_lot + j, cands[i, j])
            pred[1, i] = _score(f_mask, f_rows, f_tables, f_values, f_base, f_sigmoid)
            if pred[1, i] < fault_threshold:
                n_feasible += 1
                pred[2, i] = pred[0, i] * (1.0 - pred[1, i])
                best_value = max(best_value, pred[2, i])
        if n_feasible > 0:
            # among settings within the margin of the best, the one closest to the prior (trust
            # region); lattice points are equidistant from the prior, so equal distances go to the
            # higher expected quality
            away = np.full(n_cand, np.inf)
            closest = np.inf
            for i in range(n_cand):
                if pred[2, i] >= best_value - margin:
                    acc = 0.0
                    for j in range(n_par):
                        step = (cands[i, j] - cands[0, j]) / prior_std[j]
                        acc += step * step
                    away[i] = acc
                    closest = min(closest, acc)
            for i in range(n_cand):
                if away[i] <= closest + TIE_TOLERANCE and (best < 0 or pred[2, i] > pred[2, best]):
                    best = i
    if best < 0:
        return cands, pred, 0, -1, info
    info[2] = _local_error(best, cands, par_mean, par_scale, near_par, lot_d2, d2, support_resid, near, u_k)
    info[3] = np.sqrt(max(d2.min(), 0.0))  # the chosen (lot, setting)'s distance to the nearest near row
    return cands, pred, n_feasible, best, info


@njit(cache=True)
def _supported(
    i: int, cands: np.ndarray, par_mean: np.ndarray, par_scale: np.ndarray, near_par: np.ndarray,
    lot_d2: np.ndarray, d2: np.ndarray, support_threshold: float,
) -> bool:  # fmt: skip
    """Candidate i lies inside the support of history: its (lot, setting) distance to the nearest of
    the near rows is under the threshold (fills ``d2`` with the distances to every near row)."""
    _distances(i, cands, par_mean, par_scale, near_par, lot_d2, d2)
    return np.sqrt(max(d2.min(), 0.0)) <= support_threshold


@njit(cache=True)
def _distances(
    i: int, cands: np.ndarray, par_mean: np.ndarray, par_scale: np.ndarray, near_par: np.ndarray,
    lot_d2: np.ndarray, d2: np.ndarray,
) -> None:  # fmt: skip
    k_near = d2.shape[0]
    for q in range(k_near):
        d2[q] = lot_d2[q]
    for j in range(cands.shape[1]):
        a = (cands[i, j] - par_mean[j]) / par_scale[j]
        row = near_par[j]
        for q in range(k_near):
            diff = row[q] - a
            d2[q] += diff * diff


@njit(cache=True)
def _past_faulted(
    i: int, cands: np.ndarray, par_mean: np.ndarray, par_scale: np.ndarray, near_par: np.ndarray,
    lot_d2: np.ndarray, d2: np.ndarray, support_faulted: np.ndarray, near: np.ndarray, u_k: int,
    support_threshold: float,
) -> bool:  # fmt: skip
    """Did a past production like candidate i's (lot, setting) fault: one of the u_k near rows nearest
    to it that lies within the support distance (Recommender.past_faulted, compiled)?"""
    _distances(i, cands, par_mean, par_scale, near_par, lot_d2, d2)
    idx = np.argsort(d2, kind="mergesort")
    limit = support_threshold * support_threshold
    for q in idx[:u_k]:
        if d2[q] > limit:
            break
        if support_faulted[near[q]]:
            return True
    return False


@njit(cache=True)
def _local_error(
    best: int, cands: np.ndarray, par_mean: np.ndarray, par_scale: np.ndarray, near_par: np.ndarray,
    lot_d2: np.ndarray, d2: np.ndarray, support_resid: np.ndarray, near: np.ndarray, u_k: int,
) -> float:  # fmt: skip
    """The quality model's error where it answered: RMS of the out-of-fold residuals of the u_k
    historical productions nearest to the chosen (lot, setting) (fault-free ones only; NaN if none)."""
    _distances(best, cands, par_mean, par_scale, near_par, lot_d2, d2)
    idx = np.argsort(d2, kind="mergesort")
    acc = 0.0
    n = 0
    for q in idx:
        r = support_resid[near[q]]
        if np.isfinite(r):
            acc += r * r
            n += 1
            if n >= u_k:
                break
    return np.sqrt(acc / n) if n > 0 else np.nan


@njit(cache=True)
def search(
    lot: tuple[float, float, float, float], *model: Any
) -> tuple[int, int, int, float, float, float, float, float, float, float, float, float, float]:
    """The request path's entry: lot figures as a tuple of floats in, scalars out (no arrays to box).

    Returns (best index, or -1 when nothing is feasible, -3 when the lot is out of the prior's support,
    or -2 when a lot figure is not finite and the reference path must answer; candidates; feasible; the
    best setting's three parameters; its expected quality; its fault risk; its no-fault quality; the
    nearest historical lot's distance; the prior's leverage; the quality prediction's uncertainty; the
    chosen (lot, setting)'s support distance).
    ``model`` is Recommender's kernel arguments, in search_arrays' order."""
    nan = np.nan
    values = np.empty(len(lot), dtype=np.float64)
    for j in range(len(lot)):
        if not np.isfinite(lot[j]):
            return -2, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, nan, nan, nan, nan, nan
        values[j] = lot[j]
    cands, pred, n_feasible, best, info = search_arrays(values, *model)
    if best < 0:
        return best, cands.shape[0], n_feasible, 0.0, 0.0, 0.0, 0.0, 0.0, nan, info[0], info[1], nan, nan
    return (best, cands.shape[0], n_feasible, cands[best, 0], cands[best, 1], cands[best, 2], pred[2, best],
            pred[1, best], pred[0, best], info[0], info[1], info[2], info[3])  # fmt: skip
