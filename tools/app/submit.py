"""Submitting a search: the model-submitted payload built and checked before anything is paid for
(``falcon submit``, the dashboard's form, ``falcon demo`` and ``falcon calibrate`` all build it
here), published, and its result awaited."""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

from redis.exceptions import RedisError

from schemas import Event
from schemas.events import ModelSubmitted, SearchCompleted, SearchFailed
from services.platform.bus import KafkaPublisher, LoggedEvent, read_events
from services.platform.connections import redis_client
from services.domain.falcon_data import DataError, read_operator_profile
from services.domain.objectives import Objective
from services.searcher.preflight import Facts
from services.domain.pricing import PriceCatalogue
from services.platform.runners import RunnerAdvert, read_adverts
from services.platform.settings import Settings
from services.domain.serving import LIVE_MODES
from services.domain.space import Space
from services.platform.tables import read_model_table
from services.domain.spec import DEFAULT_KOP_THRESHOLD, DEFAULT_TRIAL_SECONDS, Constraints, SearchSpec, StopRules
from services.platform.uris import is_remote, redact, remote_size
from services.searcher.search import resolve_parallel, validate_spec
from tools import units
from tools.app.context import PRODUCER, REPO, home, slug

LIVE_SPACE = REPO / "deploy" / "config" / "live-cpu-space.yaml"      # closed-loop live trials
SERVED_SPACE = REPO / "deploy" / "config" / "live-served-space.yaml"  # served live trials (the default)
LIVE_OVERHEAD_S = 4.0     # a live trial's process start and warm-up, on top of its measurement
SERVED_TRIAL_S = 45.0     # a served trial: server start, warm-up, load sweep (docs/served-trials.md)
DEFAULT_SLO_P99_MS = 100.0   # served trials judge the peak load against this p99 when no --slo-p99-ms is given


@dataclass(frozen=True)
class SubmitOptions:
    """What a submission says (``falcon submit``'s options; the demo fills it directly)."""
    model: str
    profile: str | None = None
    model_file: str | None = None
    zoo: str | None = None
    format: str | None = None
    backend: str | None = None
    replay_table: str | None = None
    measure_s: float = 3.0
    space: str | None = None
    prices: str | None = None
    max_trials: int = 15
    target_value: float | None = None
    budget_usd: float | None = None
    slo_p99_ms: float | None = None
    min_rps: float | None = None
    max_usd_per_million: float | None = None
    objective: str = "rps-per-usd"
    load: float | None = None
    strategy: str = "falcon"
    seed: int = 0
    kop_threshold: float = DEFAULT_KOP_THRESHOLD
    trial_seconds: float = DEFAULT_TRIAL_SECONDS
    search_id: str | None = None
    parallel: int | None = None
    cost_aware: bool = False
    live_mode: str = "served"

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "SubmitOptions":
        return cls(**{f.name: getattr(a, f.name) for f in fields(cls)})


class SubmissionError(ValueError):
    """The search could not succeed as submitted (exit 2, nothing published)."""


def _uri(path_or_uri: str) -> str:
    """A local path made absolute (the services may run elsewhere in the tree); URIs as given."""
    if is_remote(path_or_uri) or path_or_uri.startswith("file://"):
        return path_or_uri
    return str(Path(path_or_uri).resolve())


