"""What the fast TreeSHAP kernels precompute when a model loads.

Two representations, chosen per tree:

* **Block tables** (trees no deeper than :data:`BLOCK_BITS`). For a leaf whose path tests
  d distinct features, path-dependent TreeSHAP gives feature i of the leaf
  ``v * (o_i - z_i) * integral_0^1 prod_{j != i} (t * o_j + (1 - t) * z_j) dt``, where z_j
  is the share of training rows following the path's splits on j (merged over repeated
  splits, as LightGBM does) and o_j is 1 if the row follows all of them. The o_j are 0 or
  1, so a leaf has only 2^d possible contribution vectors, and they depend only on the
  decisions of the nodes on its path. A *block* is the subtree under a node j whose
  ancestors plus internal nodes number at most ``BLOCK_BITS``: its leaves' contributions,
  summed per feature, depend only on those (at most 8) decisions, so the block's table has
  one row per decision pattern (the feature sums, plus the value of the leaf the row
  reaches, 0 if the row does not reach the block). Per row the kernel evaluates each
  block's decisions, forms the index, and adds one table row: a few hundred table rows for
  a 200-tree depth-4 model. Each row is exact: every leaf's contributions are computed
  from the polynomial's coefficients, with the Shapley weights
  ``a! (d - 1 - a)! / d!`` (all terms non-negative, so no cancellation).

* **Quadrature** (the rest). The integrand is a polynomial of degree below d, so
  Gauss-Legendre quadrature with ceil(d / 2) points is exact; the kernel walks each tree
  once down (path products, one factor per edge) and once up (leaf sums), for all points
  at once (see ``treeshap_kernels``). Per tree the points are rounded up to a multiple of 4
  (an exact rule with more points is still exact) so they fill whole vectors. Per edge
  the kernel reads four numbers (its merged zero fraction, the child's value, the ratio
  to the previous split's zero fraction, and 1 minus that one); 1 / (t + (1 - t) z) at
  each point is one vector division, measured as fast as reading it from a table twice
  the size.

The memory bound: a tree is tabulated only if it is at most ``BLOCK_BITS`` deep and the
block tables of all tabulated trees stay within ``TABLE_MAX_BYTES``; trees are taken
cheapest first, the others use quadrature.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from models.forest import MISSING_NAN, MISSING_NONE, MISSING_ZERO

# The kernels below build the tables (never per request) and release the GIL (nogil): a
# model version promoted while serving is built in a thread, and fill_blocks alone held
# the GIL ~95 ms, stalling every request of the event loop for as long.

# At most 8 decisions index one block table (256 rows): a depth-4 tree is then mostly two
# blocks, one under each child of its root. Measured on the shipped model (batches, kernel
# time against the compiled predictor's): 8 bits, 317 blocks, 2.5 MB, 1.3x; 5 bits, 625
# blocks, 0.6 MB, 1.9x. Trees deeper than this are explained by quadrature, whose cost
# grows with their nodes, not with 2^depth.
BLOCK_BITS = 8
# All block tables of one model together: 32 MiB, the L3 cache of the 2-core EPYC this was
# tuned on and a small share of a serving process. Trees beyond it use quadrature.
TABLE_MAX_BYTES = 32 * 1024 * 1024
# Quadrature points are processed four at a time (one AVX vector of doubles).
LANES = 4

# How a node's missing-value rule is folded into the feature value it compares (see
# ``decision_values``): NaN as 0; NaN goes left / right; zero-or-NaN goes left / right.
(
    AS_ZERO,
    NAN_LEFT,
    NAN_RIGHT,
    ZERO_LEFT,
    ZERO_RIGHT,
) = range(5)
VARIANTS = 5


def decision_variant(missing_type: np.ndarray, default_left: np.ndarray) -> np.ndarray:
    """Per node, which transformed feature value makes ``value <= threshold`` LightGBM's
    decision (``models.forest_kernels.goes_left``)."""
    out = np.full(len(missing_type), AS_ZERO, dtype=np.int64)
    out[(missing_type == MISSING_NAN) & default_left] = NAN_LEFT
    out[(missing_type == MISSING_NAN) & ~default_left] = NAN_RIGHT
    out[(missing_type == MISSING_ZERO) & default_left] = ZERO_LEFT
    out[(missing_type == MISSING_ZERO) & ~default_left] = ZERO_RIGHT
    if np.isin(missing_type, [MISSING_NONE, MISSING_NAN, MISSING_ZERO], invert=True).any():
        raise ValueError("unknown missing-value type in the model")
    return out


@numba.njit(cache=True, nogil=True)
def tree_paths(
    tree_start: np.ndarray,
    feature: np.ndarray,
    left: np.ndarray,
    parent: np.ndarray,
    count: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per node (the edge into it from its parent):

    ``prev``: the node below the nearest ancestor split on the parent's feature, or -1;
    ``z``: the merged zero fraction of that feature down to this edge; ``depth``;
    ``distinct``: features split on the path from the root; ``is_left``;
    ``internal_below``: internal nodes in the subtree (itself included).
    """
    n_nodes = feature.shape[0]
    prev = np.full(n_nodes, -1, dtype=np.int64)
    z = np.ones(n_nodes)
    depth = np.zeros(n_nodes, dtype=np.int64)
    distinct = np.zeros(n_nodes, dtype=np.int64)
    is_left = np.zeros(n_nodes, dtype=np.bool_)
    internal_below = (feature >= 0).astype(np.int64)
    for n in range(n_nodes):  # preorder: parents before children
        p = parent[n]
        if p < 0:
            continue
        is_left[n] = left[p] == n
        depth[n] = depth[p] + 1
        child, ancestor = p, parent[p]
        while ancestor >= 0:
            if feature[ancestor] == feature[p]:
                prev[n] = child
                break
            child, ancestor = ancestor, parent[ancestor]
        ratio = count[n] / count[p] if count[p] > 0 else 0.0
        z[n] = (z[prev[n]] if prev[n] >= 0 else 1.0) * ratio
        distinct[n] = distinct[p] + (1 if prev[n] < 0 else 0)
    for n in range(n_nodes - 1, -1, -1):
        if parent[n] >= 0:
            internal_below[parent[n]] += internal_below[n]
    return prev, z, depth, distinct, is_left, internal_below


