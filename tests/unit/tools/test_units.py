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


def test_the_objective_says_which_one_it_is():
    assert units.objective(0.99712, "replay") == "0.997 norm. RPS/$"
    assert units.objective(1.93e8, "live") == "193 million req/$"
    assert "table's best" in units.objective_name("replay") and units.objective_name("live") == "requests per $"
