"""Calibration on the user's runners: the paper's offline phase for hardware no public table
measured (``falcon calibrate``; the bus side is :mod:`tools.cli.calibrate_cmds`).

A calibration measures single-operator models (:mod:`tools.opmodels`: the operator kinds of the
zoo's and the submitted models' KOPs, a few representative shapes each) over a space-filling
design of the space (:mod:`services.searcher.strategies.design`), each model as one ordinary
live search of strategy ``design`` - so every measurement is a trial routed to the runners of
its hardware class, audited and priced like any other. Once every search is done, the
measurements become offline tables in the falcon-data layout:

- ``models/sources/reg-cal-<op>-<shape>-<space>.csv``: each single-operator model's measured
  design points (knob columns, ``norm.(rps/budget)`` = RPS/$ over the model's best, raw rps,
  p50_ms, p99_ms, usd_per_hour, cv): a (partial) source table over the space;
- ``kop-curves/<op>/NN-<A>-<B>-cal<space>-<shape>.csv``: the operator's KOP resource curves
  over every pair of knobs: the operator's landscape (its shapes' tables, each completed over the
  space by the knowledge's own Gaussian-kernel fill and scaled to its best, averaged) averaged
  over the other knobs, min-max normalised, shape-classified like the paper's curves. Knobs are
  named as falcon-data names them where it has them (CPUcores, GPU, power, GPUmem), else by the
  space's own names; values are the space's values (numbers or names).

This module is pure (no bus): the plan, its cost, and the tables from the trial results."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from schemas.events import TrialResult
from services.domain.falcon_data import VALUE_COLUMN, model_table_from_rows
from services.domain.serving import LIVE_MODES
from tools.app.submit import DEFAULT_SLO_P99_MS, SERVED_TRIAL_S
from services.domain.pricing import PriceCatalogue
from services.domain.space import Config, Space
from services.platform.topics import runner_class
from services.knowledge.curves import CURVE_KNOBS, classify_shape
from services.knowledge.dataset import OfflineDataset
from services.knowledge.hardware import HardwareCatalogue, check_space
from services.knowledge.knowledge import source_values
from services.searcher.strategies.design import design_configs

STRATEGY = "design"          # the calibration searches' strategy (the treebuilder does not learn them as searches)
DEFAULT_POINTS = 16
DEFAULT_MEASURE_S = 2.0
OVERHEAD_S = 4.0             # a live trial's process start and warm-up, on top of its measurement (as submit)
# the KOPs of the zoo's profiled models (bench/results/profiles.txt: resnet8/18 conv2d; bert-tiny/base,
# gru dense; mobilenet-v2-tiny conv2d, add, clip)
ZOO_KOPS = ("conv2d", "dense", "add", "clip")
FILE_KNOBS = {v: k for k, v in CURVE_KNOBS.items()}     # space knob -> falcon-data curve-file name


class CalibrationError(ValueError):
    """A calibration that cannot run as asked (one line; nothing has run)."""


@dataclass(frozen=True)
class Item:
    """One single-operator model of the calibration and the search that measures it."""
    op: str
    shape: str
    model: str            # e.g. op-conv2d-c16-32px
    search_id: str        # its first attempt's search id (a retry appends -a2, -a3, ...)
    onnx: str = ""        # the exported model file


@dataclass(frozen=True)
class Plan:
    calibration_id: str
    space: Space
    prices: PriceCatalogue
    items: tuple[Item, ...]
    design: tuple[Config, ...]
    measure_s: float
    seed: int = 0
    backend: str = "live"
    notes: tuple[str, ...] = ()
    mode: str = "served"          # served: each point is a Triton deployment stressed up to its peak
    slo_p99_ms: float = DEFAULT_SLO_P99_MS

    @property
    def trial_seconds(self) -> float:
        return SERVED_TRIAL_S if self.mode == "served" else self.measure_s + OVERHEAD_S

    @property
    def trials(self) -> int:
        return len(self.items) * len(self.design)

    def hourly(self, config: Mapping[str, Any]) -> float:
        return self.prices.hourly(config)

    @property
    def cost_per_model_usd(self) -> float:
        return sum(self.hourly(c) for c in self.design) * self.trial_seconds / 3600.0

    @property
    def cost_usd(self) -> float:
        """The estimate: every design point of every model for trial_seconds at its price."""
        return self.cost_per_model_usd * len(self.items)

    @property
    def runner_classes(self) -> dict[str, int]:
        """Trial class -> design points routed to it (per model)."""
        out: dict[str, int] = {}
        for c in self.design:
            cls = runner_class(self.backend, c, self.prices.gpu_knob)
            out[cls] = out.get(cls, 0) + 1
        return out

    def points_within(self, budget_usd: float) -> int:
        """The largest design size whose estimate fits ``budget_usd`` (0: none does)."""
        n = 0
        for k in range(1, len(self.design) + 1):
            per = sum(self.hourly(c) for c in self.design[:k]) * self.trial_seconds / 3600.0
            if per * len(self.items) > budget_usd:
                break
            n = k
        return n

    def to_dict(self) -> dict[str, Any]:
        return {"calibration_id": self.calibration_id, "space": self.space.to_dict(),
                "space_fingerprint": self.space.fingerprint(), "backend": self.backend, "mode": self.mode,
                "slo_p99_ms": self.slo_p99_ms if self.mode == "served" else None, "measure_s": self.measure_s, "trial_seconds": self.trial_seconds, "seed": self.seed,
                "models": [{"op": i.op, "shape": i.shape, "model": i.model, "search_id": i.search_id}
                           for i in self.items],
                "design": [dict(c) for c in self.design],
                "usd_per_hour": [self.hourly(c) for c in self.design],
                "runner_classes": self.runner_classes, "trials": self.trials,
                "estimated_cost_usd": round(self.cost_usd, 6),
                "estimated_wall_s": round(self.trials * self.trial_seconds, 1), "notes": list(self.notes)}

    def text(self) -> str:
        """The plan for people: what runs where, and what it costs."""
        from tools import units
        ops: dict[str, list[str]] = {}
        for i in self.items:
            ops.setdefault(i.op, []).append(i.shape)
        lines = [f"calibration {self.calibration_id} of space {self.space.fingerprint()} "
                 f"({', '.join(self.space.names)}; {self.space.size:,} configurations)",
                 f"  {len(self.items)} single-operator models: " + "; ".join(
                     f"{op} ({', '.join(shapes)})" for op, shapes in ops.items()),
                 f"  x {len(self.design)} design points (scrambled Sobol, seed {self.seed}) = {self.trials} "
                 + (f"served trials (Triton + perf_analyzer, the peak load within p99 {self.slo_p99_ms:g} ms; "
                    f"~{units.seconds(self.trial_seconds)} each)" if self.mode == "served" else
                    f"{self.backend} trials of {units.seconds(self.measure_s)} closed-loop measurement "
                    f"(~{units.seconds(self.trial_seconds)} each)"),
                 "  runners: " + ", ".join(f"{cls} ({n} point{'' if n == 1 else 's'} per model)"
                                           for cls, n in self.runner_classes.items()),
                 "  design point                                      $/hour"]
        for c in self.design:
            lines.append(f"    {units.config(c):46} {units.usd_per_hour(self.hourly(c))}")
        lines.append(f"  estimated cost {units.usd(self.cost_usd)} ({units.usd(self.cost_per_model_usd)} per model), "
                     f"about {units.seconds(self.trials * self.trial_seconds)} of trials on one runner")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def calibration_id(space: Space, prices: PriceCatalogue, backend: str, measure_s: float, points: int,
                   seed: int, mode: str = "closed-loop", slo_p99_ms: float = DEFAULT_SLO_P99_MS) -> str:
    """The same for the same calibration asked again (so its searches are found and resumed);
    the operators are not part of it, so asking for one more operator reuses the others. A served
    calibration differs by its mode and SLO (not its measure_s, which served trials do not use);
    a closed-loop one keeps the id it had before served trials existed."""
    what: dict[str, Any] = {"space": space.to_dict(), "prices": prices.to_dict(), "backend": backend,
                            "points": points, "seed": seed, "strategy": STRATEGY}
    what.update({"mode": mode, "slo_p99_ms": slo_p99_ms} if mode == "served" else {"measure_s": measure_s})
    blob = json.dumps(what, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def search_id(cal_id: str, op: str, shape: str, attempt: int = 1) -> str:
    base = f"cal-{cal_id}-{op}-{shape}"
    return base if attempt <= 1 else f"{base}-a{attempt}"


def check_hardware(space: Space, prices: PriceCatalogue, hardware: HardwareCatalogue,
                   design: Sequence[Config] = ()) -> None:
    """A calibration measures hardware the catalogue describes: a device it lacks is refused, and
    so is a design point reserving more GPU memory than its device has (a space whose rules
    exclude such combinations never has one)."""
    from types import SimpleNamespace
    gpu, mem = prices.gpu_knob, prices.gpu_mem_knob
    devices_only = SimpleNamespace(names=tuple(n for n in space.names if n == gpu), knob=space.knob)
    problems = check_space(devices_only, hardware, gpu, mem)
    if not problems:
        for c in design:
            dev = hardware.resolve(c.get(gpu))
            if dev.is_gpu and mem in c and not isinstance(c[mem], str) and float(c[mem]) > dev.mem_gb:
                problems.append(f"{mem}={c[mem]} GB is more than {dev.name}'s {dev.mem_gb:g} GB (design point {c}; "
                                f"a rule in the space can exclude such combinations)")
    if problems:
        raise CalibrationError("the space names hardware the hardware catalogue cannot describe: "
                               + "; ".join(dict.fromkeys(problems)) + " (add the device to the catalogue, "
                               "deploy/config/hardware.yaml or --hardware FILE)")


def choose_operators(asked: Sequence[str] | None, seen_kops: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(operators to calibrate, notes). ``asked``: --operators (each must be buildable:
    CalibrationError otherwise); default: the zoo's KOPs and the KOPs of the models submitted to
    the stack (``seen_kops``) that a single-operator model can be built for."""
    from services.domain.operators import normalise_op
    from tools.opmodels import OperatorModelError, operator_model
    if asked:
        ops = []
        for op in asked:
            try:
                kind = operator_model(op).op
            except OperatorModelError as exc:
                raise CalibrationError(str(exc)) from None
            if kind not in ops:
                ops.append(kind)
        return ops, []
    ops, notes = list(ZOO_KOPS), []
    skipped = []
    for k in seen_kops:
        kind = normalise_op(k)
        if kind in ops:
            continue
        try:
            ops.append(operator_model(kind).op)
        except OperatorModelError:
            skipped.append(kind)
    if skipped:
        notes.append(f"KOPs of submitted models with no single-operator model, not calibrated: "
                     f"{', '.join(sorted(set(skipped)))}")
    return ops, notes


