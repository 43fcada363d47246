"""Numbers for people: every figure the CLI and the reports print, with its unit and a sensible
precision (``2,280 RPS``, ``193 million req/$``, ``$0.526/h``, ``12.3 ms``), never in scientific
notation. Thousands separators and the words for large numbers come from ``humanize``.

RPS/$ has two units, and every place that shows it says which, as the result states it
(``rps_per_usd_unit``, services/domain/figures.py): a live or served trial measures **requests per
dollar**; a replay trial reads a table's **normalised RPS/$** (0-1, the table's best
configuration is about 1), which has no unit."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import humanize

from services.domain.figures import NORMALISED, unit_text
from services.domain.objectives import P99, RPS_PER_USD, USD_FOR_LOAD, Objective


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits, with thousands separators, no exponent."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{round(x, decimals):,.{decimals}f}"


def number(x: float | None, digits: int = 3) -> str:
    """Below a million: digits with separators (``45,600``); above: words (``193 million``)."""
    if x is None:
        return "-"
    if float(x).is_integer() and abs(x) < 1e6:
        return humanize.intcomma(int(x))
    if abs(x) >= 1e6:
        return humanize.intword(round(x), f"%.{digits}g")
    if abs(x) >= 10 ** (digits - 1):
        return humanize.intcomma(round(x))
    return sig(x, digits)


def rps(x: float | None) -> str:
    return "-" if x is None else f"{number(x)} RPS"


def req_per_usd(x: float | None) -> str:
    return "-" if x is None else f"{number(x)} req/$"


def usd(x: float | None) -> str:
    """Dollars: ``$1,234``, ``$12.50``, ``$0.51``, and 3 significant digits below a dollar
    (``$0.0162``, ``$0.00091``)."""
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"${humanize.intcomma(round(x))}"
    if abs(x) >= 1 or x == 0:
        return f"${x:,.2f}"
    text = sig(x, 3).rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{x:.2f}"
    return f"${text}"


def usd_per_hour(x: float | None) -> str:
    return "-" if x is None else f"${sig(x, 3)}/h"


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def ms(x: float | None) -> str:
    return "-" if x is None else f"{_trim(sig(x, 3))} ms"


def seconds(x: float | None) -> str:
    """A duration: ``0.5 s``, ``42 s``, ``2 minutes and 3 seconds``."""
    if x is None:
        return "-"
    if x < 60:
        if x >= 10:
            return f"{round(x)} s"
        return f"{_trim(sig(x, 2))} s"
    return humanize.precisedelta(timedelta(seconds=round(x)), minimum_unit="seconds")


def rps_per_usd(value: float | None, unit: str | None) -> str:
    """RPS/$ in the unit its result states (``rps_per_usd_unit``): ``0.997 norm. RPS/$`` or
    ``193 million req/$``."""
    if value is None:
        return "-"
    return f"{value:.3f} norm. RPS/$" if unit == NORMALISED else req_per_usd(value)


def rps_per_usd_cell(value: float | None, unit: str | None) -> str:
    """RPS/$ in a column whose head names the unit: ``0.997`` or ``193 million req/$``."""
    if value is None:
        return "-"
    return f"{value:.3f}" if unit == NORMALISED else req_per_usd(value)


def objective_name(unit: str | None) -> str:
    """RPS/$ in words, in ``unit``: ``requests per $`` or ``normalised RPS/$ (the table's best = 1)``."""
    return unit_text(unit)[1]


def objective_text(obj: Objective | None, natural: float | None, unit: str | None) -> str:
    """A value of the search's objective in its unit (``unit``: RPS/$'s, as its results state
    it): ``0.997 norm. RPS/$``, ``$0.17/h for 5,000 RPS``, ``p99 0.42 ms``, ``0.8 J/request``."""
    if obj is None or obj.name == RPS_PER_USD:
        return rps_per_usd(natural, unit)
    if natural is None:
        return "-"
    if obj.name == USD_FOR_LOAD:
        return f"{usd_per_hour(natural)} for {rps(obj.load_rps)}"
    if obj.name == P99:
        return f"p99 {ms(natural)}"
    return f"{sig(natural, 3)} J/request"


def objective_title(obj: Objective | None, unit: str | None) -> str:
    """What the search optimises, in words (the objective's unit and direction; ``unit``: RPS/$'s)."""
    return objective_name(unit) if obj is None else obj.describe(unit)


# the unit of each knob whose value is a quantity (the others are counts or names)
KNOB_UNITS = {"gpumem": "GB", "gpupower": "%", "queue_delay_us": "µs"}


def knob(name: str, value: Any) -> str:
    """A knob's value with its unit: ``gpumem=2.4 GB``, ``gpupower=50%``, ``cpus=2``."""
    unit = KNOB_UNITS.get(name)
    if unit is None or isinstance(value, str):
        return f"{name}={value}"
    return f"{name}={value}{unit}" if unit == "%" else f"{name}={value} {unit}"


def config(c: dict[str, Any]) -> str:
    return ", ".join(knob(k, v) for k, v in c.items())


def round_sig(x: float | None, digits: int = 3) -> float | None:
    """A figure for JSON: ``digits`` significant digits however small (a cost of $0.000071 stays
    0.000071, where rounding to 4 decimals said 0.0001)."""
    if x is None or x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def compact(x: float | None) -> str:
    """A short figure for chart ticks and cards: ``5.14M``, ``12.3k``, ``0.997``."""
    if x is None:
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{_trim(sig(x / div, 3))}{suffix}"
    return _trim(sig(x, 3)) if x != 0 else "0"


def reason(text: str | None) -> str:
    """A failure note for people: without the exception class a runner put in front
    (``ValueError: input data_0's ...`` -> ``input data_0's ...``)."""
    if not text:
        return ""
    head, sep, rest = text.partition(": ")
    if sep and head.isidentifier() and (head.endswith(("Error", "Exception")) or head in ("Fail", "Failure")):
        return rest
    return text


__all__ = ["KNOB_UNITS", "compact", "config", "knob", "ms", "number", "objective_name", "objective_text",
           "objective_title", "reason", "req_per_usd", "round_sig", "rps", "rps_per_usd", "rps_per_usd_cell",
           "seconds", "sig", "usd", "usd_per_hour"]
