"""A LightGBM model's trees as flat arrays, read from the model's own text format.

The text format is what LightGBM itself loads (``threshold=``, ``leaf_value=`` … written
with round-trip precision), so decisions and leaf values here are bit-for-bit LightGBM's.
Nodes of each tree are stored in preorder (a parent before its children), one array per
attribute across all trees, which is what the compiled kernels walk.

Only what riskscore trains is supported: binary models with numerical splits. Anything
else (categorical splits, linear trees, several classes) is refused at load, not
mis-explained later.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from models.forest_kernels import predict_raw

# LightGBM's decision_type bits: 1 = categorical, 2 = default left, bits 2-3 = missing type.
_CATEGORICAL = 1
_DEFAULT_LEFT = 2
MISSING_NONE, MISSING_ZERO, MISSING_NAN = 0, 1, 2


class UnsupportedModel(ValueError):
    """A LightGBM model this explainer cannot reproduce exactly."""


@dataclass(frozen=True)
class Forest:
    """All trees' nodes, preorder per tree; leaves have ``feature == -1``."""

    tree_start: np.ndarray  # int64 (trees + 1): node range of each tree
    feature: np.ndarray  # int64: split feature, -1 at leaves
    threshold: np.ndarray  # float64
    default_left: np.ndarray  # bool: where a missing value goes
    missing_type: np.ndarray  # int8: MISSING_NONE / _ZERO / _NAN
    left: np.ndarray  # int64: global index of the left child, -1 at leaves
    right: np.ndarray  # int64
    parent: np.ndarray  # int64: -1 at each root
    value: np.ndarray  # float64: leaf value (0 for internal nodes)
    count: np.ndarray  # float64: training rows through the node (TreeSHAP's cover)
    num_features: int

    @property
    def num_trees(self) -> int:
        return len(self.tree_start) - 1

    @property
    def max_tree_nodes(self) -> int:
        return int(np.diff(self.tree_start).max()) if self.num_trees else 0


def _fields(block: str) -> dict[str, str]:
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _numbers(fields: dict[str, str], key: str, dtype: type) -> np.ndarray:
    text = fields.get(key, "")
    return np.array(text.split(), dtype=dtype) if text else np.zeros(0, dtype=dtype)


def read_forest(booster: lgb.Booster) -> Forest:
    """Flatten ``booster``'s trees; :class:`UnsupportedModel` for what cannot be exact."""
    text = booster.model_to_string()
    header = _fields(text.split("\nTree=", 1)[0])
    if header.get("num_class", "1") != "1" or header.get("num_tree_per_iteration", "1") != "1":
        raise UnsupportedModel("only single-output (binary or regression) models are supported")
    if "is_linear=1" in text:
        raise UnsupportedModel("linear trees are not supported")
    num_features = int(header["max_feature_idx"]) + 1
    body = text.split("\nTree=")[1:]
    body[-1] = body[-1].split("\nend of trees", 1)[0]
    nodes: dict[str, list] = {k: [] for k in _COLUMNS}
    tree_start = [0]
    for block in body:
        _append_tree(_fields(block), nodes)
        tree_start.append(len(nodes["feature"]))
    return Forest(
        tree_start=np.array(tree_start, dtype=np.int64),
        feature=np.array(nodes["feature"], dtype=np.int64),
        threshold=np.array(nodes["threshold"], dtype=np.float64),
        default_left=np.array(nodes["default_left"], dtype=np.bool_),
        missing_type=np.array(nodes["missing_type"], dtype=np.int8),
        left=np.array(nodes["left"], dtype=np.int64),
        right=np.array(nodes["right"], dtype=np.int64),
        parent=np.array(nodes["parent"], dtype=np.int64),
        value=np.array(nodes["value"], dtype=np.float64),
        count=np.array(nodes["count"], dtype=np.float64),
        num_features=num_features,
    )


_COLUMNS = (
    "feature",
    "threshold",
    "default_left",
    "missing_type",
    "left",
    "right",
    "parent",
    "value",
    "count",
)


def _append_tree(fields: dict[str, str], nodes: dict[str, list]) -> None:
    leaf_value = _numbers(fields, "leaf_value", float)
    leaf_count = _numbers(fields, "leaf_count", float)
    num_leaves = int(fields["num_leaves"])
    if num_leaves == 1:
        _add(nodes, -1, 0.0, False, 0, -1, -1, float(leaf_value[0]), _count(leaf_count, 0))
        return
    if int(fields.get("num_cat", "0")) > 0:
        raise UnsupportedModel("categorical splits are not supported")
    split_feature = _numbers(fields, "split_feature", int)
    threshold = _numbers(fields, "threshold", float)
    decision = _numbers(fields, "decision_type", int)
    left = _numbers(fields, "left_child", int)
    right = _numbers(fields, "right_child", int)
    internal_count = _numbers(fields, "internal_count", float)
    if (decision & _CATEGORICAL).any():
        raise UnsupportedModel("categorical splits are not supported")
    # Preorder walk with an explicit stack: (LightGBM child id, parent global index, side).
    stack: list[tuple[int, int, int]] = [(0, -1, 0)]
    while stack:
        child, parent, side = stack.pop()
        index = len(nodes["feature"])
        if parent >= 0:
            nodes["left" if side == 0 else "right"][parent] = index
        if child >= 0:
            _add(
                nodes,
                int(split_feature[child]),
                float(threshold[child]),
                bool(decision[child] & _DEFAULT_LEFT),
                int((decision[child] >> 2) & 3),
                parent,
                -2,  # children filled in when they are placed
                0.0,
                float(internal_count[child]),
            )
            # Right pushed first so the left subtree comes next in preorder.
            stack.append((int(right[child]), index, 1))
            stack.append((int(left[child]), index, 0))
        else:
            leaf = ~child
            _add(nodes, -1, 0.0, False, 0, parent, -1, float(leaf_value[leaf]), 0.0)
            nodes["count"][index] = _count(leaf_count, leaf)


def _count(counts: np.ndarray, leaf: int) -> float:
    return float(counts[leaf]) if len(counts) > leaf else 0.0


def _add(
    nodes: dict[str, list],
    feature: int,
    threshold: float,
    default_left: bool,
    missing_type: int,
    parent: int,
    children: int,
    value: float,
    count: float,
) -> None:
    nodes["feature"].append(feature)
    nodes["threshold"].append(threshold)
    nodes["default_left"].append(default_left)
    nodes["missing_type"].append(missing_type)
    nodes["left"].append(children)
    nodes["right"].append(children)
    nodes["parent"].append(parent)
    nodes["value"].append(value)
    nodes["count"].append(count)


class CompiledPredictor:
    """Raw scores identical to ``Booster.predict(raw_score=True)``, computed by compiled
    tree walking over :class:`Forest` arrays."""

    method = "compiled"

    def __init__(self, forest: Forest) -> None:
        self.forest = forest

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> CompiledPredictor:
        return cls(read_forest(booster))

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        array = _rows(x, self.forest.num_features)
        out = np.empty(array.shape[0], dtype=np.float64)
        f = self.forest
        predict_raw(
            array,
            out,
            f.tree_start,
            f.feature,
            f.threshold,
            f.default_left,
            f.missing_type,
            f.left,
            f.right,
            f.value,
        )
        return out


def _rows(x: np.ndarray, num_features: int) -> np.ndarray:
    array = np.ascontiguousarray(x, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != num_features:
        raise ValueError(f"expected an (n, {num_features}) feature matrix, got shape {array.shape}")
    return array
