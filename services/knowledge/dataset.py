"""The offline dataset knowledge is learnt from, parsed into typed tables.

Tables arrive one per event (offline-table-published): source-model tables (RPS/$ over the
whole space) and per-operator KOP resource curves (RPS/$ over a pair of knobs)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import msgpack

from schemas.events import TrialResult
from services.domain.falcon_data import DataError, ModelTable, iter_offline_tables, model_table_from_rows
from services.domain.space import Space


@dataclass(frozen=True)
class KopCurve:
    op: str
    curve: str                          # e.g. '01-batchsize-GPU-slope'
    knobs: tuple[str, str]
    points: tuple[tuple[float | str, float | str, float], ...]   # knob A, knob B (number or value name), value

    @property
    def shape(self) -> str:
        """The shape label the curve was published with (slope/convex/concave/plane), if any."""
        last = self.curve.rsplit("-", 1)[-1]
        return last if last in ("slope", "convex", "concave", "plane") else "unknown"


def parse_kop_curve(name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> KopCurve:
    if "/" not in name:
        raise DataError(f"kop-curve name {name!r} must be '<operator>/<curve>'")
    if len(columns) != 3:
        raise DataError(f"kop-curve {name}: expected 3 columns (knob A, knob B, value), got {list(columns)}")
    points = []
    for r in rows:
        try:
            points.append((_knob_value(r[0]), _knob_value(r[1]), float(r[2])))
        except (TypeError, ValueError, IndexError):
            raise DataError(f"kop-curve {name}: row {list(r)!r} is not two knob values and a number") from None
    if not points:
        raise DataError(f"kop-curve {name}: no points")
    op, curve = name.split("/", 1)
    return KopCurve(op, curve, (str(columns[0]), str(columns[1])), tuple(points))


def _knob_value(raw: Any) -> float | str:
    """A curve's knob value: a number, or the name of a categorical knob's value (a calibrated
    curve over e.g. graph_opt or a GPU type named as the space names it)."""
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            if not raw.strip():
                raise
            return raw.strip()
    if isinstance(raw, bool):
        raise TypeError("a knob value is not a boolean")
    return float(raw)


def content_hash(kind: str, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return hashlib.sha256(msgpack.packb([kind, name, list(columns), [list(r) for r in rows]])).hexdigest()


def observed_rows(space: Space, earlier: Sequence[Sequence[Any]], trials: Sequence[TrialResult]) -> list[list[Any]]:
    """A model's source-table rows (knob values..., value) once a finished search's live trials
    join those of earlier searches: each configuration it measured takes this search's value, the
    mean of its measurements when a noisy search measured it again; failed trials add nothing."""
    rows = {space.key(dict(zip(space.names, r[:-1]))): list(r) for r in earlier}
    measured: dict[str, tuple[dict[str, Any], list[float]]] = {}
    for t in trials:
        if t.ok:                                # so it has a value
            config = space.canonical(t.config)
            measured.setdefault(space.key(config), (config, []))[1].append(float(t.rps_per_usd))
    for key, (config, values) in measured.items():
        rows[key] = [*(config[k] for k in space.names), sum(values) / len(values)]
    return sorted(rows.values(), key=lambda r: [str(x) for x in r[:-1]])


@dataclass
class OfflineDataset:
    model_tables: dict[str, ModelTable] = field(default_factory=dict)
    kop_curves: dict[str, KopCurve] = field(default_factory=dict)

    def add(self, kind: str, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Parse and add one table; DataError if it is not what its kind says."""
        if kind == "model-table":
            self.model_tables[name] = model_table_from_rows(name, list(columns), [list(r) for r in rows])
        elif kind == "kop-curve":
            self.kop_curves[name] = parse_kop_curve(name, columns, rows)
        else:
            raise DataError(f"table kind {kind!r} is not part of the offline dataset")

    @classmethod
    def from_folder(cls, root: str | Path) -> "OfflineDataset":
        """Every offline table of a folder in the falcon-data layout (what ``falcon publish-offline``
        sends to the treebuilder)."""
        ds = cls()
        for kind, name, columns, rows in iter_offline_tables(root):
            ds.add(kind, name, columns, rows)
        return ds

    @property
    def operators(self) -> list[str]:
        return sorted({c.op for c in self.kop_curves.values()})

    def summary(self) -> dict[str, Any]:
        return {"model_tables": len(self.model_tables), "kop_curves": len(self.kop_curves),
                "operators": self.operators, "models": sorted(self.model_tables)}
