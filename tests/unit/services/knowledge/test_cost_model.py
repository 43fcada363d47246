import math
import time

import numpy as np
import pytest

from services.domain.pricing import DEFAULT_PRICES
from services.domain.space import PAPER_SPACE, Space
from services.knowledge.cost_model import (CostModel, CostModelError, OperatorCost, cpu_cores_scale,
                                           operator_time_s, operators_from_calls, power_scale)
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareCatalogue
from services.profiler.tvm_profile import OpCall

GPU = {"kind": "gpu", "fp32_tflops": 10, "fp16_tflops": 80, "int8_tops": 160, "mem_bandwidth_gbs": 100,
       "mem_gb": 16, "tdp_w": 100, "tensor_cores": True}
CPU = {"kind": "cpu", "fp32_tflops": 0.1, "fp16_tflops": 0.1, "int8_tops": 0.4, "mem_bandwidth_gbs": 10,
       "mem_gb": 2, "tdp_w": 5, "tensor_cores": False}
HW = HardwareCatalogue.from_dict({"devices": {
    "X1": GPU, "X2": {**GPU, "fp32_tflops": 11, "mem_bandwidth_gbs": 110},          # X1's near twin
    "Y": {**GPU, "fp32_tflops": 15, "fp16_tflops": 120, "mem_bandwidth_gbs": 150},  # 1.5 x X1
    "BIG": {**GPU, "fp32_tflops": 60, "fp16_tflops": 1000, "int8_tops": 2000, "mem_bandwidth_gbs": 3000,
            "mem_gb": 80, "tdp_w": 700},
    "cpu": CPU}})

# a small static model: one compute-bound GEMM with 100 MB of weights, one memory-bound add
STATIC = [OperatorCost("dense", flops=2e9, weight_bytes=1e8, activation_bytes=1e6, calls=1),
          OperatorCost("add", flops=1e5, weight_bytes=0.0, activation_bytes=1.2e6, calls=1)]


def flat_price(config):
    return 1.0 + 0.1 * float(config.get("cpus", 1))


def test_roofline_compute_bound_operator_is_its_flops_over_peak():
    op = OperatorCost("conv2d", flops=1e9, weight_bytes=0.0, activation_bytes=1e6)
    x1 = HW.device("X1")
    t = operator_time_s(op, x1, batch=1, efficiency=1.0, overhead_s=0.0)
    assert t == pytest.approx(1e9 / 10e12)                  # 100 us compute vs 10 us memory
    assert operator_time_s(op, x1, batch=1, efficiency=0.5, overhead_s=0.0) == pytest.approx(2e-4)
    assert operator_time_s(op, x1, batch=1, efficiency=1.0, overhead_s=3e-6) == pytest.approx(1e-4 + 3e-6)
    # fp16 GEMM: tensor-core peak (80 TF) and half the bytes -> memory-bound now: 0.5 MB / 100 GB/s
    assert operator_time_s(op, x1, 1, "fp16", efficiency=1.0, overhead_s=0.0) == pytest.approx(max(1e9 / 80e12, 5e-6))


def test_roofline_memory_bound_operator_counts_weights_once_per_batch():
    op = OperatorCost("dense", flops=1e6, weight_bytes=1e8, activation_bytes=1e6)
    x1 = HW.device("X1")
    assert operator_time_s(op, x1, 1, efficiency=1.0, overhead_s=0.0) == pytest.approx((1e8 + 1e6) / 100e9)
    assert operator_time_s(op, x1, 4, efficiency=1.0, overhead_s=0.0) == pytest.approx((1e8 + 4e6) / 100e9)
    # elementwise ops do not get the tensor-core peak, only smaller bytes
    add = OperatorCost("add", flops=1e12, weight_bytes=0.0, activation_bytes=1.0)
    assert operator_time_s(add, x1, 1, "fp16", efficiency=1.0, overhead_s=0.0) == pytest.approx(1e12 / 10e12)


def test_cpu_cores_and_gpu_power_cap_scale_the_peak():
    op = OperatorCost("conv2d", flops=1e9, weight_bytes=0.0, activation_bytes=0.0)
    cpu, x1 = HW.device("cpu"), HW.device("X1")
    one = operator_time_s(op, cpu, 1, cores=1, efficiency=1.0, overhead_s=0.0)
    two = operator_time_s(op, cpu, 1, cores=2, efficiency=1.0, overhead_s=0.0)
    assert one == pytest.approx(1e9 / 0.1e12)
    assert two == pytest.approx(one / cpu_cores_scale(2)) and one / 2 < two < one
    full = operator_time_s(op, x1, 1, efficiency=1.0, overhead_s=0.0)
    half = operator_time_s(op, x1, 1, efficiency=1.0, overhead_s=0.0, power_cap=0.5)
    assert half == pytest.approx(full / power_scale(0.5)) and half > full
    assert power_scale(1.0) == power_scale(0.95) == 1.0


