import pytest

from services.common.pricing import DEFAULT_PRICES, PriceCatalogue, PricingError


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
