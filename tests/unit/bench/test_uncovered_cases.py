"""The uncovered-knob benchmark cases: deterministic from a seed, of the advertised sizes, with
the three kinds of effect they claim."""

import math

import numpy as np

from bench.uncovered_cases import SIZES, Case
from tests.helpers import TARGETS


def test_sizes_are_ten_to_the_four_five_and_six():
    sizes = {s: 1440 * math.prod(len(v) for v in knobs.values()) for s, knobs in SIZES.items()}
    assert 1e4 <= sizes["1e4"] < 2e4 and 1e5 <= sizes["1e5"] < 2e5 and 5e5 <= sizes["1e6"] <= 1e6


def test_a_case_is_deterministic_from_its_seed_and_normalised_to_its_optimum():
    a, b = Case(TARGETS / "reg-gru.csv", "1e4", 3), Case(TARGETS / "reg-gru.csv", "1e4", 3)
    assert a.effects == b.effects and a.effects != Case(TARGETS / "reg-gru.csv", "1e4", 4).effects
    v = a.all_values()
    assert a.space.size == len(v) == 11_520 and np.isclose(np.nanmax(v), 1.0)
    c = a.space.config_at(123)
    assert a.value(c) == b.value(c) == (None if np.isnan(v[123]) else v[123])


def test_the_effects_are_monotone_batch_interacting_and_price_coupled():
    case = Case(TARGETS / "reg-resnet-101.csv", "1e5", 0)
    cfg = {"batchsize": 4, "cpus": 4, "gpumem": 1.6, "gpupower": 100, "gputype": "T4",
           "opt_level": 0, "queue_delay_us": 0, "instances": 1}
    f = case.factor
    # monotone: every optimisation level above the last is better
    assert [f({**cfg, "opt_level": x}) for x in range(4)] == sorted(f({**cfg, "opt_level": x}) for x in range(4))
    # the queue delay helps large batches and hurts small ones
    small = f({**cfg, "queue_delay_us": 20000}) / f(cfg)
    large = f({**cfg, "batchsize": 128, "queue_delay_us": 20000}) / f({**cfg, "batchsize": 128})
    assert small < 1.0 < large
    # instances raise the bill: at large batches (a busy GPU) a second one does not pay for itself
    assert f({**cfg, "batchsize": 128, "instances": 2}) < f({**cfg, "batchsize": 128})
    assert f({**cfg, "instances": 2}) > f(cfg)
    # and more instances than the device's memory holds cannot start
    assert f({**cfg, "gputype": "M60", "gpumem": 2.4, "instances": 4}) is None
