"""Compiled kernels: LightGBM's decisions, predictions and exact path-dependent TreeSHAP.

Why this is exact and fast. For a leaf with value v whose path holds the (merged) features
P, each feature j with zero fraction z_j (share of training rows following the path's
branches for j) and one fraction o_j (1 if the row follows them all, else 0), the
path-dependent TreeSHAP value of feature i is

    phi_i = sum over leaves of  v * (o_i - z_i) * integral_0^1 prod_{j in P, j != i} f_j(t) dt,
    f_j(t) = t * o_j + (1 - t) * z_j

(the Shapley weight |S|!(d-|S|-1)!/d! is the Beta integral of t^|S| (1-t)^(d-1-|S|)).
The integrand is a polynomial of degree < d, so Gauss-Legendre quadrature with
ceil(d / 2) points is exact. With f_i divided out, the per-leaf product is shared by all
of the path's features; products then flow down the tree (one factor per edge) and leaf
sums flow up (one addition per edge), and each edge adds its feature's share: O(nodes x
points) per tree instead of O(leaves x depth^2). A feature split twice on one path merges
its fractions by product, as LightGBM does; the edge factors are ratios of merged states,
and the per-edge shares telescope to the merged value at the deepest split.

Because o_j is 0 or 1, every edge has three possible factors and shares (hot, cold, or
already cold above); all three are precomputed per quadrature point when the model loads,
so the per-row work is table lookups, multiplications and additions.
"""

from __future__ import annotations

import numba
import numpy as np

from models.forest_kernels import goes_left

HOT, COLD, COLD_ABOVE = 0, 1, 2


@numba.njit(cache=True)
def explain(
    x: np.ndarray,
    contributions: np.ndarray,
    raw: np.ndarray,
    base_value: float,
    tree_start: np.ndarray,
    tree_points: np.ndarray,
    internal_start: np.ndarray,
    internal: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    default_left: np.ndarray,
    missing_type: np.ndarray,
    value: np.ndarray,
    local_parent: np.ndarray,
    is_left: np.ndarray,
    prev_local: np.ndarray,
    parent_feature: np.ndarray,
    table_start: np.ndarray,
    table: np.ndarray,
    max_nodes: int,
    max_points: int,
) -> None:
    """Exact SHAP values of each row into ``contributions`` (n, k + 1; base value last)
    and its raw score into ``raw``.

    Per edge into node n (tree-local index i, parent ``local_parent[n]``): the edge's
    state is HOT, COLD or COLD_ABOVE; ``table[table_start[n] + 2 * (state * points + q)]``
    is its factor at quadrature point q and the next entry its weighted share (side by
    side: one stream of memory per edge, as a large model's tables exceed the cache).
    ``prev_local[n]`` is the tree-local node below the previous split on the same
    feature, or ``max_nodes`` (a slot whose one fraction is always 1). States are
    computed arithmetically: on a random path a mispredicted branch costs more than the
    arithmetic it would skip.
    """
    product = np.empty((max_nodes, max_points))
    below = np.empty((max_nodes, max_points))
    share = np.empty((max_nodes, max_points))
    went_left = np.zeros(max_nodes, dtype=np.float64)
    one = np.ones(max_nodes + 1, dtype=np.float64)  # merged one fraction into node i
    reached = np.empty(max_nodes, dtype=np.float64)  # 1 on the row's own path
    k = contributions.shape[1] - 1
    for r in range(x.shape[0]):
        phi = contributions[r]
        for j in range(k):
            phi[j] = 0.0
        phi[k] = base_value
        total = 0.0
        for t in range(tree_start.shape[0] - 1):
            s = tree_start[t]
            e = tree_start[t + 1]
            if e - s == 1:
                total += value[s]  # a single-leaf tree only shifts the base value
                continue
            for j in range(internal_start[t], internal_start[t + 1]):
                n = internal[j]
                went_left[n - s] = goes_left(
                    x[r, feature[n]], threshold[n], default_left[n], missing_type[n]
                )
            points = tree_points[t]
            for q in range(points):
                product[0, q] = 1.0
                below[0, q] = 0.0
            reached[0] = 1.0
            tree_value = 0.0
            # Down (preorder, parents first): path products, and leaf values times them.
            for n in range(s + 1, e):
                i = n - s
                ip = local_parent[n]
                followed = 1.0 - abs(went_left[ip] - is_left[n])
                above = one[prev_local[n]]
                one[i] = above * followed
                reached[i] = reached[ip] * followed
                state = 2 - int(above * (1.0 + followed))  # HOT 0, COLD 1, COLD_ABOVE 2
                at = table_start[n] + 2 * state * points
                v = value[n]  # 0 at internal nodes: their sums start empty
                tree_value += v * reached[i]  # exactly one leaf is reached
                for q in range(points):
                    carried = product[ip, q] * table[at + 2 * q]
                    product[i, q] = carried
                    below[i, q] = v * carried
                    share[i, q] = table[at + 2 * q + 1]
            # Up (children first): leaf sums into parents, each edge's share to its feature.
            for n in range(e - 1, s, -1):
                i = n - s
                ip = local_parent[n]
                acc = 0.0
                for q in range(points):
                    b = below[i, q]
                    below[ip, q] += b
                    acc += share[i, q] * b
                phi[parent_feature[n]] += acc
            total += tree_value
        raw[r] = total