def test_only_a_time_share_cannot_be_timed_directly():
    with pytest.raises(CostModelError, match="only a time share"):
        operator_time_s(OperatorCost("conv2d", time_share=0.8), HW.device("X1"), 1)


def test_larger_batch_gives_more_throughput_until_compute_bound():
    model = CostModel(STATIC, HW, flat_price)
    assert model.knowledge == "static"
    rps = model.predict_rps([{"gputype": "X1", "batchsize": b, "cpus": 4} for b in (1, 2, 8, 64, 128)])
    assert np.all(np.diff(rps) > 0)
    assert rps[1] / rps[0] > 1.5            # weights dominate: a batch of 2 almost doubles throughput
    assert rps[4] / rps[3] < 1.05           # compute-bound: no more gain


def test_config_that_does_not_fit_gpu_memory_is_infeasible():
    model = CostModel(STATIC, HW, flat_price)
    base = {"gputype": "X1", "batchsize": 8, "cpus": 1}
    tight, roomy, too_big = model.predict([{**base, "gpumem": 0.05}, {**base, "gpumem": 1.2},
                                           {**base, "gpumem": 24}])
    assert tight == 0.0 and roomy > 0 and too_big == 0.0
    # the footprint grows with the batch: what fits at batch 8 may not at a huge batch
    need = model.footprint_bytes(8, "fp32")
    assert need is not None and model.footprint_bytes(4096, "fp32") > need
    assert model.predict([{**base, "gpumem": 0.12}])[0] > 0
    assert model.predict([{**base, "gpumem": 0.12, "batchsize": 4096}])[0] == 0.0


def test_calibration_moves_a_device_by_its_measured_ratio_and_similar_devices_borrow_it():
    model = CostModel(STATIC, HW, flat_price)
    configs = [{"gputype": "X1", "batchsize": b, "cpus": 1} for b in (1, 4, 16, 64)]
    truth = 2.0 * model.predict(configs)                      # X1 is really twice as fast as its specs
    calibrated = model.calibrate(list(zip(configs, truth)))
    ratio = calibrated.predict(configs) / model.predict(configs)
    assert np.allclose(ratio, ratio[0]) and ratio[0] == pytest.approx(2.0, rel=0.1)
    twin = {"gputype": "X2", "batchsize": 8, "cpus": 1}       # never measured: borrows X1's scale
    assert calibrated.predict([twin])[0] / model.predict([twin])[0] == pytest.approx(ratio[0])
    assert set(calibrated.scales) == {"X1"}
    assert model.uncalibrated().predict(configs) == pytest.approx(model.predict(configs))


def test_calibration_fixes_the_ranking_of_devices_the_specs_got_wrong():
    model = CostModel(STATIC, HW, flat_price)
    x1 = [{"gputype": "X1", "batchsize": b, "cpus": 1} for b in (1, 4, 16, 64)]
    y = [{"gputype": "Y", "batchsize": b, "cpus": 1} for b in (1, 4, 16, 64)]
    probe = [{"gputype": "X1", "batchsize": 32, "cpus": 1}, {"gputype": "Y", "batchsize": 32, "cpus": 1}]
    before = model.predict(probe)
    assert before[0] < before[1]                              # specs: Y is faster
    obs = list(zip(x1, 2.0 * model.predict(x1))) + list(zip(y, model.predict(y)))   # truth: X1 is
    after = model.calibrate(obs).predict(probe)
    assert after[0] > after[1]


def test_calibration_with_few_points_is_shrunk_towards_one():
    model = CostModel(STATIC, HW, flat_price)
    cfg = {"gputype": "X1", "batchsize": 8, "cpus": 1}
    one = model.calibrate([(cfg, 2.0 * model.predict([cfg])[0])])
    many = model.calibrate([(cfg, 2.0 * model.predict([cfg])[0])] * 20)
    assert 1.0 < one.scales["X1"] < many.scales["X1"] < 2.0
    assert model.calibrate([(cfg, 0.0)]).scales == {}           # nothing to fit in log space


def test_time_shares_only_rank_devices_by_their_specs():
    rows = [{"op": "conv2d", "time_share": 0.8, "memory_share": None, "flops": None},
            {"op": "relu", "time_share": 0.15, "memory_share": None, "flops": None},
            {"op_name": "batch_norm", "time_share": 0.05}]
    model = CostModel(rows, DEFAULT_HARDWARE, DEFAULT_PRICES.hourly)
    assert model.knowledge == "time-share" and model.reference_device == "T4"
    cfg = {"batchsize": 32, "cpus": 2, "gpumem": 1.6, "gpupower": 100}
    rps = model.predict_rps([{**cfg, "gputype": g} for g in ("K80", "M60", "T4", "V100")])
    assert np.all(rps > 0)
    assert rps[3] > rps[2] > max(rps[0], rps[1])             # V100 > T4 > the two old GPUs
    values = model.predict(list(PAPER_SPACE.configs()))
    assert values.shape == (1440,) and np.all(values > 0)   # nothing infeasible: no bytes known


