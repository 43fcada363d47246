"""Knob roles are declared once, in the space file (defaults for the usual names), and every
reader takes them from there: pricing, the cost model, the curves, the strategies, the routing
of trials and the hardware check."""

import numpy as np
import pytest

import schemas
from schemas import Event
from schemas.events import ModelSubmitted
from services.domain.roles import DEFAULT_ROLES, KnobRoles
from services.domain.space import PAPER_SPACE, Space, SpaceError
from services.domain.spec import SearchSpec
from services.platform.topics import runner_class
from services.knowledge.curves import curve_knob
from services.knowledge.hardware import DEFAULT_HARDWARE, check_space

RENAMED = {"knobs": {"bs": [1, 8], "device": ["T4", "V100", "none"], "cores": [1, 4], "mem": [0.8, 2.4]},
           "roles": {"batch": "bs", "gpu": "device", "cpus": "cores", "gpu_mem": "mem"}}


def test_a_space_file_names_its_roles_and_keeps_the_defaults_for_the_rest():
    s = Space.from_dict(RENAMED)
    assert (s.roles.batch, s.roles.gpu, s.roles.cpus, s.roles.gpu_power) == ("bs", "device", "cores", "gpupower")
    assert Space.from_dict(s.to_dict()) == s and s.to_dict()["roles"] == RENAMED["roles"]
    assert PAPER_SPACE.roles == DEFAULT_ROLES and "roles" not in PAPER_SPACE.to_dict()    # fingerprints kept
    with pytest.raises(SpaceError, match="unknown knob role"):
        Space.from_dict({"knobs": {"a": [1]}, "roles": {"bach": "a"}})
    assert KnobRoles.from_dict(None) is DEFAULT_ROLES


def test_prices_routing_curves_and_the_hardware_check_read_the_spaces_roles():
    space = Space.from_dict(RENAMED)
    spec = SearchSpec({"name": "m", "format": "onnx", "uri": "file:///m.onnx"}, {"kind": "live"}, space=space)
    t4 = {"bs": 1, "device": "T4", "cores": 1, "mem": 0.8}
    default = SearchSpec({"name": "m"}, {"kind": "live"}).prices
    assert spec.prices.hourly(t4) == pytest.approx(default.hourly({"gputype": "T4", "cpus": 1, "gpumem": 0.8}))
    assert runner_class("live", t4, spec.prices.gpu_knob) == "live-t4"
    assert curve_knob("GPU", space.roles) == "device" and curve_knob("batchsize", space.roles) == "bs"
    assert curve_knob("graph_opt", space.roles) == "graph_opt"
    bad = Space.from_dict({**RENAMED, "knobs": {**RENAMED["knobs"], "device": ["T4", "Z9"]}})
    assert any("device='Z9'" in p for p in check_space(bad, DEFAULT_HARDWARE))
    # the roles travel with the spec on the wire
    event = Event.new(ModelSubmitted(spec), "s1", "test")
    assert schemas.decode(schemas.encode(event)).payload.spec.space.roles == space.roles


def test_strategies_read_the_batch_from_the_spaces_batch_role():
    from services.searcher.strategies import SearchContext, make_strategy
    space = Space.from_dict(RENAMED)
    strategy = make_strategy("random", SearchContext(space, 0))
    idx = np.arange(space.size)
    batch, _ = strategy.batch_and_price(idx)
    assert batch is not None and sorted(set(batch)) == [1.0, 8.0]
    assert strategy.batch_and_price(idx)[0] is not None
    assert make_strategy("random", SearchContext(Space.from_dict({"knobs": {"batchsize": [1, 2]},
                                                                   "roles": {"batch": "b"}}), 0)) \
        .batch_and_price(np.arange(2))[0] is None           # the role names a knob the space lacks
