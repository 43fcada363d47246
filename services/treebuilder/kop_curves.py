"""Key-operator resource curves (KOP-RCs) and what the offline data says about a space.

A KOP-RC is RPS/$ of one operator over a pair of knobs (Falcon's kop-curves files). Here they
are mapped onto a configuration space: every configuration gets, per operator, the mean of its
curves' values at its knob values. Per operator we also measure how much each knob matters
(share of the variance of that landscape explained by the knob's main effect) and prune the
knobs whose cumulative share falls outside the cut-off (paper: 85%), and classify each curve's
shape (slope / convex / concave / plane).

Everything is an array over ``space.configs()`` order, so strategies index configurations by int.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from services.common.falcon_data import ModelTable
from services.common.space import Space, SpaceError
from services.treebuilder.dataset import KopCurve, OfflineDataset
from services.treebuilder.trees import TreeNode, build_tree

# How the kop-curves files name knobs and code GPU types (falcon-data NOTICE), mapped to the
# knob names of the measurement tables. Data-format knowledge, not a model.
CURVE_KNOBS: Mapping[str, str] = {"batchsize": "batchsize", "GPU": "gputype", "CPUcores": "cpus",
                                  "power": "gpupower", "GPUmem": "gpumem"}
GPU_CODES: Mapping[int, str] = {1: "M60", 2: "K80", 3: "T4", 4: "V100"}
DEFAULT_CUTOFF = 0.85


def classify_shape(xs: np.ndarray, ys: np.ndarray) -> str:
    """Shape of a curve along its first (ordinal) knob, averaged over the second:
    'plane' if it barely moves, 'slope' if a line explains it, else 'convex'/'concave' by the
    sign of a fitted parabola's curvature."""
    levels = np.unique(xs)
    if len(levels) < 3:
        return "slope" if np.ptp(ys) > 0.05 else "plane"
    means = np.array([ys[xs == v].mean() for v in levels])
    t = np.linspace(0, 1, len(levels))
    if np.ptp(means) < 0.05:
        return "plane"
    lin = np.polyfit(t, means, 1)
    quad = np.polyfit(t, means, 2)
    res_lin = np.sum((np.polyval(lin, t) - means) ** 2)
    res_quad = np.sum((np.polyval(quad, t) - means) ** 2)
    if res_lin <= 1.5 * res_quad + 1e-3 * len(t):
        return "slope"
    return "convex" if quad[0] > 0 else "concave"


@dataclass(frozen=True)
class OperatorCurves:
    """One operator's landscape over the space (NaN-free, [0, 1]) and its knob importances."""
    op: str
    score: np.ndarray                       # per configuration
    importance: Mapping[str, float]         # knob -> share of the landscape's variance
    kept: tuple[str, ...]                   # knobs inside the cut-off, most important first
    shapes: Mapping[str, str]               # curve name -> shape


def _curve_lookup(curve: KopCurve, space: Space) -> tuple[str, str, dict] | None:
    a, b = (CURVE_KNOBS.get(k) for k in curve.knobs)
    if a is None or b is None or a not in space.names or b not in space.names:
        return None

    def value(knob: str, raw: float) -> object:
        return GPU_CODES.get(int(raw), str(raw)) if knob == "gputype" else raw
    table = {}
    for x, y, v in curve.points:
        try:
            ka = space.knob(a).index_of(value(a, x))
            kb = space.knob(b).index_of(value(b, y))
        except SpaceError:
            continue            # a curve point outside the declared space
        table[(ka, kb)] = v
    return a, b, table


def operator_curves(op: str, curves: list[KopCurve], space: Space, cutoff: float = DEFAULT_CUTOFF) -> OperatorCurves | None:
    lookups = [(c, lk) for c in curves if (lk := _curve_lookup(c, space)) is not None and lk[2]]
    if not lookups:
        return None
    configs = list(space.configs())
    idx = {k.name: np.array([k.index_of(c[k.name]) for c in configs]) for k in space.knobs}
    per = np.full((len(configs), len(lookups)), np.nan)
    for j, (_, (a, b, table)) in enumerate(lookups):
        per[:, j] = [table.get((ia, ib), np.nan) for ia, ib in zip(idx[a], idx[b])]
    score = np.nanmean(np.where(np.isnan(per).all(1, keepdims=True), 0.0, per), axis=1)
    score = np.nan_to_num(score, nan=float(np.nanmean(score)))
    span = np.ptp(score)
    score = (score - score.min()) / span if span > 0 else np.zeros_like(score)
    importance = knob_importance(score, idx)
    return OperatorCurves(op, score, importance, prune(importance, cutoff),
                          {c.curve: classify_shape(np.array([p[0] for p in c.points]), np.array([p[2] for p in c.points]))
                           for c, _ in lookups})