@numba.njit(cache=True, nogil=True)
def leaf_contributions(value: float, z: np.ndarray, d: int, out: np.ndarray) -> None:
    """``out[pattern, i]``: feature i's contribution from a leaf of value ``value`` whose
    path features have merged zero fractions ``z[:d]``, when bit j of ``pattern`` says the
    row does not follow the path's splits on feature j (o_j = 0)."""
    weight = np.empty(d)
    binom = 1.0  # C(d - 1, a)
    for a in range(d):
        weight[a] = 1.0 / (d * binom)  # a! (d - 1 - a)! / d!
        binom = binom * (d - 1 - a) / (a + 1)
    coef = np.empty(d)
    for pattern in range(1 << d):
        for i in range(d):
            # prod_{j != i} (o_j t + z_j (1 - t)) in the basis t^a (1 - t)^(deg - a)
            coef[0] = 1.0
            deg = 0
            for j in range(d):
                if j == i:
                    continue
                o = 0.0 if (pattern >> j) & 1 else 1.0
                coef[deg + 1] = coef[deg] * o
                for a in range(deg, 0, -1):
                    coef[a] = coef[a] * z[j] + coef[a - 1] * o
                coef[0] = coef[0] * z[j]
                deg += 1
            integral = 0.0
            for a in range(d):
                integral += coef[a] * weight[a]
            o_i = 0.0 if (pattern >> i) & 1 else 1.0
            out[pattern, i] = value * (o_i - z[i]) * integral


