"""Exact TreeSHAP at close to the cost of a prediction: tables built once per model.

Everything that depends only on the model — the trees as arrays, for every edge the
nearest edge above it splitting on the same feature, the quadrature points, and each
edge's three possible factors and shares — is computed when the model loads
(:class:`FastTreeShap`). Per row the compiled kernel (``treeshap_kernels.explain``)
only walks the trees. Values equal LightGBM's ``pred_contrib`` (tests hold them to 1e-9)
and the raw score it returns is the prediction's.
"""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np

from explain.treeshap_kernels import COLD, COLD_ABOVE, HOT, explain
from models.forest import Forest, read_forest


def previous_same_feature_edge(forest: Forest) -> np.ndarray:
    """For each node, the node below the nearest ancestor split on its parent's feature
    (the edge whose merged fractions this edge continues), or -1."""
    prev = np.full(len(forest.feature), -1, dtype=np.int64)
    parent, feature = forest.parent, forest.feature
    for n in range(len(prev)):
        p = parent[n]
        if p < 0:
            continue
        child, ancestor = p, parent[p]
        while ancestor >= 0:
            if feature[ancestor] == feature[p]:
                prev[n] = child
                break
            child, ancestor = ancestor, parent[ancestor]
    return prev


def _zero_fractions(forest: Forest, prev: np.ndarray) -> np.ndarray:
    """Merged zero fraction of each edge's feature: the share of training rows that
    follow every branch on that feature down to this edge."""
    z = np.ones(len(prev), dtype=np.float64)
    count, parent = forest.count, forest.parent
    for n in range(len(prev)):  # preorder: an edge's previous edge is already done
        p = parent[n]
        if p < 0:
            continue
        ratio = count[n] / count[p] if count[p] > 0 else 0.0
        z[n] = (z[prev[n]] if prev[n] >= 0 else 1.0) * ratio
    return z


def _expected_value(forest: Forest) -> float:
    """LightGBM's base value: per tree, leaf values weighted by their training share."""
    total = 0.0
    for t in range(forest.num_trees):
        s, e = forest.tree_start[t], forest.tree_start[t + 1]
        leaves = np.flatnonzero(forest.feature[s:e] < 0) + s
        if e - s == 1:
            total += float(forest.value[s])
        else:
            total += float(np.sum(forest.value[leaves] * forest.count[leaves]) / forest.count[s])
    return total


def tree_points(forest: Forest, prev: np.ndarray) -> np.ndarray:
    """Gauss-Legendre points per tree: exact for its longest path's polynomial degree."""
    distinct = np.zeros(len(prev), dtype=np.int64)
    for n in range(len(prev)):
        p = forest.parent[n]
        if p >= 0:
            distinct[n] = distinct[p] + (1 if prev[n] < 0 else 0)
    points = np.ones(forest.num_trees, dtype=np.int64)
    for t in range(forest.num_trees):
        s, e = forest.tree_start[t], forest.tree_start[t + 1]
        points[t] = max(1, math.ceil(int(distinct[s:e].max()) / 2))
    return points


