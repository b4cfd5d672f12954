"""Exact TreeSHAP at close to the cost of a prediction: tables built once per model.

Everything that depends only on the model is computed when it loads
(:class:`FastTreeShap`, with ``treeshap_tables``). Trees at most
``treeshap_tables.BLOCK_BITS`` deep get *block tables*: every leaf's exact contributions
for each of its 2^d hot/cold patterns, summed per pattern of the (at most 8) decisions
that determine the patterns of a block of leaves, so a row costs one table row per block
(about 320 rows on a 200-tree depth-4 model). Deeper trees, and any tree once the tables
would pass ``treeshap_tables.TABLE_MAX_BYTES``, are explained by exact Gauss-Legendre
quadrature, four points per vector instruction. Per row the compiled kernel
(``treeshap_kernels.explain``) evaluates the decisions once, adds table rows and walks the
remaining trees. Values equal LightGBM's ``pred_contrib`` (tests hold them to 1e-9), and
the raw score it returns is the compiled predictor's
(``models.forest.CompiledPredictor.predict_raw``) to the bit.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from explain import treeshap_kernels as kernels
from explain import treeshap_tables as tables
from models.forest import Forest, read_forest


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


def _offsets(sizes: np.ndarray) -> np.ndarray:
    """Where each of consecutive blocks of ``sizes`` starts."""
    return (np.cumsum(sizes) - sizes).astype(np.int64)


class _Paths:
    """Per-node facts about the forest's paths (see ``treeshap_tables.tree_paths``)."""

    def __init__(self, f: Forest) -> None:
        self.prev, self.z, self.depth, self.distinct, self.is_left, self.below = tables.tree_paths(
            f.tree_start, f.feature, f.left, f.parent, f.count
        )
        self.sizes = np.diff(f.tree_start)
        self.starts = f.tree_start[:-1]
        self.tree_of = np.repeat(np.arange(f.num_trees), self.sizes)
        self.tree_depth = (
            np.maximum.reduceat(self.depth, self.starts) if f.num_trees else self.sizes
        )
        self.single = self.sizes == 1
        variant = tables.decision_variant(f.missing_type, f.default_left)
        self.node_x = np.where(f.feature >= 0, variant * f.num_features + f.feature, 0)


def _block_tables(f: Forest, paths: _Paths) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Choose the tabulated trees (cheapest first, within ``TABLE_MAX_BYTES``) and build
    their blocks; returns which trees are tabulated and the kernel's block arrays."""
    roots = tables.block_roots(f.tree_start, f.parent, paths.depth, paths.below)
    shallow = (paths.tree_depth <= tables.BLOCK_BITS) & ~paths.single
    roots = roots[shallow[paths.tree_of[roots]]]
    bits, width = tables.block_shapes(
        roots, f.feature, f.parent, paths.depth, paths.below, f.num_features
    )
    table_bytes = 8 * (width + 1) * (1 << bits)
    tree_bytes = np.bincount(
        paths.tree_of[roots], weights=table_bytes, minlength=f.num_trees
    ).astype(np.int64)
    candidates = np.flatnonzero(shallow)
    by_cost = candidates[np.argsort(tree_bytes[candidates], kind="stable")]
    tabulated = np.zeros(f.num_trees, dtype=bool)
    tabulated[by_cost[np.cumsum(tree_bytes[by_cost]) <= tables.TABLE_MAX_BYTES]] = True
    keep = tabulated[paths.tree_of[roots]]
    roots, bits, width = roots[keep], bits[keep], width[keep]
    # Same-shape blocks together: the kernel's inner loops then repeat their trip counts.
    order = np.lexsort((roots, width, bits))
    roots, bits, width = roots[order], bits[order], width[order]
    bit_start, slot_start = _offsets(bits), _offsets(width)
    table_start = _offsets((width + 1) * (1 << bits))
    bit_node = np.zeros(int(bits.sum()), dtype=np.int64)
    slot_feature = np.zeros(int(width.sum()), dtype=np.int64)
    table = np.zeros(int(((width + 1) * (1 << bits)).sum()))
    tables.fill_blocks(
        roots,
        bits,
        width,
        table_start,
        slot_start,
        bit_start,
        f.feature,
        f.parent,
        f.value,
        paths.z,
        paths.is_left,
        paths.below,
        bit_node,
        slot_feature,
        table,
    )
    info = np.stack([paths.tree_of[roots], bit_start, bits, slot_start, width, table_start], 1)
    return tabulated, {
        "blocks": info.ravel(),
        "bit_x": paths.node_x[bit_node],
        "bit_threshold": f.threshold[bit_node],
        "slots": slot_feature,
        "table": table,
    }