def block_roots(
    tree_start: np.ndarray, parent: np.ndarray, depth: np.ndarray, internal_below: np.ndarray
) -> np.ndarray:
    """The highest nodes whose ancestors plus internal nodes below number at most
    ``BLOCK_BITS`` (a parent that qualifies makes its children qualify too)."""
    fits = depth + internal_below <= BLOCK_BITS
    parent_fits = np.where(parent >= 0, fits[np.maximum(parent, 0)], False)
    return np.flatnonzero(fits & ~parent_fits).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def block_shapes(
    roots: np.ndarray,
    feature: np.ndarray,
    parent: np.ndarray,
    depth: np.ndarray,
    internal_below: np.ndarray,
    num_features: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per block: its number of decision bits and of distinct features (table width)."""
    bits = depth[roots] + internal_below[roots]
    width = np.zeros(roots.shape[0], dtype=np.int64)
    seen = np.zeros(num_features, dtype=np.bool_)
    for b in range(roots.shape[0]):
        j = roots[b]
        nodes = _block_nodes(j, feature, parent, depth[j] + internal_below[j])
        count = 0
        for m in nodes:
            if not seen[feature[m]]:
                seen[feature[m]] = True
                count += 1
        for m in nodes:
            seen[feature[m]] = False
        width[b] = count
    return bits, width


@numba.njit(cache=True, nogil=True)
def _block_nodes(j: int, feature: np.ndarray, parent: np.ndarray, bits: int) -> np.ndarray:
    """The nodes whose decisions index block j: its ancestors (root first), then the
    internal nodes of its subtree in preorder."""
    nodes = np.empty(bits, dtype=np.int64)
    n_anc = 0
    a = parent[j]
    while a >= 0:
        n_anc += 1
        a = parent[a]
    a = parent[j]
    for i in range(n_anc - 1, -1, -1):
        nodes[i] = a
        a = parent[a]
    # Preorder subtree of j: contiguous from j; it ends when the depth returns to j's.
    count = n_anc
    m = j
    while count < bits:
        if feature[m] >= 0:
            nodes[count] = m
            count += 1
        m += 1
    return nodes


@numba.njit(cache=True, nogil=True)
def fill_blocks(
    roots: np.ndarray,
    bits: np.ndarray,
    width: np.ndarray,
    table_start: np.ndarray,
    slot_start: np.ndarray,
    bit_start: np.ndarray,
    feature: np.ndarray,
    parent: np.ndarray,
    value: np.ndarray,
    z: np.ndarray,
    is_left: np.ndarray,
    internal_below: np.ndarray,
    bit_node: np.ndarray,
    slot_feature: np.ndarray,
    table: np.ndarray,
) -> None:
    """Fill each block's decision nodes, feature slots and table (see module doc).

    Row ``idx`` of block b, at ``table_start[b] + idx * (width[b] + 1)``, is for the
    decisions ``went_left(bit_node[bit_start[b] + i]) == (idx >> i) & 1``; it holds the
    value of the leaf those decisions reach (0 if none) and then, per slot, the sum of the
    block's leaves' contributions to ``slot_feature[slot_start[b] + s]``.
    """
    num_features = 0
    for f in feature:
        num_features = max(num_features, f + 1)
    slot_of = np.full(max(num_features, 1), -1, dtype=np.int64)
    bit_of = np.full(feature.shape[0], -1, dtype=np.int64)
    # A leaf's path is no longer than its block's bits (its ancestors are bit nodes).
    longest = max(1, bits.max()) if bits.shape[0] else 1
    path = np.empty(longest, dtype=np.int64)
    zs = np.empty(longest)
    fbit = np.empty(longest, dtype=np.int64)
    for b in range(roots.shape[0]):
        j = roots[b]
        nb = bits[b]
        w = width[b]
        nodes = _block_nodes(j, feature, parent, nb)
        n_slots = 0
        for i in range(nb):
            m = nodes[i]
            bit_node[bit_start[b] + i] = m
            bit_of[m] = i
            if slot_of[feature[m]] < 0:
                slot_of[feature[m]] = n_slots
                slot_feature[slot_start[b] + n_slots] = feature[m]
                n_slots += 1
        # A binary subtree with i internal nodes has 2i + 1 nodes, contiguous in preorder.
        for m in range(j, j + 2 * internal_below[j] + 1):
            if feature[m] < 0:
                _add_leaf(
                    m,
                    nb,
                    w,
                    table_start[b],
                    bit_of,
                    slot_of,
                    feature,
                    parent,
                    value,
                    z,
                    is_left,
                    path,
                    zs,
                    fbit,
                    table,
                )
        for i in range(nb):
            bit_of[nodes[i]] = -1
            slot_of[feature[nodes[i]]] = -1


@numba.njit(cache=True, nogil=True)
def _add_leaf(
    leaf: int,
    nb: int,
    w: int,
    start: int,
    bit_of: np.ndarray,
    slot_of: np.ndarray,
    feature: np.ndarray,
    parent: np.ndarray,
    value: np.ndarray,
    z: np.ndarray,
    is_left: np.ndarray,
    path: np.ndarray,
    zs: np.ndarray,
    fbit: np.ndarray,
    table: np.ndarray,
) -> None:
    """Add one leaf's contributions to every row of its block's table."""
    # The path's edges root first; each edge's feature bit in first-appearance order.
    length = 0
    c = leaf
    while parent[c] >= 0:
        path[length] = c
        length += 1
        c = parent[c]
    for i in range(length // 2):
        path[i], path[length - 1 - i] = path[length - 1 - i], path[i]
    d = 0
    features = np.empty(length, dtype=np.int64)
    for e in range(length):
        c = path[e]
        f = feature[parent[c]]
        at = -1
        for i in range(d):
            if features[i] == f:
                at = i
        if at < 0:
            at = d
            features[d] = f
            d += 1
        fbit[e] = at
        zs[at] = z[c]  # the deepest edge on a feature holds its merged zero fraction
    contributions = np.zeros((1 << d, max(d, 1)))
    if d > 0:
        leaf_contributions(value[leaf], zs, d, contributions)
    for idx in range(1 << nb):
        pattern = 0
        for e in range(length):
            c = path[e]
            went_left = (idx >> bit_of[parent[c]]) & 1
            if went_left != is_left[c]:
                pattern |= 1 << fbit[e]
        row = start + idx * (w + 1)
        if pattern == 0:
            table[row] = value[leaf]
        for i in range(d):
            table[row + 1 + slot_of[features[i]]] += contributions[pattern, i]


def quadrature(points: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``points``-point Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(points)
    return (x + 1.0) / 2.0, w / 2.0


def lanes_for(max_distinct: int) -> int:
    """Quadrature points for a tree whose paths test at most ``max_distinct`` features:
    exact needs ceil(d / 2); rounded up to whole vectors."""
    needed = max(1, math.ceil(max_distinct / 2))
    return LANES * math.ceil(needed / LANES)