def knob_importance(values: np.ndarray, knob_levels: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Share of the variance of ``values`` explained by each knob's main effect."""
    total = float(np.var(values))
    if total <= 0:
        return {k: 0.0 for k in knob_levels}
    effects = {}
    for k, lv in knob_levels.items():
        means = np.array([values[lv == v].mean() for v in np.unique(lv)])
        counts = np.array([np.sum(lv == v) for v in np.unique(lv)])
        effects[k] = float(np.sum(counts * (means - values.mean()) ** 2) / len(values))
    s = sum(effects.values()) or 1.0
    return {k: v / s for k, v in effects.items()}


def prune(importance: Mapping[str, float], cutoff: float) -> tuple[str, ...]:
    """Knobs in decreasing importance until their cumulative share reaches the cut-off."""
    kept, acc = [], 0.0
    for k, v in sorted(importance.items(), key=lambda kv: -kv[1]):
        if acc >= cutoff:
            break
        kept.append(k)
        acc += v
    return tuple(kept)


@dataclass
class Knowledge:
    """What the offline dataset says about one configuration space."""
    space: Space
    operators: dict[str, OperatorCurves] = field(default_factory=dict)
    sources: dict[str, np.ndarray] = field(default_factory=dict)   # source model -> values per configuration
    cutoff: float = DEFAULT_CUTOFF
    _encoded: np.ndarray | None = field(default=None, repr=False)
    _trees: dict = field(default_factory=dict, repr=False)
    cache: dict = field(default_factory=dict, repr=False)      # strategies' own derived models (e.g. meta-trained nets)

    @property
    def encoded(self) -> np.ndarray:
        if self._encoded is None:
            self._encoded = self.space.encode_all()
        return self._encoded

    def smoother(self, width: float) -> np.ndarray:
        """Row-normalised Gaussian kernel over the configuration encoding: ``smoother @ values``
        averages each configuration with its neighbours (ordinal steps of the same GPU type)."""
        key = ("smoother", width)
        if key not in self.cache:
            X = self.encoded
            d2 = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
            K = np.exp(-d2 / (2 * width ** 2))
            self.cache[key] = K / K.sum(axis=1, keepdims=True)
        return self.cache[key]

    def tree(self, op: str, knobs: tuple[str, ...] | None = None) -> TreeNode:
        """The operator's tree over its landscape, split on ``knobs`` (default: the kept ones)."""
        knobs = knobs or self.operators[op].kept
        key = (op, knobs)
        if key not in self._trees:
            X = self.encoded[:, self.space.encoded_columns(knobs)]
            self._trees[key] = build_tree(X, self.operators[op].score)
        return self._trees[key]

    @classmethod
    def build(cls, dataset: OfflineDataset, space: Space, cutoff: float = DEFAULT_CUTOFF) -> "Knowledge":
        by_op: dict[str, list[KopCurve]] = {}
        for c in dataset.kop_curves.values():
            by_op.setdefault(c.op, []).append(c)
        k = cls(space, cutoff=cutoff)
        for op, curves in sorted(by_op.items()):
            oc = operator_curves(op, curves, space, cutoff)
            if oc is not None:
                k.operators[op] = oc
        for name, table in sorted(dataset.model_tables.items()):
            v = source_values(table, space)
            if v is not None:
                k.sources[name] = v
        return k

    def to_dict(self) -> dict:
        """Serialisable form (trees for each operator's kept knobs included, SVMs left out)."""
        return {"space": self.space.to_dict(), "cutoff": self.cutoff,
                "operators": {op: {"score": oc.score.tolist(), "importance": dict(oc.importance),
                                   "kept": list(oc.kept), "shapes": dict(oc.shapes)}
                              for op, oc in self.operators.items()},
                "sources": {n: v.tolist() for n, v in self.sources.items()},
                "trees": {op: self.tree(op).structure() for op in self.operators}}

    @classmethod
    def from_dict(cls, d: dict) -> "Knowledge":
        space = Space.from_dict(d["space"])
        k = cls(space, cutoff=float(d["cutoff"]))
        for op, o in d["operators"].items():
            k.operators[op] = OperatorCurves(op, np.asarray(o["score"], dtype=float), dict(o["importance"]),
                                             tuple(o["kept"]), dict(o["shapes"]))
        k.sources = {n: np.asarray(v, dtype=float) for n, v in d["sources"].items()}
        for op, t in d.get("trees", {}).items():
            k._trees[(op, k.operators[op].kept)] = TreeNode.from_structure(t)
        return k

    def kop_prior(self, kops: list[tuple[str, float]]) -> np.ndarray | None:
        """Time-share-weighted KOP-RC score per configuration; None if no KOP has curves."""
        known = [(op, w) for op, w in kops if op in self.operators and w > 0]
        if not known:
            return None
        total = sum(w for _, w in known)
        return sum(w / total * self.operators[op].score for op, w in known)

    def kept_knobs(self, kops: list[str]) -> tuple[str, ...]:
        """Union of the knobs that matter for these KOPs (all knobs when none is known)."""
        kept = {k for op in kops if op in self.operators for k in self.operators[op].kept}
        return tuple(n for n in self.space.names if n in kept) or self.space.names


MIN_OBSERVED = 6            # configurations a partly measured source needs to be an expert
FILL_WIDTH = 0.3            # Gaussian kernel width (encoding units) that fills its gaps


def source_values(table: ModelTable, space: Space) -> np.ndarray | None:
    """A source model's values over the space. A complete table is taken as it is; one measured
    only in part (live trials of an earlier search) is filled by Gaussian-kernel regression from
    its measured configurations and scaled to [0, 1]; fewer than MIN_OBSERVED of them: None."""
    vals = []
    for c in space.configs():
        row = table.lookup(c)
        vals.append(np.nan if row is None else float(row["value"]))
    v = np.asarray(vals, dtype=float)
    known = ~np.isnan(v)
    if known.all():
        return v
    if known.sum() < MIN_OBSERVED:
        return None
    X = space.encode_all()
    d2 = np.sum((X[:, None, :] - X[None, known, :]) ** 2, axis=-1)
    K = np.exp(-d2 / (2 * FILL_WIDTH ** 2))
    filled = np.where(known, v, K @ v[known] / np.maximum(K.sum(axis=1), 1e-12))
    top = float(np.max(np.abs(filled)))
    return filled / top if top > 0 else filled
