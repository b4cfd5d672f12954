"""Compiled kernel: exact path-dependent TreeSHAP and the raw score, per row.

Why it is exact. For a leaf with value v, each feature j on its path has a merged zero
fraction z_j (share of training rows following the path's splits on j) and one fraction
o_j (1 if the row follows them all, else 0); the TreeSHAP value of feature i is

    phi_i = sum over leaves of  v * (o_i - z_i) * integral_0^1 prod_{j != i} f_j(t) dt,
    f_j(t) = t * o_j + (1 - t) * z_j

(the Shapley weight |S|!(d-|S|-1)!/d! is the Beta integral of t^|S| (1-t)^(d-1-|S|)).
Trees are explained one of two ways (``treeshap_tables`` chooses, per tree):

* Block tables: the contributions of the leaves below a node depend only on the
  decisions of at most 8 nodes (the node's ancestors and the internal nodes below it), so
  they were summed per decision pattern when the model loaded; per row the kernel forms
  each block's pattern and adds one table row.
* Quadrature: the integrand is a polynomial of degree < d, so Gauss-Legendre quadrature
  with ceil(d / 2) points is exact. With f_i divided out, the per-leaf product is shared by
  all of the path's features: products flow down the tree (one factor per edge), leaf sums
  flow up, and each edge adds its feature's share — O(nodes x points) per tree. A feature
  split twice on one path merges its fractions by product, as LightGBM does: the edge
  factors are ratios of merged states and the shares telescope to the merged value. Every
  edge is hot (followed, with every earlier split on its feature), cold, or below a cold
  split on its feature; the factor and share of each state are formed from the edge's
  zero fractions without branching, four points per vector instruction. Leaf values
  times path products flow up, so each edge's share times the sum below it is its
  feature's contribution from all the leaves below.

Why it is fast. Decisions are one comparison each: the row's values are first turned into
one value per missing-value rule (``decision_values``), so no branch depends on the data.
All model arrays arrive packed in two arrays (``ints``, ``floats``), because numba's call
overhead grows with the number of array arguments (~0.2 µs each). The raw score is the
sum of the reached leaves' values in tree order, the same additions as
``models.forest_kernels.predict_raw``, so the two agree to the bit.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from explain.treeshap_simd import add4, div4, fma4, load4, mul4, splat4, store4
from explain.treeshap_tables import (
    AS_ZERO,
    NAN_LEFT,
    NAN_RIGHT,
    VARIANTS,
    ZERO_LEFT,
    ZERO_RIGHT,
)
from models.forest_kernels import ZERO_THRESHOLD

# Indices are cast to unsigned: numba then skips its negative-index wrap-around, several
# instructions per access in loops that are all memory access.
U = numba.uint64

# Fields of the packed int64 array; its head holds each field's bounds, then each float
# field's bounds.
SIZES = 0  # [trees, largest quadrature tree's nodes, most quadrature points]
BLOCKS = 1  # per block: tree, first bit, bits, first slot, width, first table entry
BIT_X = 2  # per block bit: index into the row's decision values
SLOTS = 3  # per block slot: feature
# Per quadrature tree: tree, first node, end, points, first point, its internal nodes
# (from, to) in QDECISIONS, its leaves (from, to) in QLEAVES.
QTREES = 4
QDECISIONS = 5  # internal nodes of the quadrature trees, per tree in preorder (root first)
NODE_X = 6  # per node: index into the row's decision values
# Per node, side by side: the edge record (tree-local parent, tree-local previous edge on
# the parent's feature or the tree's node count, parent's feature, is left child) and the
# start of the edge's floats.
EDGE = 7
EDGE_COLUMNS = 2
QLEAVES = 8  # leaves of the quadrature trees, per tree in preorder
INT_FIELDS = 9
BLOCK_COLUMNS = 6
QTREE_COLUMNS = 9

SCALARS = 0  # [base value]
TREE_VALUE = 1  # per tree: its value if it is a single leaf, else 0
BIT_THRESHOLD = 2
TABLE = 3
POINTS = 4  # per quadrature tree: its points t, then weights w, then -w / (1 - t)
EDGE_FLOATS = 5
THRESHOLD = 6
VALUE = 7
FLOAT_FIELDS = 8

EDGE_BITS = 20  # parent, previous edge and feature each get 20 bits of the edge record
EDGE_MASK = (1 << EDGE_BITS) - 1
# Per edge of a quadrature tree: merged zero fraction z, the child's value (0 if internal),
# z / z_prev (0 if z_prev is 0) and 1 - z_prev (z_prev 1 without an earlier split).
EDGE_FLOAT_COLUMNS = 4


@numba.njit(cache=True, inline="always")
def _ints(ints: np.ndarray, field: int) -> np.ndarray:
    return ints[ints[field] : ints[field + 1]]


@numba.njit(cache=True, inline="always")
def _floats(ints: np.ndarray, floats: np.ndarray, field: int) -> np.ndarray:
    at = INT_FIELDS + 1 + field
    return floats[ints[at] : ints[at + 1]]


@numba.njit(cache=True, inline="always")
def decision_values(row: np.ndarray, out: np.ndarray) -> None:
    """Per missing-value rule, the value whose ``<= threshold`` is LightGBM's decision
    (``goes_left``): NaN counts as 0 unless NaN is the missing type; a missing value going
    left becomes -inf (``-inf <= t`` for every threshold), going right NaN (never ``<=``)."""
    k = row.shape[0]
    for f in range(k):
        v = row[f]
        nan = v != v
        tiny = abs(v) <= ZERO_THRESHOLD  # read as exactly 0 by LightGBM (see goes_left)
        zero = nan or tiny
        w = 0.0 if tiny else v
        out[AS_ZERO * k + f] = 0.0 if nan else w
        out[NAN_LEFT * k + f] = -math.inf if nan else w
        out[NAN_RIGHT * k + f] = w
        out[ZERO_LEFT * k + f] = -math.inf if zero else w
        out[ZERO_RIGHT * k + f] = math.nan if zero else w


@numba.njit(cache=True)
def _add_blocks(
    xv: np.ndarray,
    phi: np.ndarray,
    tree_value: np.ndarray,
    blocks: np.ndarray,
    bit_x: np.ndarray,
    bit_threshold: np.ndarray,
    slots: np.ndarray,
    table: np.ndarray,
) -> None:
    """Each block's decisions form its row index; the row adds the reached leaf's value
    to its tree and the block's contributions to their features. Blocks come sorted by
    shape, so the two inner loops' trip counts repeat and their branches predict."""
    for b in range(blocks.shape[0] // BLOCK_COLUMNS):
        at = b * BLOCK_COLUMNS
        tree = blocks[U(at)]
        first_bit = blocks[U(at + 1)]
        bits = blocks[U(at + 2)]
        first_slot = blocks[U(at + 3)]
        width = blocks[U(at + 4)]
        index = 0
        for i in range(bits):
            j = first_bit + i
            index |= int(xv[U(bit_x[U(j)])] <= bit_threshold[U(j)]) << i
        row = blocks[U(at + 5)] + index * (width + 1)
        tree_value[U(tree)] += table[U(row)]
        for s in range(width):
            phi[U(slots[U(first_slot + s)])] += table[U(row + 1 + s)]


@numba.njit(cache=True, inline="always")
def _edge(
    n: int,
    s: int,
    stride: int,
    lanes: int,
    edge: np.ndarray,
    edge_floats: np.ndarray,
    flags: np.ndarray,
    internal: bool,
) -> tuple:
    """The state of the edge into node n (tree starting at s): records the node's merged
    one fraction and whether the row reaches it in ``flags`` (if ``internal``: below a
    leaf no one reads them), and returns whether it is reached, the broadcast
    coefficients of its factor and share (see below), and where its parent's and its
    previous same-feature edge's vectors start in ``work``."""
    i = n - s
    record = edge[U(EDGE_COLUMNS * n)]
    fb = edge[U(EDGE_COLUMNS * n + 1)]
    p = record & EDGE_MASK
    prev = (record >> EDGE_BITS) & EDGE_MASK
    followed = np.int64(flags[U(3 * p)] == (record >> (3 * EDGE_BITS)))
    above = flags[U(3 * prev + 1)]
    o = followed & above
    reached = flags[U(3 * p + 2)] & followed
    if internal:
        flags[U(3 * i + 1)] = o
        flags[U(3 * i + 2)] = reached
    z = edge_floats[U(fb)]
    hot = np.float64(o)
    live = np.float64(above)  # 0: below a cold split on this feature
    # Hot: f = z + (1 - z) t; cold: f = z (1 - t). Factor f / f_prev; share
    # w ((1 - z) / f - (1 - z_prev) / f_prev), the first term -1 / (1 - t) when cold.
    # Below a cold split on the feature: factor z / z_prev, share 0.
    coefficients = (
        splat4(z),
        splat4(1.0 - z),
        splat4(hot - z),
        splat4(live),
        splat4((1.0 - live) * edge_floats[U(fb + 2)]),
        splat4(hot * (1.0 - z)),
        splat4(-live * edge_floats[U(fb + 3)]),
        splat4(live - hot),
    )
    feature = 4 * ((record >> (2 * EDGE_BITS)) & EDGE_MASK)
    return (
        reached,
        coefficients,
        splat4(edge_floats[U(fb + 1)]),
        i * stride,
        p * stride,
        prev * stride + 3 * lanes,
        feature,
    )


@numba.njit(cache=True, inline="always")
def _factor_share(
    b: int,
    lanes: int,
    tp: int,
    prb: int,
    points: np.ndarray,
    work: np.ndarray,
    unit: tuple,
    c: tuple,
) -> tuple:
    """Points b .. b + 3 of an edge: 1 / f of the hot state, the factor and the share."""
    v_z, v_slope, v_oz, v_live, v_ratio, v_hot, v_prev, v_cold = c
    t = load4(points, tp + b)
    w = load4(points, tp + lanes + b)
    cold_share = load4(points, tp + 2 * lanes + b)  # -w / (1 - t)
    inv_prev = load4(work, prb + b)
    inv_hot = div4(unit, fma4(v_slope, t, v_z))
    f = fma4(v_oz, t, v_z)
    fac = fma4(v_live, mul4(f, inv_prev), v_ratio)
    sh = fma4(v_hot, inv_hot, mul4(v_prev, inv_prev))
    return inv_hot, fac, fma4(w, sh, mul4(v_cold, cold_share))


@numba.njit(cache=True)
def _add_quadrature(
    xv: np.ndarray,
    phi4: np.ndarray,
    tree_value: np.ndarray,
    qtrees: np.ndarray,
    qdecisions: np.ndarray,
    qleaves: np.ndarray,
    node_x: np.ndarray,
    threshold: np.ndarray,
    value: np.ndarray,
    edge: np.ndarray,
    points: np.ndarray,
    edge_floats: np.ndarray,
    work: np.ndarray,
    flags: np.ndarray,
) -> None:
    """Per tree, three passes. Down, over the edges into internal nodes in preorder: each
    edge's state, 1 / f, factor and share at each point, and the path product. Leaves,
    over the edges into leaves: the same; the leaf value times the path product is the
    leaf's sum, its share times that goes to its feature and the sum to its parent. Up,
    over the edges into internal nodes in reverse preorder: the same with the sums
    gathered below. Contributions go to ``phi4``, four partial sums per feature (a vector
    carried round a loop is split into lanes and reassembled on every iteration).

    Per tree-local node i, ``work`` holds side by side (one base pointer: with more of
    them the loop's scalar part spills registers) the path product, the share, the sum of
    leaf values times path products below, and 1 / f of the hot state, at each point;
    ``flags`` holds whether the node went left, its merged one fraction and whether the
    row reaches it. Slot m (the tree's node count) stands for "no earlier split on this
    feature": one fraction 1, 1 / f 1. Leaves keep nothing: no edge starts below them.
    """
    unit = splat4(1.0)
    zero = splat4(0.0)
    for qt in range(qtrees.shape[0] // QTREE_COLUMNS):
        at = qt * QTREE_COLUMNS
        s = qtrees[U(at + 1)]
        m = qtrees[U(at + 2)] - s
        lanes = qtrees[U(at + 3)]
        tp = qtrees[U(at + 4)]
        inner_from = qtrees[U(at + 5)]
        inner_to = qtrees[U(at + 6)]
        stride = 4 * lanes
        flags[U(3 * m + 1)] = 1
        for b in range(0, lanes, 4):
            store4(work, m * stride + 3 * lanes + b, unit)
            store4(work, b, unit)  # the root's path product
            store4(work, 2 * lanes + b, zero)  # the root's sum below (never read)
        flags[2] = 1
        for j in range(inner_from, inner_to):
            n = qdecisions[U(j)]
            flags[U(3 * (n - s))] = np.int64(xv[U(node_x[U(n)])] <= threshold[U(n)])
        leaf = s
        for j in range(inner_from + 1, inner_to):  # the root has no edge into it
            n = qdecisions[U(j)]
            _, c, _, ib, pib, prb, _ = _edge(n, s, stride, lanes, edge, edge_floats, flags, True)
            for b in range(0, lanes, 4):
                inv_hot, fac, sh = _factor_share(b, lanes, tp, prb, points, work, unit, c)
                store4(work, ib + b, mul4(load4(work, pib + b), fac))
                store4(work, ib + lanes + b, sh)
                store4(work, ib + 2 * lanes + b, zero)
                store4(work, ib + 3 * lanes + b, inv_hot)  # read only below a hot edge
        for j in range(qtrees[U(at + 7)], qtrees[U(at + 8)]):
            n = qleaves[U(j)]
            reached, c, v, _, pib, prb, fa = _edge(
                n, s, stride, lanes, edge, edge_floats, flags, False
            )
            leaf = n if reached == 1 else leaf
            for b in range(0, lanes, 4):
                _, fac, sh = _factor_share(b, lanes, tp, prb, points, work, unit, c)
                here = mul4(v, mul4(load4(work, pib + b), fac))
                store4(phi4, fa, fma4(sh, here, load4(phi4, fa)))
                store4(work, pib + 2 * lanes + b, add4(load4(work, pib + 2 * lanes + b), here))
        for j in range(inner_to - 1, inner_from, -1):
            record = edge[U(EDGE_COLUMNS * qdecisions[U(j)])]
            ib = (qdecisions[U(j)] - s) * stride
            pib = (record & EDGE_MASK) * stride
            fa = 4 * ((record >> (2 * EDGE_BITS)) & EDGE_MASK)
            for b in range(0, lanes, 4):
                here = load4(work, ib + 2 * lanes + b)
                store4(phi4, fa, fma4(load4(work, ib + lanes + b), here, load4(phi4, fa)))
                store4(work, pib + 2 * lanes + b, add4(load4(work, pib + 2 * lanes + b), here))
        tree_value[U(qtrees[U(at)])] = value[U(leaf)]


@numba.njit(cache=True)
def explain(
    x: np.ndarray, contributions: np.ndarray, raw: np.ndarray, ints: np.ndarray, floats: np.ndarray
) -> None:
    """Exact SHAP values of each row of ``x`` into ``contributions`` (n, k + 1; the base
    value last) and its raw score into ``raw``; the model is packed in ``ints`` and
    ``floats`` (see the field constants)."""
    sizes = _ints(ints, SIZES)
    num_trees, max_nodes, max_points = sizes[0], sizes[1], sizes[2]
    blocks = _ints(ints, BLOCKS)
    bit_x = _ints(ints, BIT_X)
    slots = _ints(ints, SLOTS)
    qtrees = _ints(ints, QTREES)
    qdecisions = _ints(ints, QDECISIONS)
    node_x = _ints(ints, NODE_X)
    edge = _ints(ints, EDGE)
    qleaves = _ints(ints, QLEAVES)
    base_value = _floats(ints, floats, SCALARS)[0]
    tree_value0 = _floats(ints, floats, TREE_VALUE)
    bit_threshold = _floats(ints, floats, BIT_THRESHOLD)
    table = _floats(ints, floats, TABLE)
    points = _floats(ints, floats, POINTS)
    edge_floats = _floats(ints, floats, EDGE_FLOATS)
    threshold = _floats(ints, floats, THRESHOLD)
    value = _floats(ints, floats, VALUE)

    k = contributions.shape[1] - 1
    xv = np.empty(VARIANTS * k)
    phi = np.empty(k)
    tree_value = np.empty(num_trees)
    work = np.empty(4 * (max_nodes + 1) * max_points)
    flags = np.empty(3 * (max_nodes + 1), dtype=np.int64)
    phi4 = np.empty(4 * k)
    for r in range(x.shape[0]):
        decision_values(x[r], xv)
        phi[:] = 0.0
        phi4[:] = 0.0
        tree_value[:] = tree_value0
        _add_blocks(xv, phi, tree_value, blocks, bit_x, bit_threshold, slots, table)
        if qtrees.shape[0] > 0:
            _add_quadrature(
                xv,
                phi4,
                tree_value,
                qtrees,
                qdecisions,
                qleaves,
                node_x,
                threshold,
                value,
                edge,
                points,
                edge_floats,
                work,
                flags,
            )
            for j in range(k):
                phi[j] += (phi4[4 * j] + phi4[4 * j + 1]) + (phi4[4 * j + 2] + phi4[4 * j + 3])
        total = 0.0
        for t in range(num_trees):
            total += tree_value[t]
        raw[r] = total
        out = contributions[r]
        for j in range(k):
            out[j] = phi[j]
        out[k] = base_value
