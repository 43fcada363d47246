"""Everything about a search request that can be checked before the first trial is paid for.

``falcon submit`` runs these checks and exits 2 before publishing anything; the searcher runs
them again for events from other clients and fails such a search at once (``search-failed``,
no trial). Pure: the facts that need I/O (the replay table, the runners' adverts) are read by the
caller and passed in; a fact that could not be read is simply not checked.

Each problem is one sentence naming what is wrong and what would be right."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from services.domain.falcon_data import ModelTable
from services.domain.objectives import ENERGY, FIGURES, RPS_PER_USD
from services.platform.runners import RunnerAdvert
from services.domain.spec import SearchSpec
from services.platform.topics import is_no_gpu, runner_class

# the figure each constraint needs measured, and the replay-table column that holds it
CONSTRAINT_FIGURES = {"slo_p99_ms": ("p99_ms", "--slo-p99-ms", "p99 latency"),
                      "min_rps": ("rps", "--min-rps", "RPS"),
                      "max_usd_per_million": ("rps", "--max-usd-per-million", "RPS")}
ENERGY_FIGURE = FIGURES[ENERGY][0]


@dataclass(frozen=True)
class Facts:
    table: ModelTable | None = None                       # the replay table, when it could be read
    runners: Sequence[RunnerAdvert] | None = None         # None: unknown; empty: no runner advertises


def spec_problems(spec: SearchSpec, facts: Facts | None = None) -> list[str]:
    facts = facts or Facts()
    problems = _numbers(spec) + _prices(spec) + energy_problems(spec)
    kind = str(spec.backend.get("kind"))
    if kind == "replay" and facts.table is not None:
        problems += table_problems(spec, facts.table)
    if facts.runners:
        problems += runner_problems(spec, facts.runners)
    return problems


def _positive(x: Any) -> bool:
    try:
        return math.isfinite(float(x)) and float(x) > 0
    except (TypeError, ValueError):
        return False


def _numbers(spec: SearchSpec) -> list[str]:
    out = []
    if spec.stop.max_trials < 1:
        out.append(f"max_trials must be at least 1, not {spec.stop.max_trials}")
    if spec.parallel is not None and not 1 <= spec.parallel <= spec.stop.max_trials:
        out.append(f"parallel must be between 1 and the trial budget ({spec.stop.max_trials} trials), "
                   f"not {spec.parallel}")
    if spec.stop.budget_usd is not None and not _positive(spec.stop.budget_usd):
        out.append(f"the budget must be a positive number of dollars, not {spec.stop.budget_usd}")
    c = spec.constraints
    if c.slo_p99_ms is not None and not _positive(c.slo_p99_ms):
        out.append(f"the p99 SLO must be a positive number of milliseconds, not {c.slo_p99_ms}")
    if c.min_rps is not None and not _positive(c.min_rps):
        out.append(f"the minimum RPS must be positive, not {c.min_rps}")
    if c.max_usd_per_million is not None and not _positive(c.max_usd_per_million):
        out.append(f"the cost ceiling must be a positive number of $ per million requests, not {c.max_usd_per_million}")
    b = spec.backend
    if "measure_s" in b and not _positive(b["measure_s"]):
        out.append(f"measure_s must be a positive number of seconds, not {b['measure_s']}")
    if "trial_seconds" in b and not _positive(b["trial_seconds"]):
        out.append(f"trial_seconds must be a positive number of seconds, not {b['trial_seconds']}")
    if b.get("kind") == "replay" and not b.get("table"):
        out.append("a replay search needs backend.table (the measurement table's path or URI)")
    return out


def _prices(spec: SearchSpec) -> list[str]:
    gpu_knob = spec.prices.gpu_knob
    if gpu_knob not in spec.space.names:
        return []
    unpriced = [v for v in spec.space.knob(gpu_knob).values
                if str(v) not in spec.prices.instances and str(v) != spec.prices.no_gpu_value]
    if not unpriced:
        return []
    return [f"no price for {gpu_knob} value(s) {[str(v) for v in unpriced]} "
            f"(the price catalogue has {sorted(spec.prices.instances)})"]


def _listed(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def table_problems(spec: SearchSpec, table: ModelTable) -> list[str]:
    """The space against the replay table: every knob a column, every value measured; and every
    constraint's figure measured by the table."""
    out = []
    space = spec.space
    unknown = [k for k in space.names if k not in table.knobs]
    if unknown:
        out.append(f"knob(s) {_listed(unknown)} of the space are not in replay table {table.name} "
                   f"(its knobs: {_listed(table.knobs)})")
    missing = [k for k in table.knobs if k not in space.names]
    if missing:
        out.append(f"the space lacks knob(s) {_listed(missing)} of replay table {table.name}: every "
                   f"configuration needs a value for each of {_listed(table.knobs)}")
    for k in space.knobs:
        if k.name not in table.knobs:
            continue
        have = table.space.knob(k.name).values
        absent = [v for v in k.values if not any(_same(v, h) for h in have)]
        if absent:
            out.append(f"{k.name} value(s) {_listed(absent)} are not in replay table {table.name} "
                       f"(it has {_listed(have)})")
    for name, (column, flag, what) in CONSTRAINT_FIGURES.items():
        if getattr(spec.constraints, name) is None:
            continue
        if not any(row.get(column) is not None for row in table.rows.values()):
            out.append(f"{flag}: replay table {table.name} has no {column} column, so no trial could be shown "
                       f"to meet it (the table does not measure {what})")
    obj = spec.objective
    if obj.name != RPS_PER_USD and not any(row.get(obj.figure) is not None for row in table.rows.values()):
        out.append(f"--objective {obj.name}: replay table {table.name} has no {obj.figure} column, so no trial "
                   f"could be ranked by it (the table does not measure {FIGURES[obj.name][1]})")
    return out


