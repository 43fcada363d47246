import pytest

from services.domain.pricing import DEFAULT_PRICES, PriceCatalogue, PricingError


def test_whole_instance_costs_its_on_demand_price():
    cfg = {"gputype": "V100", "gpumem": 16, "cpus": 8}
    assert DEFAULT_PRICES.hourly(cfg) == pytest.approx(3.06)


def test_configuration_pays_for_its_memory_share_and_cores():
    cfg = {"gputype": "T4", "gpumem": 1.6, "cpus": 2, "batchsize": 8, "gpupower": 50}
    gpu_part = 0.526 - 4 * 0.0425
    assert DEFAULT_PRICES.hourly(cfg) == pytest.approx(gpu_part * 1.6 / 16 + 2 * 0.0425)
    assert DEFAULT_PRICES.trial_cost(cfg, 900) == pytest.approx(DEFAULT_PRICES.hourly(cfg) / 4)


def test_more_resources_cost_more_and_power_cap_is_free():
    base = {"gputype": "K80", "gpumem": 0.8, "cpus": 1, "gpupower": 50}
    assert DEFAULT_PRICES.hourly({**base, "cpus": 2}) > DEFAULT_PRICES.hourly(base)
    assert DEFAULT_PRICES.hourly({**base, "gpumem": 2.4}) > DEFAULT_PRICES.hourly(base)
    assert DEFAULT_PRICES.hourly({**base, "gpupower": 100}) == DEFAULT_PRICES.hourly(base)


def test_cpu_only_configuration_and_objective():
    cfg = {"cpus": 2, "batchsize": 8}
    assert DEFAULT_PRICES.hourly(cfg) == pytest.approx(0.085)
    # 100 requests/s for an hour at $0.085/h
    assert DEFAULT_PRICES.requests_per_usd(100, cfg) == pytest.approx(360000 / 0.085)


def test_unknown_gpu_and_inconsistent_catalogue_are_errors():
    with pytest.raises(PricingError, match="A100"):
        DEFAULT_PRICES.hourly({"gputype": "A100", "cpus": 1})
    bad = DEFAULT_PRICES.to_dict()
    bad["usd_per_vcpu_hour"] = 1.0
    with pytest.raises(PricingError, match="vCPUs alone"):
        PriceCatalogue.from_dict(bad)
    assert PriceCatalogue.from_dict(DEFAULT_PRICES.to_dict()) == DEFAULT_PRICES


def test_documented_price_file_is_the_default():
    from tests.helpers import REPO
    assert PriceCatalogue.from_file(REPO / "deploy" / "config" / "ec2-prices.yaml") == DEFAULT_PRICES


def test_multi_gpu_instance_prices_one_gpu_and_no_gpu_value_is_cpu_only():
    cat = PriceCatalogue.from_dict({
        "usd_per_vcpu_hour": 0.05, "no_gpu_value": "none",
        "instances": {"A100": {"instance": "p4d.24xlarge", "usd_per_hour": 20.8, "vcpus": 96, "gpu_mem_gb": 40,
                               "gpus": 8}}})
    per_gpu = (20.8 - 96 * 0.05) / 8
    assert cat.hourly({"gputype": "A100", "gpumem": 40, "cpus": 12}) == pytest.approx(per_gpu + 12 * 0.05)
    assert cat.hourly({"gputype": "A100", "gpumem": 10, "cpus": 2}) == pytest.approx(per_gpu / 4 + 2 * 0.05)
    assert cat.hourly({"gputype": "none", "gpumem": 0, "cpus": 4}) == pytest.approx(0.2)
    assert PriceCatalogue.from_dict(cat.to_dict()) == cat
    assert cat.to_dict()["instances"]["A100"]["gpus"] == 8 and cat.to_dict()["no_gpu_value"] == "none"
    assert "gpus" not in DEFAULT_PRICES.to_dict()["instances"]["T4"]      # older catalogues: same wire form
    assert "no_gpu_value" not in DEFAULT_PRICES.to_dict()
    with pytest.raises(PricingError, match="no price for GPU type 'none'"):
        DEFAULT_PRICES.hourly({"gputype": "none", "cpus": 1})
    bad = cat.to_dict()
    bad["instances"]["A100"]["gpus"] = 0
    with pytest.raises(PricingError, match="at least 1"):
        PriceCatalogue.from_dict(bad)
    bad = cat.to_dict()
    bad["instances"]["none"] = bad["instances"]["A100"]
    with pytest.raises(PricingError, match="no-GPU value"):
        PriceCatalogue.from_dict(bad)


def test_cloud_price_file_prices_one_gpu_of_each_family():
    from tests.helpers import REPO
    cat = PriceCatalogue.from_file(REPO / "deploy" / "config" / "cloud-prices.yaml")
    assert PriceCatalogue.from_dict(cat.to_dict()) == cat
    whole = {g: cat.hourly({"gputype": g, "gpumem": i.gpu_mem_gb, "cpus": i.vcpus / i.gpus})
             for g, i in cat.instances.items()}
    for g in ("T4", "A10G", "L4", "L40S"):    # one-GPU instances: the whole instance's price
        assert whole[g] == pytest.approx(cat.instances[g].usd_per_hour)
    for g in ("A100", "H100"):                # an eighth of the 8-GPU instance
        assert whole[g] == pytest.approx(cat.instances[g].usd_per_hour / 8)
    assert whole["T4"] < whole["L4"] < whole["A10G"] < whole["L40S"] < whole["A100"] < whole["H100"]
