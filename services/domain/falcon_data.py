"""Readers for the Falcon measurement data layout (see shared/falcon-data/NOTICE.md).

Model tables: csv with one column per knob, the objective column ``norm.(rps/budget)``, then
optionally measured figures' columns (``rps``, ``p50_ms``, ``p99_ms``, ``cv``, ... as our
live-measured tables have): the columns :mod:`services.domain.figures` registers. A column after
the objective column that the registry does not know is an error (a misspelt figure would
otherwise be read as a knob).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from services.domain.figures import BY_COLUMN, OPTIONAL_COLUMNS, VALUE_COLUMN
from services.domain.operators import normalise_op
from services.domain.space import Space, SpaceError

# VALUE_COLUMN and OPTIONAL_COLUMNS are the registry's (services.domain.figures), importable from here as before


class DataError(ValueError):
    pass


def _number(text: str) -> int | float | str:
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


@dataclass(frozen=True)
class ModelTable:
    """A measured table: configuration key -> measured row."""
    name: str
    knobs: tuple[str, ...]
    rows: Mapping[str, Mapping[str, Any]]   # Space.key(config) -> {"value": .., "rps": ..}
    space: Space

    def lookup(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        try:
            return self.rows.get(self.space.key(config))
        except SpaceError:
            return None

    def best(self) -> tuple[str, float]:
        key = max(self.rows, key=lambda k: self.rows[k]["value"])
        return key, float(self.rows[key]["value"])


def model_table_from_rows(name: str, columns: list[str], rows: list[list[Any]]) -> ModelTable:
    if VALUE_COLUMN not in columns:
        raise DataError(f"{name}: no {VALUE_COLUMN!r} column (columns: {columns})")
    unknown = [c for c in columns[columns.index(VALUE_COLUMN) + 1:] if c not in BY_COLUMN]
    if unknown:
        raise DataError(f"{name}: unknown measured column(s) {', '.join(map(repr, unknown))} after {VALUE_COLUMN!r} "
                        f"(known: {', '.join(OPTIONAL_COLUMNS)}; a new figure is registered in "
                        f"services/domain/figures.py)")
    extra = [c for c in columns if c in OPTIONAL_COLUMNS]
    knobs = [c for c in columns if c != VALUE_COLUMN and c not in OPTIONAL_COLUMNS]
    if not knobs:
        raise DataError(f"{name}: no knob columns")
    values: dict[str, list[Any]] = {k: [] for k in knobs}
    for r in rows:
        if len(r) != len(columns):
            raise DataError(f"{name}: row {r!r} has {len(r)} fields, expected {len(columns)}")
        for k in knobs:
            v = r[columns.index(k)]
            if v not in values[k]:
                values[k].append(v)
    space = Space.from_dict({"knobs": [{"name": k, "values": values[k]} for k in knobs]})
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        cfg = {k: r[columns.index(k)] for k in knobs}
        entry = {"value": _measured(name, VALUE_COLUMN, r[columns.index(VALUE_COLUMN)])}
        for c in extra:      # optional measurements may be blank (not measured): None
            raw = r[columns.index(c)]
            entry[c] = None if raw is None or raw == "" else _measured(name, c, raw)
        table[space.key(cfg)] = entry
    return ModelTable(name, tuple(knobs), table, space)


def _measured(table: str, column: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{table}: {column} {raw!r} is not a number") from None


def read_csv(path: str | Path, header: bool = True) -> tuple[list[str], list[list[Any]]]:
    p = Path(path)
    with p.open(newline="") as f:
        reader = csv.reader(f)
        lines = [row for row in reader if row and any(cell.strip() for cell in row)]
    if not lines:
        raise DataError(f"{p}: empty csv")
    if header:
        columns = [c.strip() for c in lines[0]]
        body = lines[1:]
    else:
        columns = [f"c{i}" for i in range(len(lines[0]))]
        body = lines
    return columns, [[_number(c) for c in row] for row in body]


def load_model_table(path: str | Path) -> ModelTable:
    p = Path(path)
    columns, rows = read_csv(p)
    return model_table_from_rows(p.stem.removeprefix("reg-"), columns, rows)


def read_operator_profile(path: str | Path) -> list[dict[str, Any]]:
    """falcon-data operators.csv (op_name, running time percentage) -> operator rows with
    time shares in [0, 1] (no memory share in that format)."""
    columns, rows = read_csv(path)
    if len(columns) < 2:
        raise DataError(f"{path}: expected columns op_name, running time percentage")
    total = sum(float(r[1]) for r in rows)
    if total <= 0:
        raise DataError(f"{path}: running times sum to {total}")
    return [{"op": normalise_op(str(r[0])), "time_share": float(r[1]) / total, "memory_share": None,
             "flops": None} for r in rows]


def iter_offline_tables(root: str | Path) -> Iterator[tuple[str, str, list[str], list[list[Any]]]]:
    """Every table of an offline dataset folder as (kind, name, columns, rows):
    models/sources/reg-*.csv and kop-curves/<op>/*.csv (headerless: knob A, knob B, value).
    Target tables and their operator profiles are never offline knowledge."""
    r = Path(root)
    for p in sorted((r / "models" / "sources").glob("reg-*.csv")):
        cols, rows = read_csv(p)
        yield "model-table", p.stem.removeprefix("reg-"), cols, rows
    for p in sorted((r / "kop-curves").glob("*/*.csv")):
        _, rows = read_csv(p, header=False)
        parts = p.stem.split("-")          # 01-batchsize-GPU-slope
        cols = [parts[1], parts[2], "value"] if len(parts) >= 4 else ["a", "b", "value"]
        yield "kop-curve", f"{p.parent.name}/{p.stem}", cols, [row[:3] for row in rows]