def _accepts(allowed: Any, value: Any) -> bool | None:
    """Whether an advertised capability admits ``value`` (None: the advert does not say)."""
    if isinstance(allowed, list):
        return any(_same(value, a) for a in allowed)
    if isinstance(allowed, str) and "positive integer" in allowed:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() \
            and value > 0
    return None


def runner_problems(spec: SearchSpec, runners: Sequence[RunnerAdvert]) -> list[str]:
    """The space and constraints against what the advertising runners can apply and measure
    (for backends other than replay: a replay runner answers any configuration of its table)."""
    kind = str(spec.backend.get("kind"))
    if kind == "replay":
        return []
    serving = [r for r in runners if kind in r.capabilities]
    if not serving:
        return []          # nobody advertises this backend now: said by the CLI, not a refusal
    out = []
    gpu_knob = spec.prices.gpu_knob
    if gpu_knob in spec.space.names:
        classes = {c for r in serving for c in r.classes}
        for v in spec.space.knob(gpu_knob).values:
            cls = runner_class(kind, {gpu_knob: v}, gpu_knob)
            if cls not in classes:
                what = "CPU-only" if is_no_gpu(v) else f"GPU {v}"
                out.append(f"{gpu_knob}={v}: no runner serves trial class {cls} ({what}); runners serve "
                           f"{_listed(sorted(classes))}")
    applied: dict[str, list[Any]] = {}
    mode = spec.backend.get("mode")
    for r in serving:
        caps = r.capabilities[kind]
        if mode and isinstance(caps.get("modes"), Mapping) and mode in caps["modes"]:
            caps = caps["modes"][mode]          # e.g. live closed-loop trials apply other values than served
        for knob, allowed in caps.items():
            if knob != "modes":
                applied.setdefault(knob, []).append(allowed)
    roles = spec.space.roles
    for k in spec.space.knobs:
        if k.name == gpu_knob:
            continue
        advertised = roles.default_name(k.name)      # runners advertise the knobs they apply by role
        if advertised not in applied:
            out.append(f"knob {k.name} cannot be applied by any {kind} runner (they apply "
                       f"{_listed(sorted(roles.space_name(a) for a in applied))})")
            continue
        verdicts = {v: [_accepts(a, v) for a in applied[advertised]] for v in k.values}
        refused = [v for v, vs in verdicts.items() if vs and all(x is False for x in vs)]
        if refused:
            shown = "; ".join(dict.fromkeys(str(a) if not isinstance(a, list) else _listed(a)
                                            for a in applied[advertised]))
            out.append(f"{k.name} value(s) {_listed(refused)} cannot be applied by any {kind} runner "
                       f"(allowed: {shown})")
    measured = {f for r in serving for f in r.measures.get(kind, ())}
    if measured:
        for name, (column, flag, what) in CONSTRAINT_FIGURES.items():
            if getattr(spec.constraints, name) is not None and column not in measured:
                out.append(f"{flag}: no {kind} runner measures {what} (they measure {_listed(sorted(measured))})")
        obj = spec.objective
        if obj.name not in (RPS_PER_USD, ENERGY) and obj.figure not in measured:
            out.append(f"--objective {obj.name}: no {kind} runner measures {FIGURES[obj.name][1]} (they measure "
                       f"{_listed(sorted(measured))})")
    if spec.objective.name == ENERGY:
        for cls in sorted(trial_classes(spec)):
            if cls.endswith("-cpu"):
                continue        # said by energy_problems, with or without adverts
            if not any(cls in r.classes and ENERGY_FIGURE in r.measures.get(kind, ()) for r in serving):
                out.append(f"--objective {ENERGY}: no runner of trial class {cls} measures energy (a GPU runner "
                           f"measures it with NVML: install the gpu extra, nvidia-ml-py)")
    return out


def trial_classes(spec: SearchSpec) -> set[str]:
    """The runner classes the space's configurations go to (live-cpu, live-<gpu>; replay)."""
    kind, gpu_knob = str(spec.backend.get("kind")), spec.prices.gpu_knob
    if gpu_knob not in spec.space.names:
        return {runner_class(kind, {}, gpu_knob)}
    return {runner_class(kind, {gpu_knob: v}, gpu_knob) for v in spec.space.knob(gpu_knob).values}


def energy_problems(spec: SearchSpec) -> list[str]:
    """Energy per request is measured by NVML on GPU runners only: a space with CPU-only
    configurations cannot be searched for it (nothing reads a CPU's energy; never invented)."""
    if spec.objective.name != ENERGY or str(spec.backend.get("kind")) == "replay":
        return []
    cpu = sorted(c for c in trial_classes(spec) if c.endswith("-cpu"))
    if not cpu:
        return []
    return [f"--objective {ENERGY}: trial class {cpu[0]} cannot measure energy (CPU-only configurations: runners "
            f"read a GPU's energy counter through NVML, and no CPU power meter; choose GPU types only, or another "
            f"objective)"]


__all__ = ["Facts", "runner_problems", "spec_problems", "table_problems"]
