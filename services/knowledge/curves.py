"""Key-operator resource curves (KOP-RCs) mapped onto a configuration space.

A KOP-RC is RPS/$ of one operator over a pair of knobs (Falcon's kop-curves files). Here they
are mapped onto a configuration space: every configuration gets, per operator, the mean of its
curves' values at its knob values. Per operator we also measure how much each knob matters
(share of the variance of that landscape explained by the knob's main effect) and prune the
knobs whose cumulative share falls outside the cut-off (paper: 85%), and classify each curve's
shape (slope / convex / concave / plane).

Everything is an array over ``space.configs()`` order, so strategies index configurations by int.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain.space import Space, SpaceError
from services.knowledge.dataset import KopCurve

# How the kop-curves files name knobs and code GPU types (falcon-data NOTICE), mapped to the
# knob names of the measurement tables. Data-format knowledge, not a model.
# falcon-data's curve-file knob names -> the knob role they mean (services.domain.roles)
CURVE_ROLES: Mapping[str, str] = {"batchsize": "batch", "GPU": "gpu", "CPUcores": "cpus", "power": "gpu_power",
                                  "GPUmem": "gpu_mem"}
# ... and the knob names with the default roles (what `falcon calibrate` writes back)
CURVE_KNOBS: Mapping[str, str] = {name: getattr(DEFAULT_ROLES, role) for name, role in CURVE_ROLES.items()}
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


def curve_knob(name: str, roles: KnobRoles = DEFAULT_ROLES) -> str:
    """The space knob a curve file's knob name means: falcon-data's names (CURVE_ROLES, through
    the space's roles), else the knob's own name (calibrated curves name the space's knobs
    directly, e.g. graph_opt)."""
    return getattr(roles, CURVE_ROLES[name]) if name in CURVE_ROLES else name


def _curve_lookup(curve: KopCurve, space: Space) -> tuple[str, str, dict] | None:
    a, b = (curve_knob(k, space.roles) for k in curve.knobs)
    if a not in space.names or b not in space.names:
        return None

    def value(knob: str, raw: float | str) -> object:
        if knob == space.roles.gpu and not isinstance(raw, str):       # falcon-data's GPU codes
            return GPU_CODES.get(int(raw), str(raw))
        return raw
    table = {}
    for x, y, v in curve.points:
        try:
            ka = space.knob(a).index_of(value(a, x))
            kb = space.knob(b).index_of(value(b, y))
        except SpaceError:
            continue            # a curve point outside the declared space
        table[(ka, kb)] = v
    return a, b, table


def operator_curves(op: str, curves: list[KopCurve], space: Space, cutoff: float = DEFAULT_CUTOFF,
                    fill: Callable[[np.ndarray], np.ndarray] | None = None) -> OperatorCurves | None:
    """``fill``: completes one curve's values over the space where the curve never measured a
    device (see services.knowledge.transfer); without it those configurations stay unknown."""
    lookups = [(c, lk) for c in curves if (lk := _curve_lookup(c, space)) is not None and lk[2]]
    if not lookups:
        return None
    configs = list(space.configs())
    idx = {k.name: np.array([k.index_of(c[k.name]) for c in configs]) for k in space.knobs}
    per = np.full((len(configs), len(lookups)), np.nan)
    for j, (_, (a, b, table)) in enumerate(lookups):
        per[:, j] = [table.get((ia, ib), np.nan) for ia, ib in zip(idx[a], idx[b])]
        if fill is not None:
            per[:, j] = fill(per[:, j])
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
