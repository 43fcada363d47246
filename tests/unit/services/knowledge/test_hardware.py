import copy

import numpy as np
import pytest
import yaml

from services.domain.space import PAPER_SPACE, Space
from services.knowledge.hardware import (DEFAULT_HARDWARE, DEFAULT_HARDWARE_FILE, FEATURE_NAMES, HardwareCatalogue,
                                         HardwareError, check_space)

T4 = {"kind": "gpu", "fp32_tflops": 8.1, "fp16_tflops": 65, "int8_tops": 130, "mem_bandwidth_gbs": 320,
      "mem_gb": 16, "tdp_w": 70, "tensor_cores": True, "source": "datasheet"}


def catalogue_with(**figures):
    return {"devices": {"T4": {**T4, **figures}}}


def test_default_catalogue_holds_the_paper_and_todays_gpus_and_cpus():
    names = {n.lower() for n in DEFAULT_HARDWARE.names}
    for gpu in ("M60", "K80", "T4", "V100", "A10G", "L4", "L40S", "A100", "H100"):
        assert gpu.lower() in names
        dev = DEFAULT_HARDWARE.device(gpu)
        assert dev.is_gpu and dev.source
    cpus = [d for d in DEFAULT_HARDWARE.devices.values() if d.kind == "cpu"]
    assert len(cpus) >= 2
    assert DEFAULT_HARDWARE.resolve("none").kind == "cpu"
    # dense figures: tensor-core FP16 well above FP32, INT8 twice FP16 where there are INT8 tensor cores
    h100 = DEFAULT_HARDWARE.device("H100")
    assert h100.fp16_tflops < 1000 and h100.int8_tops == pytest.approx(2 * h100.fp16_tflops, rel=0.01)


def test_lookup_is_case_insensitive_and_unknown_names_the_known_devices():
    assert DEFAULT_HARDWARE.device("t4") is DEFAULT_HARDWARE.device("T4")
    with pytest.raises(HardwareError, match=r"B200.*known: .*T4"):
        DEFAULT_HARDWARE.device("B200")


def test_no_int8_path_runs_at_the_fp32_rate():
    k80 = DEFAULT_HARDWARE.device("K80")
    assert k80.int8_tops is None
    assert k80.peak_flops("int8") == k80.peak_flops("fp32")
    assert DEFAULT_HARDWARE.device("T4").peak_flops("int8") == pytest.approx(130e12)


def test_features_put_similar_devices_close_and_cpus_far_from_gpus():
    f = DEFAULT_HARDWARE.features
    assert f("T4").shape == (len(FEATURE_NAMES),)
    d = DEFAULT_HARDWARE.distance
    assert d("T4", "L4") < d("T4", "H100")
    assert d("K80", "M60") < d("K80", "V100")
    gpus = [n for n, dev in DEFAULT_HARDWARE.devices.items() if dev.is_gpu]
    widest_gpu_gap = max(d(a, b) for a in gpus for b in gpus)
    for cpu in (n for n, dev in DEFAULT_HARDWARE.devices.items() if not dev.is_gpu):
        assert min(d(cpu, g) for g in gpus) > widest_gpu_gap
    assert DEFAULT_HARDWARE.nearest("T4", ["L4", "H100", "cpu"]) == "L4"


def test_features_do_not_depend_on_the_rest_of_the_catalogue():
    alone = HardwareCatalogue.from_dict(catalogue_with())
    assert np.allclose(alone.features("T4"), DEFAULT_HARDWARE.features("T4"))


@pytest.mark.parametrize("change, message", [
    ({"fp32_tflops": None}, r"device T4: fp32_tflops None is not a number"),
    ({"mem_gb": "sixteen"}, r"device T4: mem_gb 'sixteen' is not a number"),
    ({"tdp_w": -70}, r"device T4: tdp_w -70 is negative"),
    ({"fp64_tflops": 0.25}, r"device T4: unknown field 'fp64_tflops'"),
    ({"tensor_cores": "yes"}, r"device T4: tensor_cores 'yes'"),
    ({"kind": "tpu"}, r"device T4: kind 'tpu'"),
    ({"mem_bandwidth_gbs": 0}, r"device T4: mem_bandwidth_gbs must be positive"),
])
def test_bad_figures_are_one_line_errors_naming_device_and_field(change, message):
    with pytest.raises(HardwareError, match=message) as err:
        HardwareCatalogue.from_dict(catalogue_with(**change))
    assert "\n" not in str(err.value)


def test_missing_figure_is_named():
    figures = dict(T4)
    del figures["mem_bandwidth_gbs"]
    with pytest.raises(HardwareError, match="device T4: missing field 'mem_bandwidth_gbs'"):
        HardwareCatalogue.from_dict({"devices": {"T4": figures}})


def test_from_file_names_the_file(tmp_path):
    data = yaml.safe_load(DEFAULT_HARDWARE_FILE.read_text())
    assert HardwareCatalogue.from_dict(data) == DEFAULT_HARDWARE
    bad = copy.deepcopy(data)
    bad["devices"]["L4"]["fp16_tflops"] = "n/a"
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(HardwareError, match=r"hw.yaml: device L4: fp16_tflops 'n/a' is not a number"):
        HardwareCatalogue.from_file(path)


def test_no_gpu_values_and_missing_knob_map_to_the_default_cpu():
    default = DEFAULT_HARDWARE.device(DEFAULT_HARDWARE.default_cpu)
    for value in ("none", "None", "no-gpu", "", None):
        assert DEFAULT_HARDWARE.resolve(value) == default
    assert DEFAULT_HARDWARE.resolve("EPYC-Zen5").name == "EPYC-Zen5"
    assert DEFAULT_HARDWARE.resolve("v100").name == "V100"


def test_check_space_lists_what_the_catalogue_cannot_describe():
    assert check_space(PAPER_SPACE, DEFAULT_HARDWARE) == []
    cpu_only = Space.from_dict({"knobs": {"cpus": [1, 2], "batchsize": [1, 8]}})
    assert check_space(cpu_only, DEFAULT_HARDWARE) == []
    space = Space.from_dict({"knobs": {"gputype": ["T4", "B200", "none"], "gpumem": [0.8, 24]}})
    problems = check_space(space, DEFAULT_HARDWARE)
    assert any("B200" in p and "not in the hardware catalogue" in p for p in problems)
    assert any("24 GB is more than T4's 16 GB" in p for p in problems)
    gpus_only = HardwareCatalogue.from_dict(catalogue_with())
    problems = check_space(Space.from_dict({"knobs": {"gputype": ["T4", "none"]}}), gpus_only)
    assert problems and "no default_cpu" in problems[0]