def make_plan(space: Space, prices: PriceCatalogue, hardware: HardwareCatalogue, operators: Sequence[str],
              shapes: int | Sequence[str], points: int, measure_s: float, seed: int = 0,
              backend: str = "live", models_dir: Path | None = None, notes: Sequence[str] = (),
              mode: str = "served", slo_p99_ms: float = DEFAULT_SLO_P99_MS) -> Plan:
    """Everything checked before anything runs: the backend, the hardware, the prices of every
    design point, the operators and their shapes (each model is exported to ``models_dir`` when
    given: an export that fails is a CalibrationError too)."""
    from tools.opmodels import OperatorModelError, export_onnx, model_name, operator_model
    if backend != "live":
        raise CalibrationError(f"a calibration measures on live runners: --backend live, not {backend!r} "
                               "(replay trials only repeat a table someone measured)")
    if mode not in LIVE_MODES:
        raise CalibrationError(f"--live-mode {mode!r}: {' or '.join(LIVE_MODES)}")
    if not math.isfinite(slo_p99_ms) or slo_p99_ms <= 0:
        raise CalibrationError(f"--slo-p99-ms must be a positive number of milliseconds, not {slo_p99_ms}")
    if points < 1:
        raise CalibrationError(f"--points must be at least 1, not {points}")
    if not math.isfinite(measure_s) or measure_s <= 0:
        raise CalibrationError(f"--measure-s must be a positive number of seconds, not {measure_s}")
    design = design_configs(space, points, seed)
    check_hardware(space, prices, hardware, design)
    notes = list(notes)
    if len(design) < points:
        notes.append(f"the space allows {len(design)} configurations: the design measures all of them")
    for c in design:
        try:
            prices.hourly(c)
        except ValueError as exc:
            raise CalibrationError(f"design point {c} has no price: {exc}") from None
    cal_id = calibration_id(space, prices, backend, measure_s, len(design), seed, mode, slo_p99_ms)
    items = []
    for op in operators:
        try:
            m = operator_model(op)
            chosen = [s.name for s in m.shapes[:shapes]] if isinstance(shapes, int) else \
                [m.shape(s).name for s in shapes if s in {x.name for x in m.shapes}]
        except OperatorModelError as exc:
            raise CalibrationError(str(exc)) from None
        if not chosen:
            raise CalibrationError(f"operator {m.op}: none of the shapes {list(shapes)} (it has "
                                   f"{', '.join(s.name for s in m.shapes)})")
        for shape in chosen:
            onnx = ""
            if models_dir is not None:
                try:
                    onnx = str(export_onnx(m.op, shape, models_dir / f"{model_name(m.op, shape)}.onnx").resolve())
                except OperatorModelError as exc:
                    raise CalibrationError(str(exc)) from None
            items.append(Item(m.op, shape, model_name(m.op, shape), search_id(cal_id, m.op, shape), onnx))
    if not items:
        raise CalibrationError("no operator to calibrate (--operators)")
    return Plan(cal_id, space, prices, tuple(items), tuple(design), measure_s, seed, backend, tuple(notes), mode,
                slo_p99_ms)