def _quadrature_trees(
    f: Forest, paths: _Paths, trees: np.ndarray
) -> tuple[int, int, dict[str, np.ndarray]]:
    """The kernel's arrays for explaining ``trees`` by quadrature; returns the largest
    tree's node count, the most points of any tree, and the arrays."""
    sizes, starts, tree_of = paths.sizes, paths.starts, paths.tree_of
    points = np.array(
        [
            tables.lanes_for(int(paths.distinct[starts[t] : starts[t] + sizes[t]].max()))
            for t in trees
        ],
        dtype=np.int64,
    )
    max_points = int(points.max(initial=0))
    max_nodes = int(sizes[trees].max(initial=0))
    in_q = np.zeros(f.num_trees, dtype=bool)
    in_q[trees] = True
    node_in_q = in_q[tree_of]
    columns = kernels.EDGE_FLOAT_COLUMNS
    edge_at = _offsets(np.where(node_in_q, columns, 0))
    prev, z = paths.prev, paths.z
    z_prev = np.where(prev >= 0, z[np.maximum(prev, 0)], 1.0)
    ratio = np.divide(z, z_prev, out=np.zeros_like(z), where=z_prev > 0)
    edge_floats = np.zeros(columns * int(node_in_q.sum()))
    q_nodes = np.flatnonzero(node_in_q)
    for column, values in enumerate([z, f.value, ratio, 1.0 - z_prev]):
        edge_floats[edge_at[q_nodes] + column] = values[q_nodes]
    rules = [tables.quadrature(int(count)) for count in points]
    point_floats = [np.concatenate([t, w, -w / (1.0 - t)]) for t, w in rules]
    first = starts[tree_of]
    bits = kernels.EDGE_BITS
    record = (
        np.where(f.parent >= 0, f.parent - first, 0)
        | (np.where(prev >= 0, prev - first, sizes[tree_of]) << bits)
        | (np.where(f.parent >= 0, f.feature[np.maximum(f.parent, 0)], 0) << (2 * bits))
        | (paths.is_left.astype(np.int64) << (3 * bits))
    )
    decisions = np.flatnonzero(node_in_q & (f.feature >= 0)).astype(np.int64)
    leaves = np.flatnonzero(node_in_q & (f.feature < 0)).astype(np.int64)
    ends = starts[trees] + sizes[trees]
    info = np.stack(
        [
            trees,
            starts[trees],
            ends,
            points,
            _offsets(3 * points),
            np.searchsorted(decisions, starts[trees]),
            np.searchsorted(decisions, ends),
            np.searchsorted(leaves, starts[trees]),
            np.searchsorted(leaves, ends),
        ],
        1,
    )
    return (
        max_nodes,
        max_points,
        {
            "qtrees": info.ravel(),
            "qdecisions": decisions,
            "qleaves": leaves,
            "edge": np.stack([record, edge_at], 1).ravel(),
            "points": np.concatenate(point_floats) if point_floats else np.zeros(0),
            "edge_floats": edge_floats,
        },
    )


def _pack(fields: list[np.ndarray], dtype: type, head: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``fields`` after ``head`` free slots; return the array and the bounds."""
    bounds = head + np.concatenate(([0], np.cumsum([len(a) for a in fields]))).astype(np.int64)
    out = np.zeros(bounds[-1], dtype=dtype)
    for a, start in zip(fields, bounds[:-1], strict=True):
        out[start : start + len(a)] = a
    return out, bounds


class FastTreeShap:
    """Exact TreeSHAP for a LightGBM model, equal to ``pred_contrib`` (see module doc)."""

    method = "treeshap-fast"

    def __init__(self, model: lgb.Booster | Forest) -> None:
        f = self.forest = model if isinstance(model, Forest) else read_forest(model)
        if max(f.num_features, f.max_tree_nodes) > kernels.EDGE_MASK:
            raise ValueError("trees or feature counts this large are not supported")
        self.base_value = _expected_value(f)
        paths = _Paths(f)
        tabulated, block = _block_tables(f, paths)
        quadrature = np.flatnonzero(~tabulated & ~paths.single)
        max_nodes, max_points, quad = _quadrature_trees(f, paths, quadrature)
        ints = [np.zeros(0, dtype=np.int64)] * kernels.INT_FIELDS
        floats = [np.zeros(0)] * kernels.FLOAT_FIELDS
        ints[kernels.SIZES] = np.array([f.num_trees, max_nodes, max_points])
        ints[kernels.BLOCKS] = block["blocks"]
        ints[kernels.BIT_X] = block["bit_x"]
        ints[kernels.SLOTS] = block["slots"]
        ints[kernels.QTREES] = quad["qtrees"]
        ints[kernels.QDECISIONS] = quad["qdecisions"]
        ints[kernels.NODE_X] = paths.node_x
        ints[kernels.EDGE] = quad["edge"]
        ints[kernels.QLEAVES] = quad["qleaves"]
        floats[kernels.SCALARS] = np.array([self.base_value])
        floats[kernels.TREE_VALUE] = np.where(paths.single, f.value[paths.starts], 0.0)
        floats[kernels.BIT_THRESHOLD] = block["bit_threshold"]
        floats[kernels.TABLE] = block["table"]
        floats[kernels.POINTS] = quad["points"]
        floats[kernels.EDGE_FLOATS] = quad["edge_floats"]
        floats[kernels.THRESHOLD] = f.threshold
        floats[kernels.VALUE] = f.value
        head = kernels.INT_FIELDS + kernels.FLOAT_FIELDS + 2
        self._ints, int_bounds = _pack(ints, np.int64, head)
        self._floats, float_bounds = _pack(floats, np.float64, 0)
        self._ints[: kernels.INT_FIELDS + 1] = int_bounds
        self._ints[kernels.INT_FIELDS + 1 : head] = float_bounds
        #: How the trees are explained (tests check both paths; the benchmark reports them).
        self.table_trees = int(tabulated.sum())
        self.quadrature_trees = len(quadrature)
        self.table_bytes = int(block["table"].nbytes)

    @property
    def nbytes(self) -> int:
        """Memory held by the precomputed tables (trees included)."""
        f = self.forest
        arrays = [getattr(f, name) for name in f.__dataclass_fields__ if name != "num_features"]
        return int(sum(a.nbytes for a in arrays) + self._ints.nbytes + self._floats.nbytes)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.explain(x)[0]

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(contributions (n, k + 1) with the base value last, raw scores (n,))``."""
        k = self.forest.num_features
        array = np.ascontiguousarray(x, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != k:
            raise ValueError(f"expected an (n, {k}) feature matrix, got shape {array.shape}")
        contributions = np.empty((array.shape[0], k + 1), dtype=np.float64)
        raw = np.empty(array.shape[0], dtype=np.float64)
        kernels.explain(array, contributions, raw, self._ints, self._floats)
        return contributions, raw
