"""Knowledge for hardware that no table measured: a device missing from an offline table (a GPU
type new on the market) gets values transferred from the devices the table did measure.

The value of configuration ``x`` on unmeasured device ``u`` is the weighted mean, over measured
devices ``g``, of the measured value at the same other knob values, times the roofline's RPS/$
ratio between the two devices::

    v(u, x) = sum_g w(u, g) * v(g, x) * f(u) / f(g) / sum_g w(u, g)

- ``w(u, g) = exp(-(d(u, g) / d_min)^2)``: spec similarity (hardware catalogue features; the
  nearest measured device weighs e^-1, farther ones much less);
- ``f(d)``: the cost model's RPS/$ for device ``d`` at the space's middle configuration, for the
  table's operators (a KOP's curve: that operator alone; a model table: a generic CNN/dense mix).

So the shape over the other knobs comes from the most similar measured devices, and the level
from specs and prices. Values whose device the catalogue does not know stay unknown (neutral).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from services.domain.pricing import DEFAULT_PRICES, PricingError
from services.domain.space import Space
from services.knowledge.cost_model import CostModel, CostModelError
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareCatalogue, HardwareError

# what a model table's unknown model is taken to be made of when only its device effect is needed
GENERIC_OPERATORS: tuple[Mapping[str, Any], ...] = (
    {"op": "conv2d", "time_share": 0.5}, {"op": "dense", "time_share": 0.3}, {"op": "add", "time_share": 0.1},
    {"op": "relu", "time_share": 0.1})
Hourly = Callable[[Mapping[str, Any]], float]
RATIO_POWER = 0.5        # how much of the roofline's device ratio is believed, in log space (1: all; 0: levels copied)


def middle_config(space: Space) -> dict[str, Any]:
    """Every knob at its middle value (ordinal) or first value (categorical)."""
    return {k.name: k.values[len(k.values) // 2] if k.kind == "ordinal" else k.values[0] for k in space.knobs}


def device_factors(space: Space, operators: Sequence[Mapping[str, Any]] = GENERIC_OPERATORS,
                   hardware: HardwareCatalogue = DEFAULT_HARDWARE, hourly: Hourly = DEFAULT_PRICES.hourly,
                   knob: str | None = None) -> dict[Any, float]:
    """Relative RPS/$ per value of the hardware knob (default: the space's GPU role; the cost
    model at the space's middle configuration); values the catalogue or the prices do not know
    are left out. Without prices for every known value, RPS alone (a common price is assumed)."""
    knob = knob or space.roles.gpu
    if knob not in space.names:
        return {}
    known = [v for v in space.knob(knob).values if _known(hardware, v)]
    base = middle_config(space)
    configs = [{**base, knob: v} for v in known]
    try:
        model = CostModel(list(operators), hardware, hourly, knobs=space.roles)
        try:
            pred = model.predict(configs)
        except PricingError:
            pred = model.predict_rps(configs)
    except (CostModelError, HardwareError):
        return {}
    return {v: float(p) for v, p in zip(known, pred) if p > 0}


def _known(hardware: HardwareCatalogue, value: Any) -> bool:
    try:
        hardware.resolve(value)
        return True
    except HardwareError:
        return False


def fill_unmeasured_devices(values: np.ndarray, space: Space, factors: Mapping[Any, float],
                            hardware: HardwareCatalogue = DEFAULT_HARDWARE, knob: str | None = None) -> np.ndarray:
    """``values`` (per configuration, space.configs() order, NaN = not measured) with every
    device the table never measured filled from the measured ones (module doc). Devices with
    some measurements, and devices without a factor, are left as they are. ``knob``: default,
    the space's GPU role."""
    knob = knob or space.roles.gpu
    if knob not in space.names or not np.isnan(values).any():
        return values
    axis = space.names.index(knob)
    devices = space.knob(knob).values
    grid = np.moveaxis(values.reshape([len(k.values) for k in space.knobs]), axis, 0).copy()
    measured = [i for i, d in enumerate(devices) if not np.isnan(grid[i]).all() and d in factors]
    for u, dev in enumerate(devices):
        if not np.isnan(grid[u]).all() or dev not in factors or not measured:
            continue
        dist = np.array([_distance(hardware, dev, devices[g]) for g in measured])
        w = np.exp(-(dist / max(float(dist.min()), 1e-9)) ** 2)
        num = np.zeros(grid.shape[1:])
        den = np.zeros(grid.shape[1:])
        for wg, g in zip(w, measured):
            ok = ~np.isnan(grid[g])
            num[ok] += wg * grid[g][ok] * (factors[dev] / factors[devices[g]]) ** RATIO_POWER
            den[ok] += wg
        grid[u] = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
    return np.moveaxis(grid, 0, axis).reshape(-1)


def _distance(hardware: HardwareCatalogue, a: Any, b: Any) -> float:
    return float(np.linalg.norm(hardware.features(hardware.resolve(a).name) - hardware.features(hardware.resolve(b).name)))


def uncovered_ratio(space: Space, grid: Space, indices: np.ndarray, rps_per_usd: Callable[[list], np.ndarray],
                    power: float = RATIO_POWER) -> np.ndarray:
    """How the knobs the offline data does not cover (those of ``space`` missing from ``grid``,
    e.g. precision, replicas) change each configuration's RPS/$, by the cost model: its
    prediction at the configuration over its prediction with those knobs at their first value
    (what the offline tables are taken to have measured), to the power ``power``. 1 where the
    space has no such knob; 0 where the cost model says the configuration cannot run."""
    extra = [j for j, n in enumerate(space.names) if n not in grid.names]
    if not extra or len(indices) == 0:
        return np.ones(len(indices))
    rows = space.rows(indices)
    ref = rows.copy()
    ref[:, extra] = 0
    at = rps_per_usd([space.config_at(int(i)) for i in indices])
    base = rps_per_usd([space.config_at(int(i)) for i in space.indices_of(ref)])
    ratio = np.where(base > 0, at / np.maximum(base, 1e-300), 1.0)
    return np.where(at > 0, ratio ** power, 0.0)