def test_profile_rows_with_flops_and_memory_shares():
    rows = [{"op": "dense", "time_share": 0.9, "memory_share": 0.6, "flops": 2e7, "calls": 4},
            {"op": "add", "time_share": 0.05, "memory_share": 0.3, "flops": 1e4, "calls": 5},
            {"op": "reshape", "time_share": 0.05, "memory_share": 0.1, "flops": 0.0, "calls": 9}]
    model = CostModel(rows, DEFAULT_HARDWARE, DEFAULT_PRICES.hourly)
    assert model.knowledge == "flops"
    bytes_ = {o.op: o.weight_bytes + o.activation_bytes for o in model.operators}
    assert bytes_["dense"] / bytes_["add"] == pytest.approx(2.0)      # memory shares kept
    assert model.predict([{"gputype": "T4", "batchsize": 8, "cpus": 1, "gpumem": 0.8}])[0] > 0


def test_static_profile_calls_become_operator_costs():
    calls = [OpCall("conv2d1", "conv2d", 1e8, 4000, 2000, 4000), OpCall("conv2d2", "conv2d", 1e8, 4000, 2000, 4000),
             OpCall("reshape1", "reshape", 0.0, 4000, 0, 4000), OpCall("take1", "take", 0.0, 64, 10**6, 512)]
    ops = {o.op: o for o in operators_from_calls(calls)}
    assert ops["conv2d"] == OperatorCost("conv2d", 2e8, 4000, 16000, None, 2, 0.0)
    assert ops["take"].weight_bytes == 0 and ops["take"].resident_bytes == 10**6   # a table, not streamed
    assert ops["reshape"].calls == 0 and ops["reshape"].activation_bytes == 0       # a view
    model = CostModel(list(ops.values()), HW, flat_price)
    assert model.footprint_bytes(1, "fp32") >= 10**6


def test_knobs_replicas_precision_unknown_and_cpu_only():
    model = CostModel(STATIC, HW, flat_price)
    base = {"gputype": "X1", "batchsize": 16, "cpus": 2}
    one, two, neutral, fp16, int8 = model.predict_rps([base, {**base, "replicas": 2}, {**base, "graph_opt": "all"},
                                                       {**base, "precision": "fp16"}, {**base, "precision": "int8"}])
    assert two == pytest.approx(2 * one) and neutral == pytest.approx(one)
    assert int8 > fp16 > one
    per_usd = model.predict([base, {**base, "replicas": 2}])
    assert per_usd[1] == pytest.approx(per_usd[0])           # twice the rps for twice the price
    cpu = model.predict_rps([{"batchsize": 16, "cpus": c} for c in (1, 2, 4)])       # no GPU knob: the CPU
    assert np.all(np.diff(cpu) > 0) and cpu[0] < one
    assert model.predict_rps([{"gputype": "none", "batchsize": 16, "cpus": 2}])[0] == pytest.approx(cpu[1])
    with pytest.raises(CostModelError, match="precision"):
        model.predict([{**base, "precision": "fp8"}])


def test_predict_a_few_configurations_of_a_million_point_space_without_enumerating_it(monkeypatch):
    gpus = ["M60", "K80", "T4", "V100", "A10G", "L4", "L40S", "A100", "H100", "none"]
    space = Space.from_dict({"knobs": {"gputype": gpus, "batchsize": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
                                       "cpus": list(range(1, 11)), "gpumem": [0.5 * i for i in range(1, 11)],
                                       "gpupower": [10 * i for i in range(1, 11)], "replicas": list(range(1, 11))}})
    assert space.size == 10**6

    def no_enumeration(self):
        raise AssertionError("the space was enumerated")
    monkeypatch.setattr(Space, "configs", no_enumeration)
    rows = [{"op": "conv2d", "time_share": 0.7}, {"op": "dense", "time_share": 0.2}, {"op": "add", "time_share": 0.1}]
    model = CostModel(rows, DEFAULT_HARDWARE, flat_price)
    rng = np.random.default_rng(0)
    configs = [space.config_at(int(i)) for i in rng.integers(0, space.size, 50)]
    t0 = time.perf_counter()
    values = model.predict(configs)
    assert time.perf_counter() - t0 < 0.5
    assert values.shape == (50,) and np.all(np.isfinite(values)) and np.all(values >= 0)
    assert any(math.isclose(v, 0.0) for v in model.predict([{**configs[0], "gputype": "M60", "gpumem": 10}]))


def test_works_with_the_price_catalogue_hourly():
    model = CostModel(STATIC, DEFAULT_HARDWARE, DEFAULT_PRICES.hourly)
    cfg = {"gputype": "T4", "batchsize": 8, "cpus": 2, "gpumem": 1.6, "gpupower": 75}
    rps, per_usd = model.predict_rps([cfg])[0], model.predict([cfg])[0]
    assert per_usd == pytest.approx(DEFAULT_PRICES.requests_per_usd(rps, cfg))
    with pytest.raises(CostModelError, match="FLOPs and bytes"):
        CostModel([{"op": "conv2d"}], DEFAULT_HARDWARE, DEFAULT_PRICES.hourly)