# ---- tables from the measurements -----------------------------------------------------------------
def table_name(item: Item, space: Space) -> str:
    return f"cal-{item.op}-{item.shape}-{space.fingerprint()[:8]}"


def source_rows(space: Space, trials: Sequence[TrialResult],
                prices: PriceCatalogue) -> tuple[list[str], list[list[Any]]]:
    """A single-operator model's measured design points as a falcon-data source table (columns,
    rows); failed trials are left out."""
    ok = [t for t in trials if t.ok and t.rps_per_usd is not None and t.rps_per_usd > 0]
    if not ok:
        return [], []
    best = max(float(t.rps_per_usd or 0.0) for t in ok)
    columns = [*space.names, VALUE_COLUMN, "rps", "p50_ms", "p99_ms", "usd_per_hour", "cv"]
    rows = []
    for t in sorted(ok, key=lambda t: space.index(space.canonical(t.config))):
        c = space.canonical(t.config)

        def fmt(x: float | None, digits: int) -> Any:
            return "" if x is None else round(float(x), digits)
        rows.append([*(c[k] for k in space.names), round(float(t.rps_per_usd or 0.0) / best, 6), fmt(t.rps, 3),
                     fmt(t.p50_ms, 4), fmt(t.p99_ms, 4), round(prices.hourly(c), 6), fmt(t.stability_cv, 4)])
    return columns, rows