def build_submission(o: SubmitOptions, runners: Sequence[RunnerAdvert] | None = None,
                     notices: list[str] | None = None) -> tuple[str, ModelSubmitted]:
    """The model-submitted payload for a submission. Replay trials answer from a table; live
    trials run the model file (or a zoo model exported to ONNX) on a live runner.

    Everything that can be checked before the first trial is checked here, as the searcher
    checks it again (:func:`services.searcher.search.validate_spec`): the space against the
    replay table, the prices, the numbers, the constraints against what the table or the runners
    measure, and a live space against the runners' advertised capabilities (``runners``; None:
    not known). SubmissionError/DataError/SpaceError/IntakeError (exit 2) say what is wrong, in one line.

    A local ONNX model is read first (:mod:`tools.intake`): a file that is not one is refused; a
    batch dimension the model fixes is made dynamic when the graph allows it (the copy is
    submitted), else a live search's batch knob is narrowed to the size it takes. What was done is
    appended to ``notices`` for the user."""
    notices = notices if notices is not None else []
    objective = Objective(o.objective, o.load)          # ObjectiveError: before anything is exported or read
    kind = o.backend or ("replay" if o.replay_table else "live")
    model_file, fmt = o.model_file, o.format
    if o.zoo:
        from tools.zoo import export_onnx
        model_file, fmt = str(export_onnx(o.zoo, home() / "models" / f"{slug(o.zoo)}.onnx")), "onnx"
    if o.live_mode not in LIVE_MODES:
        raise SubmissionError(f"--live-mode {o.live_mode!r}: {' or '.join(LIVE_MODES)}")
    space_file = o.space or ((SERVED_SPACE if o.live_mode == "served" else LIVE_SPACE) if kind == "live" else None)
    space = Space.from_file(space_file) if space_file else None
    prices = PriceCatalogue.from_file(o.prices) if o.prices else None
    backend: dict[str, Any]
    table = None
    if kind == "replay":
        if not o.replay_table:
            raise DataError("a replay search needs --replay-table (or --backend live with a model)")
        table = read_model_table(o.replay_table, home() / "cache")       # DataError: missing, unreadable
        if not o.profile and not model_file:     # the profiler would fail the search once it is published
            raise DataError("a replay search needs the model's operators: --profile operators.csv (falcon-data "
                            "layout, e.g. ../shared/falcon-data/models/operators/gru/operators.csv) or --model-file")
        backend = {"kind": "replay", "table": _uri(o.replay_table), "trial_seconds": o.trial_seconds}
    elif kind == "live":
        if not model_file:
            raise DataError("a live search needs the model: --model-file FILE.onnx or --zoo NAME")
        if o.live_mode == "served":
            backend = {"kind": "live", "mode": "served", "slo_p99_ms": o.slo_p99_ms or DEFAULT_SLO_P99_MS,
                       "trial_seconds": SERVED_TRIAL_S}
        else:
            backend = {"kind": "live", "mode": "closed-loop", "measure_s": o.measure_s,
                       "trial_seconds": o.measure_s + LIVE_OVERHEAD_S}
    else:
        raise DataError(f"unknown trial backend {kind!r} (replay or live)")
    model_format, uri = "falcon-profile", None
    if model_file:
        suffix = Path(model_file.split("?")[0]).suffix.lstrip(".").lower()
        model_format = fmt or {"pt2": "torch-export"}.get(suffix, suffix)
        uri = _uri(model_file)
        if is_remote(uri):
            size, _ = remote_size(uri)          # UriError: missing, no access
            if size is not None and size > Settings.from_env().max_model_bytes:
                raise SubmissionError(f"model file {redact(uri)} is {size / 2**20:.1f} MiB, over the limit "
                                      "(FALCON_MAX_MODEL_BYTES)")
        elif not Path(uri.removeprefix("file://")).is_file():
            raise DataError(f"model file {model_file} does not exist")
        elif model_format == "onnx":
            uri, space = _intake(o.model, Path(uri.removeprefix("file://")), kind, space, notices)
    spec = SearchSpec(model={"name": o.model, "format": model_format, "uri": uri}, backend=backend,
                      stop=StopRules(o.max_trials, o.target_value, o.budget_usd), strategy=o.strategy,
                      seed=o.seed, kop_threshold=o.kop_threshold,
                      constraints=Constraints(o.slo_p99_ms, o.min_rps, o.max_usd_per_million), objective=objective,
                      **({"space": space} if space else {}), **({"prices": prices} if prices else {}),
                      parallel=o.parallel, cost_aware=o.cost_aware)
    if spec.parallel is None and runners is not None:       # fixed now: the runners on hand at submission
        spec = replace(spec, parallel=resolve_parallel(spec, Facts(table, runners)))
    problems = validate_spec(spec, Facts(table, runners))
    if problems:
        if o.prices is None:
            problems = _with_price_hint(spec, problems, Facts(table, runners))
        raise SubmissionError(short_refusal("the search cannot run as submitted", problems))
    if table is not None and not same_model(o.model, table.name):
        notices.append(f"warning: the replay table {Path(o.replay_table or '').name} measured {table.name}, not "
                       f"{o.model}: its trials answer with {table.name}'s figures (pass the table of the model "
                       "you submit)")
    operators = read_operator_profile(o.profile) if o.profile else None
    search_id = o.search_id or f"{slug(o.model)}-{uuid.uuid4().hex[:12]}"
    return search_id, ModelSubmitted(spec, operators)


def short_refusal(head: str, problems: Sequence[str]) -> str:
    """A refusal a person reads: the first problem, and how many more there are."""
    rest = len(problems) - 1
    return f"{head}: {problems[0]}" + (f" (and {rest} more problem{'s' if rest != 1 else ''}: fix this one first)"
                                       if rest > 0 else "")


def _with_price_hint(spec: SearchSpec, problems: list[str], facts: Facts) -> list[str]:
    """A price problem with the shipped catalogue that prices this space (--prices FILE) named."""
    if not any(p.startswith("no price for") for p in problems):
        return problems
    for f in sorted((REPO / "deploy" / "config").glob("*prices*.y*ml")):
        try:
            cat = PriceCatalogue.from_file(f)
        except ValueError:
            continue
        if not any(p.startswith("no price for") for p in validate_spec(replace(spec, prices=cat), facts)):
            shown = Path(os.path.relpath(f)) if not os.path.relpath(f).startswith("..") else f
            hint = f"; this space's GPUs are priced by --prices {shown}"
            return [p + hint if p.startswith("no price for") else p for p in problems]
    return problems


