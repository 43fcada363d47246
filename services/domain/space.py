"""The configuration space: named knobs with finite value lists, declared by the user in YAML or
TOML (the paper's 1,440-point space is the default), plus rules (:mod:`space_rules`) that say
which combinations cannot exist. Pure: no I/O beyond reading a space file.

Indices always number the full mixed-radix product of the knobs (:meth:`Space.index`); rules only
decide which of those configurations are *allowed*. Spaces of 10^5-10^6 configurations are
handled without enumerating them: :meth:`Space.sample` draws allowed indices by rejection and
:meth:`Space.neighbours` gives local moves."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import numpy as np
import yaml

from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain.space_rules import Rule, SpaceError, parse_rule

__all__ = ["Config", "EXACT_LIMIT", "Knob", "KnobValue", "MAX_SPACE_SIZE", "PAPER_SPACE", "Rule", "Space",
           "SpaceError", "parse_rule"]

KnobValue = str | int | float
Config = dict[str, KnobValue]
KnobKind = Literal["categorical", "ordinal"]

MAX_SPACE_SIZE = 1_000_000   # default refusal threshold (Settings.max_space_size, FALCON_MAX_SPACE_SIZE)
EXACT_LIMIT = 200_000        # spaces up to this size are enumerated when an exact answer is asked for
MAX_RULES = 64
_SCAN_LIMIT = 4_000_000      # the "rules exclude everything" check scans spaces up to this size
_CHUNK = 1 << 16             # rows per chunk when enumerating


_LIMIT = {"max_size": MAX_SPACE_SIZE}


def set_max_space_size(n: int) -> None:
    """This process's refusal threshold (FALCON_MAX_SPACE_SIZE: set by the services' and the
    CLI's start from their settings)."""
    if n < 1:
        raise SpaceError(f"the maximum space size must be at least 1, not {n}")
    _LIMIT["max_size"] = int(n)


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
    rules: tuple[Rule, ...] = ()
    roles: KnobRoles = DEFAULT_ROLES     # which knob is the batch, the GPU, ... (services.domain.roles)

    def __post_init__(self) -> None:
        names = [k.name for k in self.knobs]
        if len(set(names)) != len(names):
            raise SpaceError(f"duplicate knob names in {names}")
        for k in self.knobs:
            if len({repr(v) for v in k.values}) != len(k.values):
                raise SpaceError(f"knob {k.name} lists a value twice")
        for r in self.rules:
            if r.knobs != self.knobs:
                raise SpaceError(f"rule {r.text!r} was parsed for other knobs than this space's")
        if self.rules:
            self._check_not_empty()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], max_size: int | None = None) -> "Space":
        """Accepts {"knobs": [{"name", "values", "kind"?}, ...], "rules"?: [str], "roles"?: {role:
        knob}} or {"knobs": {name: [values]}, ...}. A space of more than ``max_size`` configurations
        (default: the process's limit, :func:`set_max_space_size`) is refused before its rules
        are looked at (it would be too large to search or check)."""
        max_size = _LIMIT["max_size"] if max_size is None else max_size
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
        size = math.prod(len(k.values) for k in knobs)
        if size > max_size:
            raise SpaceError(f"the space has {size:,} configurations, more than the maximum of {max_size:,} "
                             "(FALCON_MAX_SPACE_SIZE): drop values or knobs")
        raw_rules = d.get("rules") or []
        if not isinstance(raw_rules, list) or not all(isinstance(r, str) for r in raw_rules):
            raise SpaceError("'rules' must be a list of strings")
        if len(raw_rules) > MAX_RULES:
            raise SpaceError(f"{len(raw_rules)} rules, more than the maximum of {MAX_RULES}")
        return cls(tuple(knobs), tuple(parse_rule(r, knobs) for r in raw_rules), KnobRoles.from_dict(d.get("roles")))

    @classmethod
    def from_file(cls, path: str | Path, max_size: int | None = None) -> "Space":
        p = Path(path)
        if p.suffix not in (".yaml", ".yml", ".toml"):
            raise SpaceError(f"{p}: a space file is .yaml, .yml or .toml")
        data = read_config_file(p, "space file", SpaceError)
        if not isinstance(data, Mapping):
            raise SpaceError(f"{p}: expected a mapping at the top level")
        body = data.get("space", data)
        stray = [k for k in (body if isinstance(body, Mapping) else {}) if k not in ("knobs", "rules")]
        if stray:     # e.g. a knob written at the top level: it would be silently left out of the space
            raise SpaceError(f"{p}: {stray[0]!r} is not a section of a space file (knobs:, rules:); a knob goes "
                             f"under knobs:, indented, as '  {stray[0]}: [values]'")
        return cls.from_dict(body, max_size=max_size)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"knobs": [{"name": k.name, "values": list(k.values), "kind": k.kind}
                                       for k in self.knobs]}
        if self.rules:   # absent when there are none, so rule-less spaces keep their fingerprints
            d["rules"] = [r.text for r in self.rules]
        if self.roles != DEFAULT_ROLES:   # likewise: only roles that differ from the defaults
            d["roles"] = self.roles.to_dict()
        return d

    def fingerprint(self) -> str:
        """A short stable id of the space (its knobs, values, kinds and rules)."""
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
        """In the space and allowed by its rules."""
        try:
            return self.allows(config)
        except SpaceError:
            return False

    def allows(self, config: Mapping[str, Any]) -> bool:
        """Whether the rules allow this configuration (SpaceError if it is not in the space)."""
        c = self.canonical(config)
        if not self.rules:
            return True
        row = np.array([[k.index_of(c[k.name]) for k in self.knobs]])
        return bool(self.allows_rows(row)[0])

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

    # -- allowed configurations, vectorised (rows = value indices, one column per knob) ---------
    @cached_property
    def _radices(self) -> np.ndarray:
        return np.array([len(k.values) for k in self.knobs], dtype=np.int64)

    @cached_property
    def _strides(self) -> np.ndarray:
        """Multipliers of the mixed-radix index of :meth:`index` (the last knob varies fastest)."""
        if self.size >= 2**62:
            raise SpaceError(f"a space of {self.size:,} configurations is too large to index")
        return np.array([math.prod(int(r) for r in self._radices[i + 1:]) for i in range(len(self.knobs))],
                        dtype=np.int64)

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """Value indices (n, knobs) of configuration indices: :meth:`config_at`, vectorised."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        return (indices[:, None] // self._strides) % self._radices

    def indices_of(self, rows: np.ndarray) -> np.ndarray:
        """Configuration indices of value-index rows: :meth:`index`, vectorised."""
        return np.asarray(rows, dtype=np.int64).reshape(-1, len(self.knobs)) @ self._strides

    def allows_rows(self, rows: np.ndarray) -> np.ndarray:
        """One bool per row: every rule holds."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(self.knobs))
        ok = np.ones(len(rows), dtype=bool)
        for r in self.rules:
            ok &= r.allows_indices(rows)
        return ok

    def allowed_indices(self, limit: int = EXACT_LIMIT) -> np.ndarray:
        """Every allowed index, ascending, by enumeration: for spaces small enough to search
        exhaustively (SpaceError above ``limit`` configurations)."""
        if self.size > limit:
            raise SpaceError(f"the space has {self.size:,} configurations, too many to enumerate (limit {limit:,})")
        parts = []
        for start in range(0, self.size, _CHUNK):
            idx = np.arange(start, min(start + _CHUNK, self.size), dtype=np.int64)
            parts.append(idx[self.allows_rows(self.rows(idx))] if self.rules else idx)
        return np.concatenate(parts)

    def _random_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.stack([rng.integers(0, int(r), size=n) for r in self._radices], axis=1)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Up to ``n`` distinct allowed indices, uniformly among allowed configurations, in random
        order: per-knob value indices are drawn, rows the rules refuse are dropped, repeated until
        enough. Small spaces (or n near the size) are drawn from the enumerated allowed set.
        Fewer than ``n`` only when fewer are allowed (or, in a huge space, the rules are so tight
        that 2^22 draws found too few)."""
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        if self.size <= max(4 * n, 4096):
            allowed = self.allowed_indices(limit=max(EXACT_LIMIT, self.size))
            return rng.permutation(allowed)[:n]
        chosen = np.zeros(0, dtype=np.int64)
        drawn, accepted = 0, 0
        while len(chosen) < n and drawn < 1 << 22:
            share = (accepted + 1) / (drawn + 1)   # acceptance so far (1 before the first round)
            batch = int(min(1 << 20, max(1024, 1.25 * (n - len(chosen)) / share)))
            rows = self._random_rows(rng, batch)
            ok = self.allows_rows(rows)
            drawn, accepted = drawn + batch, accepted + int(ok.sum())
            merged = np.concatenate([chosen, self.indices_of(rows[ok])])
            _, first = np.unique(merged, return_index=True)
            chosen = merged[np.sort(first)][:n]   # first occurrences, draw order kept
        if len(chosen) < n and self.size <= EXACT_LIMIT:
            rest = np.setdiff1d(self.allowed_indices(), chosen)
            chosen = np.concatenate([chosen, rng.permutation(rest)[:n - len(chosen)]])
        return chosen

    def neighbours(self, index: int) -> np.ndarray:
        """Allowed indices one move away: an ordinal knob one rank up or down, a categorical knob
        any other value (local search around the best configurations)."""
        if not 0 <= index < self.size:
            raise SpaceError(f"index {index} outside a space of {self.size}")
        row = self.rows(np.array([index]))[0]
        cands = []
        for j, k in enumerate(self.knobs):
            moves = [row[j] - 1, row[j] + 1] if k.kind == "ordinal" else range(len(k.values))
            for v in moves:
                if 0 <= v < len(k.values) and v != row[j]:
                    r = row.copy()
                    r[j] = v
                    cands.append(r)
        if not cands:
            return np.zeros(0, dtype=np.int64)
        rows = np.array(cands)
        return self.indices_of(rows[self.allows_rows(rows)])

    def allowed_size_estimate(self, draws: int = 1 << 16, seed: int = 0) -> int:
        """How many configurations the rules allow: exact up to :data:`EXACT_LIMIT`, else the
        allowed share of ``draws`` uniform draws times the size (deterministic per seed)."""
        if not self.rules:
            return self.size
        if self.size <= EXACT_LIMIT:
            return len(self.allowed_indices())
        ok = self.allows_rows(self._random_rows(np.random.default_rng(seed), draws))
        return round(self.size * float(ok.mean()))

    def _check_not_empty(self) -> None:
        """Refuses rules that leave nothing to search: a quick sample first (cheap when anything
        is allowed), then a full scan of spaces up to _SCAN_LIMIT, else a sampled verdict."""
        draws = min(self.size, 4096)
        if self.allows_rows(self._random_rows(np.random.default_rng(0), draws)).any():
            return
        if self.size > _SCAN_LIMIT:
            raise SpaceError(f"the rules exclude every configuration: none of {draws:,} drawn at random from "
                             f"{self.size:,} is allowed (too large to check them all): loosen the rules")

        def any_allowed(rules: tuple[Rule, ...]) -> bool:
            for start in range(0, self.size, _CHUNK):
                rows = self.rows(np.arange(start, min(start + _CHUNK, self.size)))
                if np.logical_and.reduce([r.allows_indices(rows) for r in rules]).any():
                    return True
            return False

        if any_allowed(self.rules):
            return
        alone = [r.text for r in self.rules if not any_allowed((r,))]
        blame = f"; {alone[0]!r} alone excludes all" if alone else " (together)"
        raise SpaceError(f"the rules exclude every configuration of the {self.size:,}{blame}")

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
        return self.encode_indices(np.arange(self.size))

    def encode_indices(self, indices: np.ndarray) -> np.ndarray:
        """:meth:`encode` of the configurations at ``indices``, vectorised (no Python loop per
        configuration: spaces of 10^6 are encoded in chunks of candidates)."""
        rows = self.rows(indices)
        out = np.zeros((len(rows), self.encoded_dim))
        pos = 0
        for j, k in enumerate(self.knobs):
            if k.kind == "categorical":
                out[np.arange(len(rows)), pos + rows[:, j]] = 1.0
                pos += len(k.values)
            else:
                out[:, pos] = rows[:, j] / (len(k.values) - 1) if len(k.values) > 1 else 0.0
                pos += 1
        return out

    def subspace(self, names: tuple[str, ...]) -> "Space":
        """The space of only these knobs (in this space's order, no rules): where knowledge
        that covers only some knobs lives."""
        return Space(tuple(k for k in self.knobs if k.name in names), roles=self.roles)

    def project(self, indices: np.ndarray, sub: "Space") -> np.ndarray:
        """Indices in ``sub`` (a :meth:`subspace`) of the configurations at ``indices``."""
        if sub.names == self.names:
            return np.asarray(indices, dtype=np.int64)
        cols = [self.names.index(n) for n in sub.names]
        return sub.indices_of(self.rows(indices)[:, cols])

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


def read_config_file(p: Path, what: str, error: type[ValueError]) -> Any:
    """A YAML or TOML file's content; ``error`` with one line (file, line, column, what is wrong)
    when it cannot be read or parsed, never a parser's traceback."""
    try:
        text = p.read_text()
    except OSError as exc:
        raise error(f"{what} {p}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text) if p.suffix == ".toml" else yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise error(f"{what} {p} is not valid YAML{where}: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if p.suffix == ".toml" else "YAML"
        raise error(f"{what} {p} is not valid {kind}: {str(exc).splitlines()[0]}") from None


PAPER_SPACE = Space.from_dict({"knobs": [
    {"name": "batchsize", "values": [4, 8, 16, 32, 64, 128]},
    {"name": "cpus", "values": [1, 2, 3, 4, 5]},
    {"name": "gpumem", "values": [0.8, 1.2, 1.6, 2.4]},
    {"name": "gpupower", "values": [50, 75, 100]},
    {"name": "gputype", "values": ["M60", "K80", "T4", "V100"], "kind": "categorical"},
]})