def quadrature(points: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``points``-point Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(points)
    return (x + 1.0) / 2.0, w / 2.0


def edge_tables(
    forest: Forest, prev: np.ndarray, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per edge, per state (HOT, COLD, COLD_ABOVE), per quadrature point of its tree: the
    path-product factor and the weighted share (see ``treeshap_kernels``).

    Returns ``(table_start, table)``: edge n's block starts at ``table_start[n]`` and holds,
    per state and point, the factor then the share.
    """
    z_new = _zero_fractions(forest, prev)
    sizes = np.zeros(len(prev), dtype=np.int64)
    for t in range(forest.num_trees):
        s, e = forest.tree_start[t], forest.tree_start[t + 1]
        sizes[s:e] = 3 * points[t]
    sizes[forest.parent < 0] = 0  # roots have no edge
    table_start = 2 * np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    table = np.zeros(2 * int(sizes.sum()), dtype=np.float64)
    rules = {q: quadrature(q) for q in set(points.tolist())}
    for t in range(forest.num_trees):
        s, e = forest.tree_start[t], forest.tree_start[t + 1]
        q = int(points[t])
        tq, wq = rules[q]
        for n in range(s + 1, e):
            has_prev = prev[n] >= 0
            zn = z_new[n]
            zp = z_new[prev[n]] if has_prev else 1.0
            # f(hot state above): exactly 1 without a previous split on the feature.
            hot_above = tq + (1.0 - tq) * zp if has_prev else np.ones(q)
            h_above = (1.0 - zp) / hot_above if has_prev else np.zeros(q)
            block = table[table_start[n] : table_start[n] + 6 * q].reshape(3, q, 2)
            block[HOT, :, 0] = (tq + (1.0 - tq) * zn) / hot_above
            block[COLD, :, 0] = ((1.0 - tq) * zn) / hot_above
            # Below an edge already cold on this feature the product is 0 when zp is 0.
            block[COLD_ABOVE, :, 0] = zn / zp if zp > 0 else 0.0
            block[HOT, :, 1] = wq * ((1.0 - zn) / (tq + (1.0 - tq) * zn) - h_above)
            block[COLD, :, 1] = wq * (-1.0 / (1.0 - tq) - h_above)
    return table_start, table


class FastTreeShap:
    """Exact TreeSHAP for a LightGBM model, equal to ``pred_contrib`` (see module doc)."""

    method = "treeshap-fast"

    def __init__(self, model: lgb.Booster | Forest) -> None:
        f = self.forest = model if isinstance(model, Forest) else read_forest(model)
        self.prev_edge = previous_same_feature_edge(f)
        self.tree_points = tree_points(f, self.prev_edge)
        self.table_start, self.table = edge_tables(f, self.prev_edge, self.tree_points)
        self.base_value = _expected_value(f)
        self.max_nodes = max(f.max_tree_nodes, 1)
        # Tree-local indices, so the kernel needs no per-edge lookups beyond these.
        tree_of = np.repeat(np.arange(f.num_trees), np.diff(f.tree_start))
        first = f.tree_start[tree_of]
        self.local_parent = np.where(f.parent >= 0, f.parent - first, 0).astype(np.int64)
        self.is_left = np.array(
            [f.left[p] == n if p >= 0 else False for n, p in enumerate(f.parent)],
            dtype=np.float64,
        )
        self.prev_local = np.where(
            self.prev_edge >= 0, self.prev_edge - first, self.max_nodes
        ).astype(np.int64)
        self.parent_feature = np.where(f.parent >= 0, f.feature[np.maximum(f.parent, 0)], 0)
        internal = np.flatnonzero(f.feature >= 0)
        self.internal = internal.astype(np.int64)
        self.internal_start = np.searchsorted(internal, f.tree_start).astype(np.int64)

    @property
    def nbytes(self) -> int:
        """Memory held by the precomputed tables (trees included)."""
        f = self.forest
        arrays = [getattr(f, name) for name in f.__dataclass_fields__ if name != "num_features"]
        arrays += [
            self.prev_edge,
            self.tree_points,
            self.table_start,
            self.table,
            self.local_parent,
            self.is_left,
            self.prev_local,
            self.parent_feature,
            self.internal,
            self.internal_start,
        ]
        return int(sum(a.nbytes for a in arrays))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.explain(x)[0]

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(contributions (n, k + 1) with the base value last, raw scores (n,))``."""
        f = self.forest
        array = np.ascontiguousarray(x, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != f.num_features:
            raise ValueError(
                f"expected an (n, {f.num_features}) feature matrix, got shape {array.shape}"
            )
        contributions = np.empty((array.shape[0], f.num_features + 1), dtype=np.float64)
        raw = np.empty(array.shape[0], dtype=np.float64)
        explain(
            array,
            contributions,
            raw,
            self.base_value,
            f.tree_start,
            self.tree_points,
            self.internal_start,
            self.internal,
            f.feature,
            f.threshold,
            f.default_left,
            f.missing_type,
            f.value,
            self.local_parent,
            self.is_left,
            self.prev_local,
            self.parent_feature,
            self.table_start,
            self.table,
            self.max_nodes,
            int(self.tree_points.max(initial=1)),
        )
        return contributions, raw
