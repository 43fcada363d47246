"""The configuration space: named knobs with finite value lists, declared by the user in YAML or
TOML (the paper's 1,440-point space is the default). Pure: no I/O beyond reading a space file."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import numpy as np
import yaml

KnobValue = str | int | float
Config = dict[str, KnobValue]
KnobKind = Literal["categorical", "ordinal"]


class SpaceError(ValueError):
    """A space file or configuration that does not fit the declared space."""


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple[KnobValue, ...]
    kind: KnobKind

    def index_of(self, value: Any) -> int:
        for i, v in enumerate(self.values):
            if _same(v, value):
                return i
        raise SpaceError(f"{self.name}={value!r} is not one of {list(self.values)}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


@dataclass(frozen=True)
class Space:
    knobs: tuple[Knob, ...]

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise SpaceError(f"duplicate knob names in {names}")
        for k in self.knobs:
            if len({repr(v) for v in k.values}) != len(k.values):
                raise SpaceError(f"knob {k.name} lists a value twice")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Space":
        """Accepts {"knobs": [{"name", "values", "kind"?}, ...]} or {"knobs": {name: [values]}}."""
        raw = d.get("knobs")
        if isinstance(raw, Mapping):
            raw = [{"name": n, "values": v} for n, v in raw.items()]
        if not isinstance(raw, list) or not raw:
            raise SpaceError("a space needs a non-empty 'knobs' list or table")
        knobs = []
        for item in raw:
            if not isinstance(item, Mapping) or "name" not in item or "values" not in item:
                raise SpaceError(f"knob entry {item!r} needs 'name' and 'values'")
            values = tuple(item["values"])
            if not values or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                     for v in values):
                raise SpaceError(f"knob {item['name']}: values must be a non-empty list of numbers or strings")
            numeric = all(not isinstance(v, str) for v in values)
            kind = item.get("kind") or ("ordinal" if numeric else "categorical")
            if kind not in ("categorical", "ordinal"):
                raise SpaceError(f"knob {item['name']}: kind must be categorical or ordinal, not {kind!r}")
            if kind == "ordinal" and not numeric:
                raise SpaceError(f"knob {item['name']}: an ordinal knob needs numeric values")
            if kind == "ordinal":
                values = tuple(sorted(values))
            knobs.append(Knob(str(item["name"]), values, kind))
        return cls(tuple(knobs))

    @classmethod
    def from_file(cls, path: str | Path) -> "Space":
        p = Path(path)
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise SpaceError(f"{p}: a space file is .yaml, .yml or .toml")
        if not isinstance(data, Mapping):
            raise SpaceError(f"{p}: expected a mapping at the top level")
        return cls.from_dict(data.get("space", data))

    def to_dict(self) -> dict[str, Any]:
        return {"knobs": [{"name": k.name, "values": list(k.values), "kind": k.kind} for k in self.knobs]}

    def fingerprint(self) -> str:
        """A short stable id of the space (its knobs, values and kinds)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    # -- queries ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def size(self) -> int:
        return math.prod(len(k.values) for k in self.knobs)

    def knob(self, name: str) -> Knob:
        for k in self.knobs:
            if k.name == name:
                return k
        raise SpaceError(f"no knob named {name!r} (knobs: {list(self.names)})")

    def configs(self) -> Iterator[Config]:
        """Every configuration, in a fixed order (knob order, values in declared order)."""
        for combo in itertools.product(*(k.values for k in self.knobs)):
            yield dict(zip(self.names, combo))

    def canonical(self, config: Mapping[str, Any]) -> Config:
        """The configuration with each value replaced by the declared one (1 -> 1.0 etc.);
        raises SpaceError if a knob is missing, unknown or has a value outside the space."""
        extra = set(config) - set(self.names)
        if extra:
            raise SpaceError(f"unknown knob(s) {sorted(extra)}; the space has {list(self.names)}")
        missing = [n for n in self.names if n not in config]
        if missing:
            raise SpaceError(f"configuration lacks knob(s) {missing}")
        return {k.name: k.values[k.index_of(config[k.name])] for k in self.knobs}

    def contains(self, config: Mapping[str, Any]) -> bool:
        try:
            self.canonical(config)
        except SpaceError:
            return False
        return True

    def key(self, config: Mapping[str, Any]) -> str:
        """A stable identity of a configuration, e.g. 'batchsize=32,cpus=2,...'."""
        c = self.canonical(config)
        return ",".join(f"{n}={c[n]}" for n in self.names)

    def index(self, config: Mapping[str, Any]) -> int:
        """Position of the configuration in :meth:`configs` order."""
        idx = 0
        for k in self.knobs:
            idx = idx * len(k.values) + k.index_of(config[k.name])
        return idx

    def config_at(self, index: int) -> Config:
        """Inverse of :meth:`index`."""
        if not 0 <= index < self.size:
            raise SpaceError(f"index {index} outside a space of {self.size}")
        values = []
        for k in reversed(self.knobs):
            index, i = divmod(index, len(k.values))
            values.append(k.values[i])
        return dict(zip(self.names, reversed(values)))

    @property
    def encoded_dim(self) -> int:
        return sum(len(k.values) if k.kind == "categorical" else 1 for k in self.knobs)

    def encoded_columns(self, names: tuple[str, ...]) -> list[int]:
        """Columns of :meth:`encode` that belong to the given knobs."""
        cols, pos = [], 0
        for k in self.knobs:
            width = len(k.values) if k.kind == "categorical" else 1
            if k.name in names:
                cols.extend(range(pos, pos + width))
            pos += width
        return cols

    def encode_all(self) -> np.ndarray:
        """:meth:`encode` of every configuration, in :meth:`configs` order."""
        return np.array([self.encode(c) for c in self.configs()])

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """Numeric vector for models (GP, SVM, KMeans): ordinal knobs -> rank scaled to [0, 1]
        (ranks, not raw values: batch sizes are powers of two and cores are small integers);
        categorical knobs -> one-hot."""
        out = np.zeros(self.encoded_dim)
        pos = 0
        for k in self.knobs:
            i = k.index_of(config[k.name])
            if k.kind == "categorical":
                out[pos + i] = 1.0
                pos += len(k.values)
            else:
                out[pos] = i / (len(k.values) - 1) if len(k.values) > 1 else 0.0
                pos += 1
        return out


PAPER_SPACE = Space.from_dict({"knobs": [
    {"name": "batchsize", "values": [4, 8, 16, 32, 64, 128]},
    {"name": "cpus", "values": [1, 2, 3, 4, 5]},
    {"name": "gpumem", "values": [0.8, 1.2, 1.6, 2.4]},
    {"name": "gpupower", "values": [50, 75, 100]},
    {"name": "gputype", "values": ["M60", "K80", "T4", "V100"], "kind": "categorical"},
]})
