"""What the offline dataset says about one configuration space: the KOPs' resource curves with
their pruned knobs and trees, and every source model's values over the space.

Built by the treebuilder (and by the benchmark from a dataset folder), stored per space by
:mod:`services.knowledge.store`, read by the searcher's strategies and the report. Strategies
read it and never write into it: what they derive from it (e.g. meta-trained networks) they keep
themselves. Everything is an array over ``space.configs()`` order, so configurations are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from services.common.falcon_data import ModelTable
from services.common.space import Space
from services.knowledge.curves import DEFAULT_CUTOFF, OperatorCurves, operator_curves
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
    operators: dict[str, OperatorCurves] = field(default_factory=dict)
    sources: dict[str, np.ndarray] = field(default_factory=dict)   # source model -> values per configuration
    cutoff: float = DEFAULT_CUTOFF
    version: int | None = None      # the dataset version it was built from (None: built from a folder)
    # derived lazily from the fields above, never changed by readers
    _encoded: np.ndarray | None = field(default=None, repr=False)
    _smoothers: dict[float, np.ndarray] = field(default_factory=dict, repr=False)
    _trees: dict[tuple[str, tuple[str, ...]], TreeNode] = field(default_factory=dict, repr=False)

    @property
    def encoded(self) -> np.ndarray:
        if self._encoded is None:
            self._encoded = self.space.encode_all()
        return self._encoded

    def smoother(self, width: float) -> np.ndarray:
        """Row-normalised Gaussian kernel over the configuration encoding: ``smoother @ values``
        averages each configuration with its neighbours (ordinal steps of the same GPU type)."""
        if width not in self._smoothers:
            X = self.encoded
            d2 = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
            K = np.exp(-d2 / (2 * width ** 2))
            self._smoothers[width] = K / K.sum(axis=1, keepdims=True)
        return self._smoothers[width]

    def tree(self, op: str, knobs: tuple[str, ...] | None = None) -> TreeNode:
        """The operator's tree over its landscape, split on ``knobs`` (default: the kept ones)."""
        knobs = knobs or self.operators[op].kept
        key = (op, knobs)
        if key not in self._trees:
            X = self.encoded[:, self.space.encoded_columns(knobs)]
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
        k = cls(space, cutoff=cutoff, version=version)
        for op, curves in sorted(by_op.items()):
            fill = None
            if hardware is not None:
                factors = device_factors(space, [{"op": op, "time_share": 1.0}], hardware)
                fill = lambda v, f=factors: fill_unmeasured_devices(v, space, f, hardware)  # noqa: E731
            oc = operator_curves(op, curves, space, cutoff, fill)
            if oc is not None:
                k.operators[op] = oc
        factors = device_factors(space, hardware=hardware) if hardware is not None else {}
        for name, table in sorted(dataset.model_tables.items()):
            v = source_values(table, space, factors, hardware or DEFAULT_HARDWARE)
            if v is not None:
                k.sources[name] = v
        return k

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form (trees for each operator's kept knobs included, SVMs left out)."""
        return {"space": self.space.to_dict(), "cutoff": self.cutoff, "version": self.version,
                "operators": {op: {"score": oc.score.tolist(), "importance": dict(oc.importance),
                                   "kept": list(oc.kept), "shapes": dict(oc.shapes)}
                              for op, oc in self.operators.items()},
                "sources": {n: v.tolist() for n, v in self.sources.items()},
                "trees": {op: self.tree(op).structure() for op in self.operators}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Knowledge":
        space = Space.from_dict(d["space"])
        k = cls(space, cutoff=float(d["cutoff"]), version=d.get("version"))
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


def source_values(table: ModelTable, space: Space, device_factors: Mapping[Any, float] | None = None,
                  hardware: HardwareCatalogue = DEFAULT_HARDWARE) -> np.ndarray | None:
    """A source model's values over the space. A complete table is taken as it is. A device it
    never measured is transferred from the similar devices it did (``device_factors``, see
    services.knowledge.transfer). What is still unknown (a table measured only in part, e.g.
    live trials of an earlier search) is filled by Gaussian-kernel regression from its measured
    configurations and scaled to [0, 1]; fewer than MIN_OBSERVED of them: None."""
    vals = []
    for c in space.configs():
        row = table.lookup(c)
        vals.append(np.nan if row is None else float(row["value"]))
    v = np.asarray(vals, dtype=float)
    if device_factors:
        v = fill_unmeasured_devices(v, space, device_factors, hardware)
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
