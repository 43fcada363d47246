"""What the offline dataset says about one configuration space: the KOPs' resource curves with
their pruned knobs and trees, and every source model's values over the space.

The arrays live on the space's *grid*: the sub-space of the knobs the offline data covers
(knobs no table or curve has, e.g. precision or replicas, are left out: the knowledge is neutral
on them and the search learns them online). :meth:`Knowledge.on_grid` maps configurations of the
space to the grid. The paper's space is its own grid. Smoothing uses a Gaussian kernel that
factorises over knobs, so it costs O(grid size x values per knob), never a grid x grid matrix.

Built by the treebuilder (and by the benchmark from a dataset folder), stored per space by
:mod:`services.knowledge.store`, read by the searcher's strategies and the report. Strategies
read it and never write into it: what they derive from it (e.g. meta-trained networks) they keep
themselves. Everything is an array over ``space.configs()`` order, so configurations are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from services.domain.falcon_data import ModelTable
from services.domain.space import Space
from services.knowledge.curves import DEFAULT_CUTOFF, OperatorCurves, curve_knob, operator_curves
from services.knowledge.dataset import KopCurve, OfflineDataset
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareCatalogue
from services.knowledge.transfer import device_factors, fill_unmeasured_devices
from services.knowledge.trees import TreeNode, build_tree

MIN_OBSERVED = 6            # configurations a partly measured source needs to be an expert
FILL_WIDTH = 0.3            # Gaussian kernel width (encoding units) that fills its gaps


@dataclass(eq=False)
class Knowledge:
    """Compared by identity: one built object per (space, dataset version)."""
    space: Space
    grid: Space | None = None          # the covered knobs' sub-space the arrays live on (None: the space)
    operators: dict[str, OperatorCurves] = field(default_factory=dict)
    sources: dict[str, np.ndarray] = field(default_factory=dict)   # source model -> values per configuration
    cutoff: float = DEFAULT_CUTOFF
    version: int | None = None      # the dataset version it was built from (None: built from a folder)
    # derived lazily from the fields above, never changed by readers
    _encoded: np.ndarray | None = field(default=None, repr=False)
    _trees: dict[tuple[str, tuple[str, ...]], TreeNode] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.grid is None:
            self.grid = self.space

    def on_grid(self, indices: np.ndarray) -> np.ndarray:
        """Grid indices of configurations of the space (identity when the space is its grid)."""
        assert self.grid is not None
        return self.space.project(indices, self.grid)

    @property
    def encoded(self) -> np.ndarray:
        """The grid's configurations encoded (what trees split and meta-learners read)."""
        if self._encoded is None:
            assert self.grid is not None
            self._encoded = self.grid.encode_all()
        return self._encoded

    def smooth(self, values: np.ndarray, width: float) -> np.ndarray:
        """Each row of ``values`` (grid order) averaged with its neighbours by a row-normalised
        Gaussian kernel over the encoding (ordinal steps of the same GPU type count as close).
        The kernel is a product of one small kernel per knob, applied axis by axis."""
        assert self.grid is not None
        shape = [len(k.values) for k in self.grid.knobs]
        out = np.asarray(values, dtype=float).reshape(-1, *shape)
        for axis, k in enumerate(self.grid.knobs, start=1):
            K = _knob_kernel(len(k.values), k.kind, width)
            K = K / K.sum(axis=1, keepdims=True)
            out = np.moveaxis(np.tensordot(out, K, axes=([axis], [1])), -1, axis)
        return out.reshape(np.shape(values))

    def tree(self, op: str, knobs: tuple[str, ...] | None = None) -> TreeNode:
        """The operator's tree over its landscape (grid), split on ``knobs`` (default: the kept ones)."""
        assert self.grid is not None
        knobs = knobs or self.operators[op].kept
        key = (op, knobs)
        if key not in self._trees:
            X = self.encoded[:, self.grid.encoded_columns(knobs)]
            self._trees[key] = build_tree(X, self.operators[op].score)
        return self._trees[key]

    @classmethod
    def build(cls, dataset: OfflineDataset, space: Space, cutoff: float = DEFAULT_CUTOFF,
              version: int | None = None, hardware: HardwareCatalogue | None = DEFAULT_HARDWARE) -> "Knowledge":
        """``hardware``: describes the devices, so a device a table never measured is filled from
        the similar ones it did (services.knowledge.transfer); None: such devices stay unknown."""
        by_op: dict[str, list[KopCurve]] = {}
        for c in dataset.kop_curves.values():
            by_op.setdefault(c.op, []).append(c)
        grid = space.subspace(covered_knobs(dataset, space))
        k = cls(space, grid, cutoff=cutoff, version=version)
        for op, curves in sorted(by_op.items()):
            fill = None
            if hardware is not None:
                factors = device_factors(grid, [{"op": op, "time_share": 1.0}], hardware)
                fill = lambda v, f=factors: fill_unmeasured_devices(v, grid, f, hardware)  # noqa: E731
            oc = operator_curves(op, curves, grid, cutoff, fill)
            if oc is not None:
                k.operators[op] = oc
        factors = device_factors(grid, hardware=hardware) if hardware is not None else {}
        for name, table in sorted(dataset.model_tables.items()):
            v = source_values(table, grid, factors, hardware or DEFAULT_HARDWARE)
            if v is not None:
                k.sources[name] = v
        for op in k.operators:          # the trees are part of the knowledge: built here, not at a first search
            k.tree(op)
        return k

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form (trees for each operator's kept knobs included, SVMs left out)."""
        assert self.grid is not None
        return {"space": self.space.to_dict(), "grid": list(self.grid.names), "cutoff": self.cutoff,
                "version": self.version,
                "operators": {op: {"score": oc.score.tolist(), "importance": dict(oc.importance),
                                   "kept": list(oc.kept), "shapes": dict(oc.shapes)}
                              for op, oc in self.operators.items()},
                "sources": {n: v.tolist() for n, v in self.sources.items()},
                "trees": {op: self.tree(op).structure() for op in self.operators}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Knowledge":
        space = Space.from_dict(d["space"])
        k = cls(space, space.subspace(tuple(d.get("grid") or space.names)), cutoff=float(d["cutoff"]),
                version=d.get("version"))
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
        """Union of the knobs that matter for these KOPs, plus every knob the offline data does
        not cover (nothing says it does not matter); all knobs when no KOP is known."""
        assert self.grid is not None
        kept = {k for op in kops if op in self.operators for k in self.operators[op].kept}
        if not kept:
            return self.space.names
        return tuple(n for n in self.space.names if n in kept or n not in self.grid.names)


def covered_knobs(dataset: OfflineDataset, space: Space) -> tuple[str, ...]:
    """The knobs of ``space`` some source table or KOP curve of the dataset has (space order);
    every knob when the dataset covers none of them."""
    names = {k for t in dataset.model_tables.values() for k in t.knobs}
    names |= {curve_knob(k, space.roles) for c in dataset.kop_curves.values() for k in c.knobs}
    covered = tuple(n for n in space.names if n in names)
    return covered or space.names


def _knob_kernel(n: int, kind: str, width: float) -> np.ndarray:
    """Gaussian kernel between the values of one knob, on the encoding's distances: an ordinal
    knob's ranks scaled to [0, 1]; a categorical knob's one-hot vectors (squared distance 2)."""
    if kind == "categorical":
        d2 = 2.0 * (1.0 - np.eye(n))
    else:
        x = np.arange(n) / (n - 1) if n > 1 else np.zeros(1)
        d2 = (x[:, None] - x[None, :]) ** 2
    return np.exp(-d2 / (2 * width ** 2))


def source_values(table: ModelTable, space: Space, factors: Mapping[Any, float] | None = None,
                  hardware: HardwareCatalogue = DEFAULT_HARDWARE) -> np.ndarray | None:
    """``space``: the grid (its knobs are the ones tables cover; a table is looked up on its own
    knobs, so a knob the table lacks is neutral)."""
    """A source model's values over the space. A complete table is taken as it is. A device it
    never measured is transferred from the similar devices it did (``factors``: devices' relative
    RPS/$, see
    services.knowledge.transfer). What is still unknown (a table measured only in part, e.g.
    live trials of an earlier search) is filled by Gaussian-kernel regression from its measured
    configurations and scaled to [0, 1]; fewer than MIN_OBSERVED of them: None."""
    if not set(table.knobs) <= set(space.names):
        return None                          # measured over a knob the space does not have
    vals = []
    for c in space.configs():
        row = table.lookup({k: c[k] for k in table.knobs})
        vals.append(np.nan if row is None else float(row["value"]))
    v = np.asarray(vals, dtype=float)
    if factors:
        v = fill_unmeasured_devices(v, space, factors, hardware)
    known = ~np.isnan(v)
    if known.all():
        return v
    if known.sum() < MIN_OBSERVED:
        return None
    shape = [len(k.values) for k in space.knobs]
    num, den = np.where(known, v, 0.0).reshape(shape), known.astype(float).reshape(shape)
    for axis, k in enumerate(space.knobs):       # the Gaussian kernel factorises over knobs
        K = _knob_kernel(len(k.values), k.kind, FILL_WIDTH)
        num = np.moveaxis(np.tensordot(num, K, axes=([axis], [1])), -1, axis)
        den = np.moveaxis(np.tensordot(den, K, axes=([axis], [1])), -1, axis)
    filled = np.where(known, v, num.reshape(-1) / np.maximum(den.reshape(-1), 1e-12))
    top = float(np.max(np.abs(filled)))
    return filled / top if top > 0 else filled