def operator_landscape(space: Space, tables: Sequence[tuple[list[str], list[list[Any]]]]) -> np.ndarray:
    """The operator's value per configuration of the space: each shape's table completed over the
    space (measured points kept, the rest filled by the knowledge's Gaussian-kernel regression;
    a table too sparse to fill keeps its gaps) and scaled to its best, then averaged (NaN where
    no shape says anything)."""
    per = []
    for i, (columns, rows) in enumerate(tables):
        if not rows:
            continue
        t = model_table_from_rows(f"t{i}", columns, rows)
        v = source_values(t, space)
        if v is None:            # too few points to fill: the measured ones only
            v = np.array([np.nan if (r := t.lookup(c)) is None else float(r["value"]) for c in space.configs()])
        top = np.nanmax(v) if np.isfinite(v).any() else 0.0
        per.append(v / top if top > 0 else v)
    if not per:
        return np.full(space.size, np.nan)
    stack = np.vstack(per)
    known = np.isfinite(stack)
    return np.where(known.any(0), np.nansum(np.where(known, stack, 0.0), 0) / np.maximum(known.sum(0), 1), np.nan)


def curve_pairs(space: Space) -> list[tuple[str, str]]:
    """Every pair of knobs, an ordinal knob first where there is one (curve shapes are read along
    the first knob); knobs whose names a curve file cannot carry ('-') are left out."""
    names = [k.name for k in space.knobs if "-" not in FILE_KNOBS.get(k.name, k.name)]
    pairs = []
    for a, b in itertools.combinations(names, 2):
        if space.knob(a).kind != "ordinal" and space.knob(b).kind == "ordinal":
            a, b = b, a
        pairs.append((a, b))
    return pairs


