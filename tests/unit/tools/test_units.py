"""Numbers for people: units, sensible precision, never scientific notation."""

import pytest

from tools import units


@pytest.mark.parametrize("fn, x, text", [
    (units.rps, 2280.4, "2,280 RPS"), (units.rps, 12.34, "12.3 RPS"), (units.rps, None, "-"),
    (units.req_per_usd, 1.93e8, "193 million req/$"), (units.req_per_usd, 45_600.2, "45,600 req/$"),
    (units.usd, 0.51, "$0.51"), (units.usd, 0.0162, "$0.0162"), (units.usd, 1234.5, "$1,234"),
    (units.usd_per_hour, 0.526, "$0.526/h"), (units.ms, 12.345, "12.3 ms"),
    (units.seconds, 0.5, "0.5 s"), (units.seconds, 95, "1 minute and 35 seconds"),
    (units.number, 27, "27"), (units.number, 2.3e9, "2.3 billion"),
])
def test_formats(fn, x, text):
    assert fn(x) == text


def test_rps_per_usd_says_which_unit_its_result_states():
    assert units.rps_per_usd(0.99712, "norm") == "0.997 norm. RPS/$"
    assert units.rps_per_usd(1.93e8, "req/$") == "193 million req/$"
    assert units.rps_per_usd_cell(0.99712, "norm") == "0.997" and units.rps_per_usd_cell(None, "norm") == "-"
    assert "table's best" in units.objective_name("norm") and units.objective_name("req/$") == "requests per $"


def test_knobs_show_their_units_and_a_baseline_may_be_written_with_them():
    from services.domain.space import PAPER_SPACE
    from tools.report import parse_config
    c = {"batchsize": 8, "cpus": 2, "gpumem": 2.4, "gpupower": 50, "gputype": "T4"}
    assert units.config(c) == "batchsize=8, cpus=2, gpumem=2.4 GB, gpupower=50%, gputype=T4"
    assert parse_config("batchsize=16, cpus=2, gpumem=1.6 GB, gpupower=100%, gputype=V100", PAPER_SPACE)["gpumem"] == 1.6


def test_costs_keep_enough_digits_to_be_non_zero_and_json_agrees_with_the_text():
    for x in (7.07e-05, 4.4998e-06, 1.86e-06, 0.0162):
        assert units.usd(x) not in ("$0.00", "$0.000", "$0.0000") and units.round_sig(x) != 0
        assert units.usd(units.round_sig(x)) == units.usd(x)          # --json spent_usd and status's text agree
    assert units.round_sig(7.07e-05) == 7.07e-05 and units.round_sig(None) is None and units.round_sig(0.0) == 0.0


def test_compact_figures_for_charts_never_use_exponents():
    assert units.compact(5.14e6) == "5.14M" and units.compact(12_300) == "12.3k" and units.compact(0.997) == "0.997"
    assert "e" not in units.compact(5.14e6) and units.number(5.14e6) == "5.14 million"


def test_failure_notes_lose_the_exception_class():
    assert units.reason("ValueError: input data_0's batch is fixed at 1") == "input data_0's batch is fixed at 1"
    assert units.reason("runner died: lease expired") == "runner died: lease expired"
    assert units.reason(None) == ""
