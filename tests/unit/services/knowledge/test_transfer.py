"""A device an offline table never measured gets values transferred from the devices it did:
shape from the most similar ones (specs), level scaled by the roofline's device ratio."""

import numpy as np
import pytest

from services.domain.falcon_data import model_table_from_rows
from services.domain.space import Space
from services.knowledge import transfer
from services.knowledge.hardware import DEFAULT_HARDWARE
from services.knowledge.knowledge import source_values

SPACE = Space.from_dict({"knobs": {"batchsize": [8, 16, 32], "gputype": ["K80", "T4", "V100", "L4"]}})


def test_device_factors_rank_devices_by_predicted_price_performance():
    f = transfer.device_factors(SPACE, hourly=lambda c: {"K80": 0.9, "T4": 0.5, "V100": 3.0, "L4": 0.8}[c["gputype"]])
    assert set(f) == {"K80", "T4", "V100", "L4"}
    assert f["T4"] > f["K80"] and f["L4"] > f["K80"]


def test_an_unmeasured_device_is_filled_from_the_similar_measured_ones():
    grid = np.array([[0.2, 0.5, 0.9],          # K80 over batch 8, 16, 32
                     [np.nan] * 3,             # T4: never measured
                     [0.3, 0.6, 1.0],          # V100
                     [np.nan] * 3])            # L4: never measured
    values = grid.T.reshape(-1)                # configs() order: batchsize outer, gputype inner
    factors = {"K80": 1.0, "T4": 2.0, "V100": 1.5, "L4": 4.0}
    filled = transfer.fill_unmeasured_devices(values, SPACE, factors).reshape(3, 4).T
    assert np.allclose(filled[[0, 2]], grid[[0, 2]])          # measured devices untouched
    assert not np.isnan(filled).any()
    assert (np.diff(filled[1]) > 0).all()                     # the shape over batch sizes carries over
    # the level: between the measured ones scaled by (f(T4)/f(g))^RATIO_POWER
    lo = min(grid[0, 2] * (2.0 / 1.0) ** transfer.RATIO_POWER, grid[2, 2] * (2.0 / 1.5) ** transfer.RATIO_POWER)
    hi = max(grid[0, 2] * (2.0 / 1.0) ** transfer.RATIO_POWER, grid[2, 2] * (2.0 / 1.5) ** transfer.RATIO_POWER)
    assert lo - 1e-9 <= filled[1, 2] <= hi + 1e-9
    assert filled[3, 2] > filled[1, 2]                        # L4's larger factor lifts it more


def test_a_device_the_catalogue_does_not_know_stays_unknown():
    space = Space.from_dict({"knobs": {"batchsize": [8, 16], "gputype": ["T4", "TPUv9"]}})
    values = np.array([0.5, np.nan, 0.7, np.nan])
    f = transfer.device_factors(space, hourly=lambda c: 1.0)
    assert "TPUv9" not in f
    assert np.isnan(transfer.fill_unmeasured_devices(values, space, f)[[1, 3]]).all()


def test_a_source_table_without_one_gpu_type_still_covers_it():
    rows = [[b, g, v] for b, v0 in ((8, 0.2), (16, 0.5), (32, 0.9)) for g, v in (("K80", v0), ("V100", v0 + 0.1))]
    table = model_table_from_rows("src", ["batchsize", "gputype", "norm.(rps/budget)"], rows)
    factors = transfer.device_factors(SPACE, hourly=lambda c: 1.0)
    v = source_values(table, SPACE, factors, DEFAULT_HARDWARE)
    assert v is not None and not np.isnan(v).any()
    t4 = v.reshape(3, 4)[:, 1]
    assert t4[2] == pytest.approx(max(t4)) and t4[0] < t4[2]


def test_knobs_no_table_covers_are_carried_by_the_cost_model():
    space = Space.from_dict({"knobs": {"batchsize": [8, 64], "gputype": ["T4", "K80"], "precision": ["fp32", "int8"]}})
    grid = space.subspace(("batchsize", "gputype"))

    def rps_per_usd(configs):       # int8 twice as fast on T4; no int8 path on K80 (cannot run)
        return np.array([0.0 if c["precision"] == "int8" and c["gputype"] == "K80"
                         else 2.0 if c["precision"] == "int8" else 1.0 for c in configs])
    ratio = transfer.uncovered_ratio(space, grid, np.arange(space.size), rps_per_usd, power=1.0)
    by = {(c["gputype"], c["precision"]): r for c, r in zip(space.configs(), ratio)}
    assert by[("T4", "fp32")] == 1.0 and by[("T4", "int8")] == 2.0 and by[("K80", "int8")] == 0.0
    assert (transfer.uncovered_ratio(grid, grid, np.arange(grid.size), rps_per_usd) == 1.0).all()