def same_model(submitted: str, measured: str) -> bool:
    """Whether a table's model name (``reg-gru.csv``: gru) is the submitted model's, loosely
    (``GRU``, ``gru-small`` and ``my_gru`` are; ``inception-v3`` is not)."""
    a, b = ("".join(c for c in x.lower() if c.isalnum()) for x in (submitted, measured))
    return bool(a and b) and (a in b or b in a)


def _intake(name: str, path: Path, kind: str, space: Space | None, notices: list[str]) -> tuple[str, Space | None]:
    """The model's inputs read, its fixed batch dimension made dynamic or the batch knob narrowed
    (live searches: a replay search reads its batch sizes from a table)."""
    from tools.intake import fit_batch_knob, make_batch_dynamic, read_signature
    sig = read_signature(path)                        # IntakeError: not an ONNX model (exit 2)
    notices.append(f"model {name}: inputs {sig.text()}")
    fixed = sig.fixed_batch
    batch = space.roles.batch if space is not None else ""      # the space's batch knob (its role)
    if kind != "live" or fixed is None or space is None or batch not in space.names \
            or list(space.knob(batch).values) == [fixed]:
        return str(path), space
    dynamic, why = make_batch_dynamic(path, home() / "models", sig)
    if dynamic is not None:
        notices.append(f"model {name}: its batch dimension was fixed at {fixed}; made it dynamic ({why}) in "
                       f"{dynamic}, which is what the search runs, so every {batch} of the space can be tried")
        return str(dynamic.resolve()), space
    narrowed, note = fit_batch_knob(space, fixed, name)   # IntakeError: the knob does not offer that size
    notices.append(f"{note} (the graph does not allow a dynamic batch: {why})")
    return str(path), narrowed


async def advertising_runners(s: Settings) -> list[RunnerAdvert] | None:
    """The runners advertising now (None when Redis cannot be reached: nothing to check against)."""
    redis = redis_client(s)
    try:
        return await asyncio.wait_for(read_adverts(redis), 3.0)
    except (OSError, ConnectionError, asyncio.TimeoutError, RedisError):
        return None
    finally:
        await redis.aclose()


async def submit(s: Settings, search_id: str, submission: ModelSubmitted, wait: bool,
                 timeout_s: float) -> Event | None:
    async with KafkaPublisher(s) as pub:
        await pub.publish(Event.new(submission, search_id, PRODUCER))
    if not wait:
        return None
    return await wait_result(s, search_id, timeout_s)


async def wait_result(s: Settings, search_id: str, timeout_s: float) -> Event | None:
    def done(item: LoggedEvent) -> bool:
        return item.event is not None and item.event.search_id == search_id
    async for item in read_events(s, ("search-results",), until=done, timeout_s=timeout_s):
        if done(item):
            return item.event
    return None


def result_summary(event: Event[SearchCompleted | SearchFailed]) -> dict[str, Any]:
    r = event.payload
    if isinstance(r, SearchCompleted):
        obj = r.objective
        natural = r.objective_value if obj is not None else r.best.rps_per_usd
        unit = r.best.rps_per_usd_unit
        # "value": the recommendation's RPS/$ (its name before the field was rps_per_usd), in "rps_per_usd_unit"
        out = {"search_id": event.search_id, "status": "completed", "recommended": r.best.config,
               "value": r.best.rps_per_usd, "rps_per_usd_unit": unit, "objective": units.objective_title(obj, unit),
               "value_text": units.objective_text(obj, natural, unit), "rps": r.best.rps,
               "p99_ms": r.best.p99_ms, "trials": len(r.trials),
               "spent_usd": units.round_sig(r.spent_usd), "spent_text": units.usd(units.round_sig(r.spent_usd)),
               "stop_reason": r.stop_reason, "kops": r.kops, "strategy": r.strategy}
        if obj is not None and not obj.is_default:
            out["objective_value"] = natural
        if r.pareto:
            out["pareto"] = [{"config": p.config, "p99_ms": p.p99_ms, "usd_per_million": p.usd_per_million,
                              "best_for": list(p.best_for)} for p in r.pareto]
        shown = {k: v for k, v in units.KNOB_UNITS.items() if k in r.best.config}
        if shown:                        # the recommended knobs that are quantities, with their units
            out["knob_units"] = shown
            out["recommended_text"] = units.config(r.best.config)
        if r.notices:
            out["notices"] = list(r.notices)
        return out
    return {"search_id": event.search_id, "status": "failed", "stage": r.stage, "reason": r.reason}
