"""Per-KOP trees: each node splits its region of the space into a good and a bad part.

The split clusters the node's configurations with KMeans (k=2) on their encoding and their value
(value weighted so clusters differ mainly in value but stay contiguous in the space), then an SVM
learns the boundary over the encoding alone; the SVM's side decides membership. Node value
V(Ω) = mean value of its members. Height is bounded (paper: 8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from sklearn.cluster import KMeans
from sklearn.svm import SVC

DEFAULT_MAX_HEIGHT = 8
DEFAULT_MIN_LEAF = 8
VALUE_WEIGHT = 3.0


@dataclass
class TreeNode:
    members: np.ndarray                  # configuration indices (space.configs() order)
    value: float                         # V(Ω): mean value of the members
    depth: int
    children: list["TreeNode"] = field(default_factory=list)   # [good, bad] or none
    svm: SVC | None = None               # predicts 1 = good child, 0 = bad child

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def walk(self) -> Iterator["TreeNode"]:
        yield self
        for c in self.children:
            yield from c.walk()

    @property
    def height(self) -> int:
        return 1 + max((c.height for c in self.children), default=0)

    @property
    def leaves(self) -> int:
        return sum(1 for n in self.walk() if n.is_leaf)

    def structure(self) -> dict[str, Any]:
        """What the search needs (members, values, shape of the tree), without the SVMs."""
        return {"members": self.members.tolist(), "value": self.value, "depth": self.depth,
                "children": [c.structure() for c in self.children]}

    @classmethod
    def from_structure(cls, d: dict[str, Any]) -> "TreeNode":
        return cls(np.asarray(d["members"], dtype=int), float(d["value"]), int(d["depth"]),
                   [cls.from_structure(c) for c in d["children"]])

    def to_json(self) -> dict[str, Any]:
        node: dict[str, Any] = {"value": self.value, "size": int(len(self.members)), "depth": self.depth,
                                "members": self.members.tolist()}
        if self.svm is not None:
            node["svm"] = {"kernel": "rbf", "gamma": float(self.svm._gamma),  # noqa: SLF001 - fitted value
                           "support_vectors": self.svm.support_vectors_.tolist(),
                           "dual_coef": self.svm.dual_coef_.tolist(), "intercept": self.svm.intercept_.tolist()}
            node["children"] = [c.to_json() for c in self.children]
        return node


def build_tree(X: np.ndarray, y: np.ndarray, max_height: int = DEFAULT_MAX_HEIGHT, min_leaf: int = DEFAULT_MIN_LEAF,
               seed: int = 0) -> TreeNode:
    """Tree over all rows of X (encodings) with values y."""
    return _split(X, y, np.arange(len(y)), 0, max_height, min_leaf, seed)


def _split(X: np.ndarray, y: np.ndarray, members: np.ndarray, depth: int, max_height: int, min_leaf: int,
           seed: int) -> TreeNode:
    node = TreeNode(members, float(y[members].mean()), depth)
    ym = y[members]
    if depth + 1 >= max_height or len(members) < 2 * min_leaf or np.ptp(ym) < 1e-9:
        return node
    Xm = X[members]
    z = (ym - ym.mean()) / (ym.std() or 1.0)
    labels = KMeans(n_clusters=2, n_init=4, random_state=seed).fit_predict(np.c_[Xm, VALUE_WEIGHT * z])
    good = int(ym[labels == 1].mean() > ym[labels == 0].mean()) if len(set(labels)) == 2 else 1
    target = (labels == good).astype(int)
    if target.min() == target.max():
        return node
    svm = SVC(kernel="rbf", C=10.0, gamma="scale").fit(Xm, target)
    side = svm.predict(Xm)
    if min(side.sum(), len(side) - side.sum()) < min_leaf:
        return node
    node.svm = svm
    node.children = [_split(X, y, members[side == 1], depth + 1, max_height, min_leaf, seed),
                     _split(X, y, members[side == 0], depth + 1, max_height, min_leaf, seed)]
    if node.children[0].value < node.children[1].value:       # the SVM may blur clusters: keep good first
        node.children.reverse()
    return node