def kop_curves(op: str, space: Space, landscape: np.ndarray, label: str) -> dict[str, list[list[Any]]]:
    """The operator's curves over every knob pair: file stem (``NN-<A>-<B>-<label>-<shape>``) -> rows
    (A value, B value, min-max normalised mean of the landscape over the other knobs)."""
    allowed = space.allowed_indices() if space.rules else np.arange(space.size)
    rows_idx = space.rows(allowed)
    values = landscape[allowed]
    out: dict[str, list[list[Any]]] = {}
    for n, (a, b) in enumerate(curve_pairs(space), start=1):
        ia, ib = space.names.index(a), space.names.index(b)
        cells: dict[tuple[int, int], list[float]] = {}
        for r, v in zip(rows_idx, values):
            if np.isfinite(v):
                cells.setdefault((int(r[ia]), int(r[ib])), []).append(float(v))
        if len(cells) < 2:
            continue
        means = {k: float(np.mean(v)) for k, v in cells.items()}
        lo, hi = min(means.values()), max(means.values())
        ka, kb = space.knob(a), space.knob(b)
        rows = [[ka.values[x], kb.values[y], round((m - lo) / (hi - lo), 6) if hi > lo else 0.0]
                for (x, y), m in sorted(means.items())]
        xs = np.array([ka.index_of(r[0]) for r in rows], dtype=float)
        shape = classify_shape(xs, np.array([r[2] for r in rows], dtype=float))
        out[f"{n:02d}-{FILE_KNOBS.get(a, a)}-{FILE_KNOBS.get(b, b)}-{label}-{shape}"] = rows
    return out


@dataclass
class Written:
    out: Path
    sources: list[str] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)
    points: dict[str, int] = field(default_factory=dict)     # table -> measured points
    failed: dict[str, int] = field(default_factory=dict)     # table -> failed trials


