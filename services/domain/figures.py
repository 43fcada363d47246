"""The registry of measured figures: the one place that says what a trial can measure.

Each :class:`Figure` names a field of ``schemas.events.TrialResult`` (and so a property of
``schemas/v2/defs.json``'s ``trial_row``, trial-completed's schema), its unit (or, for a figure
measured in more than one unit, the units a result states in its own unit field), which way is better, its column in a measured
table (falcon-data layout: knob columns, ``norm.(rps/budget)``, then figure columns), a label
and a description for people. Readers go through it: the table readers (a column after the
objective column that is not a registered figure is an error, not a knob), the replay backend,
the objectives, the report, the dashboard and the audit. Tests tie it to ``TrialResult`` and to
the JSON Schemas, so a figure cannot be half-added.

Adding a measured figure: a :class:`Figure` here, the field on ``TrialResult``, the property in
``schemas/v2/defs.json``'s ``trial_row`` (trial-completed's schema), and the backend that
measures it.

RPS/$ (``rps_per_usd``) comes in two units, and every result says which in
``rps_per_usd_unit``: requests per dollar (``req/$``) where a trial was measured live or
served, a table's RPS/$ normalised to its best configuration (``norm``, 0-1, no unit) where a
replay backend read it from a table. Readers format it by the unit the data states
(:data:`UNIT_TEXT`), never by the backend's kind.

Pure: no I/O, no schemas import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VALUE_COLUMN = "norm.(rps/budget)"
RPS_PER_USD = "rps_per_usd"                     # the trial's RPS/$ (Falcon's objective)

# the units RPS/$ is stated in (a result's ``rps_per_usd_unit``)
RpsPerUsdUnit = Literal["req/$", "norm"]
REQ_PER_USD: RpsPerUsdUnit = "req/$"            # requests per dollar, measured (live, served)
NORMALISED: RpsPerUsdUnit = "norm"              # a table's RPS/$ over its best (replay): 0-1, no unit
# unit -> (short, for column heads and figures; in words)
UNIT_TEXT: dict[str, tuple[str, str]] = {
    REQ_PER_USD: ("req/$", "requests per $"),
    NORMALISED: ("norm. RPS/$", "normalised RPS/$ (the table's best = 1)"),
}


@dataclass(frozen=True)
class Figure:
    name: str                                   # the TrialResult field (and trial-completed property)
    unit: str                                   # "" for a plain ratio
    direction: Literal["higher", "lower"] | None  # which way is better; None: a fact, not a goal
    column: str | None                          # its column in a measured table; None: never tabled
    label: str                                  # short, for column heads and plots
    description: str
    # how a replayed measurement scales when the replay simulates noise (a throughput factor f):
    # the figure times f ** power (throughput 1, a time or an energy per request -1); None: kept
    throughput_power: int | None = None
    on_trial: bool = True                       # False: a table column only (e.g. the price)
    # a figure measured in several units: the TrialResult field stating each result's unit, and
    # the units it may state (``unit`` then names the family, e.g. RPS/$)
    unit_field: str | None = None
    units: tuple[str, ...] = ()


FIGURES: tuple[Figure, ...] = (
    Figure(RPS_PER_USD, "RPS/$", "higher", VALUE_COLUMN, "RPS/$",
           "requests per dollar: measured live or served (req/$), or a replay table's RPS/$ normalised to its "
           "best (norm: 0-1, no unit); each result states which in rps_per_usd_unit", 1,
           unit_field="rps_per_usd_unit", units=tuple(UNIT_TEXT)),
    Figure("rps", "requests/s", "higher", "rps", "RPS", "throughput of the configuration in the closed-loop "
           "stress test", 1),
    Figure("p50_ms", "ms", "lower", "p50_ms", "p50", "median request latency", -1),
    Figure("p99_ms", "ms", "lower", "p99_ms", "p99", "99th-percentile request latency", -1),
    Figure("stability_cv", "", "lower", "cv", "spread", "coefficient of variation of RPS over the "
           "measurement's time slices (the runner's noise)"),
    Figure("energy_j_per_request", "J/request", "lower", "energy_j_per_request", "energy per request",
           "joules per request over the measurement (NVML), where measured", -1),
    Figure("mean_power_w", "W", None, "mean_power_w", "mean power",
           "the device's mean power during the measurement (NVML), where measured"),
    Figure("usd_per_hour", "$/hour", "lower", "usd_per_hour", "$/hour",
           "the configuration's price when the table was measured (a trial's price comes from the catalogue)",
           on_trial=False),
)

BY_NAME: dict[str, Figure] = {f.name: f for f in FIGURES}
BY_COLUMN: dict[str, Figure] = {f.column: f for f in FIGURES if f.column is not None}
TRIAL_FIGURES: tuple[str, ...] = tuple(f.name for f in FIGURES if f.on_trial)
UNIT_FIELDS: tuple[str, ...] = tuple(f.unit_field for f in FIGURES if f.unit_field)
# a table row's keys: the figure's column, except the objective column, read as "value"
OPTIONAL_COLUMNS: tuple[str, ...] = tuple(c for c in BY_COLUMN if c != VALUE_COLUMN)


def figure(name: str) -> Figure:
    """The registered figure ``name`` (KeyError names the known ones)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown measured figure {name!r} (known: {', '.join(BY_NAME)})") from None


def row_key(column: str) -> str:
    """The key a table row keeps a column's figure under (the objective column: ``value``; the
    others: their column name, as the table has it)."""
    return "value" if column == VALUE_COLUMN else column


def trial_figures(row: dict, **fixed: object) -> dict[str, object]:
    """A table row as TrialResult figures (``cv`` -> ``stability_cv``, ...; a table's RPS/$ is
    normalised): what a replayed trial or a benchmark reads of a row."""
    out: dict[str, object] = {f.name: row.get(row_key(f.column)) for f in FIGURES if f.on_trial and f.column}
    out["rps_per_usd_unit"] = NORMALISED
    out.update(fixed)
    return out


def unit_text(unit: str | None) -> tuple[str, str]:
    """RPS/$'s unit for people: (short, in words); an unknown or missing unit: requests per $."""
    return UNIT_TEXT.get(unit or REQ_PER_USD, UNIT_TEXT[REQ_PER_USD])


def stated_unit(backend_kind: str | None) -> RpsPerUsdUnit:
    """The unit of RPS/$ a backend of this kind states (replay: normalised; live, served:
    requests per $). Only for data that does not state it: results of v1 events and of search
    states stored before units were stated (``schemas/upcast.py``, the searcher's state), and a
    search with no result yet. Everything else reads a result's ``rps_per_usd_unit``."""
    return NORMALISED if backend_kind == "replay" else REQ_PER_USD