def check_out(out: Path) -> None:
    """The tables' folder is replaced when a calibration publishes: refuse one that holds
    anything but an earlier calibration's tables (before anything runs)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "calibration.json").exists())):
        raise CalibrationError(f"--out {out} exists and is not an earlier calibration's folder: choose a new or "
                               "empty folder (it is replaced when the tables are published)")


def write_tables(plan: Plan, results: Mapping[str, Sequence[TrialResult]], out: Path,
                 runners: Sequence[str] = ()) -> Written:
    """The calibration's offline tables in the falcon-data layout under ``out`` (written to a
    temporary folder, checked by parsing them as the treebuilder will, then moved into place):
    ``results``: model name -> its search's trials. CalibrationError if a model has no
    successful trial (nothing is written then)."""
    check_out(out)
    space = plan.space
    label = f"cal{space.fingerprint()[:8]}"
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        _rmtree(tmp)
    w = Written(out)
    by_op: dict[str, list[tuple[list[str], list[list[Any]]]]] = {}
    empty = []
    for item in plan.items:
        trials = list(results.get(item.model, ()))
        columns, rows = source_rows(space, trials, plan.prices)
        if not rows:
            empty.append(item.model)
            continue
        name = table_name(item, space)
        _write_csv(tmp / "models" / "sources" / f"reg-{name}.csv", rows, columns)
        w.sources.append(name)
        w.points[name] = len(rows)
        w.failed[name] = sum(1 for t in trials if not t.ok)
        by_op.setdefault(item.op, []).append((columns, rows))
    if empty:
        raise CalibrationError(f"no trial of {', '.join(empty)} succeeded: nothing is published")
    for op, tables in by_op.items():
        for stem, rows in kop_curves(op, space, operator_landscape(space, tables), label).items():
            _write_csv(tmp / "kop-curves" / op / f"{stem}.csv", rows)
            w.curves.append(f"{op}/{stem}")
    OfflineDataset.from_folder(tmp)          # parse as the treebuilder will: DataError before anything is published
    (tmp / "calibration.json").write_text(json.dumps(
        {**plan.to_dict(), "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sources": w.sources,
         "kop_curves": w.curves, "measured_points": w.points, "failed_trials": w.failed,
         "machine": machine(), "runners": list(runners)}, indent=2, default=str))
    (tmp / "NOTICE.md").write_text(notice(plan, w, runners))
    if out.exists():
        _rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    return w


def machine() -> dict[str, Any]:
    import os
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu or platform.processor(), "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version()}


def notice(plan: Plan, w: Written, runners: Sequence[str] = ()) -> str:
    m = machine()
    return (f"# Calibrated offline tables ({time.strftime('%Y-%m-%d', time.gmtime())})\n\n"
            f"Measured by `falcon calibrate` (calibration {plan.calibration_id}) on the runners of this stack"
            f"{' (' + ', '.join(runners) + ')' if runners else ''}, host {m['host']}: {m['cpu']}, "
            f"{m['cores']} cores. Space {plan.space.fingerprint()} ({', '.join(plan.space.names)}); "
            f"{len(plan.items)} single-operator models (tools/opmodels.py) x {len(plan.design)} design points "
            f"(scrambled Sobol, seed {plan.seed}), "
            + (f"each a served trial (the model deployed in Triton, ONNX Runtime, stressed by perf_analyzer up to "
               f"the peak RPS within p99 {plan.slo_p99_ms:g} ms: docs/served-trials.md)" if plan.mode == "served" else
               f"{plan.measure_s:g} s of closed-loop stress test per trial (ONNX Runtime, "
               f"services/trial_runner/stress.py)")
            + f", every trial an ordinary search trial (strategy `design`; "
            f"`falcon audit <search id>` shows them). Prices: {plan.prices.usd_per_vcpu_hour:g} $/vCPU-hour.\n\n"
            "- `models/sources/reg-cal-<op>-<shape>-<space>.csv`: each model's measured points "
            "(norm.(rps/budget) = RPS/$ over the model's best; rps, p50_ms, p99_ms, usd_per_hour, cv raw).\n"
            "- `kop-curves/<op>/NN-<A>-<B>-cal<space>-<shape>.csv`: the operator's resource curves over each "
            "pair of knobs, derived from its models' tables (tools/calibration.py).\n"
            "- `calibration.json`: the plan, the design, the search ids and the machine.\n")


def _write_csv(path: Path, rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)


def _rmtree(p: Path) -> None:
    import shutil
    shutil.rmtree(p)
