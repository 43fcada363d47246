"""Searches: submit, status, watch, audit, report, rebuild."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from redis.exceptions import RedisError

from schemas import Event
from schemas.events import (
    DeadLetter,
    KnowledgeRequested,
    KopsIdentified,
    ModelSubmitted,
    SearchCancelled,
    SearchCompleted,
    SearchFailed,
    TrialRequested,
    TrialResult,
)
from services.common.bus import KafkaPublisher, LoggedEvent, read_events
from services.common.connections import redis_client
from services.common.falcon_data import DataError, read_model_table, read_operator_profile
from services.common.objectives import OBJECTIVES, Objective
from services.common.preflight import Facts
from services.common.pricing import PriceCatalogue
from services.common.runners import RunnerAdvert, read_adverts
from services.common.settings import Settings
from services.common.space import Space
from services.common.spec import DEFAULT_KOP_THRESHOLD, DEFAULT_TRIAL_SECONDS, Constraints, SearchSpec, StopRules
from services.common.topics import ALL_TOPICS, SEARCH_LOG_TOPICS
from services.common.uris import is_remote, redact, remote_size
from services.knowledge import Knowledge
from services.searcher.search import SearchState, rebuild_states, resolve_parallel, validate_spec
from services.searcher.store import SearchStore
from tools import units
from tools.archive import archive_path, history
from tools.cli._shared import EXIT_FAILED, EXIT_OK, PRODUCER, REPO, command, home, out, settings, slug

LIVE_SPACE = REPO / "deploy" / "config" / "live-cpu-space.yaml"      # closed-loop live trials
SERVED_SPACE = REPO / "deploy" / "config" / "live-served-space.yaml"  # served live trials (the default)
LIVE_OVERHEAD_S = 4.0     # a live trial's process start and warm-up, on top of its measurement
SERVED_TRIAL_S = 45.0     # a served trial: server start, warm-up, load sweep (docs/served-trials.md)
DEFAULT_SLO_P99_MS = 100.0   # served trials judge the peak load against this p99 when no --slo-p99-ms is given
LOG_TYPES = ("kops-identified", "trial-completed", "trial-requested", "search-completed", "search-failed")


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


def build_submission(o: SubmitOptions, runners: Sequence[RunnerAdvert] | None = None) -> tuple[str, ModelSubmitted]:
    """The model-submitted payload for a submission. Replay trials answer from a table; live
    trials run the model file (or a zoo model exported to ONNX) on a live runner.

    Everything that can be checked before the first trial is checked here, as the searcher
    checks it again (:func:`services.searcher.search.validate_spec`): the space against the
    replay table, the prices, the numbers, the constraints against what the table or the runners
    measure, and a live space against the runners' advertised capabilities (``runners``; None:
    not known). SubmissionError/DataError/SpaceError (exit 2) say what is wrong, in one line."""
    objective = Objective(o.objective, o.load)          # ObjectiveError: before anything is exported or read
    kind = o.backend or ("replay" if o.replay_table else "live")
    model_file, fmt = o.model_file, o.format
    if o.zoo:
        from tools.zoo import export_onnx
        model_file, fmt = str(export_onnx(o.zoo, home() / "models" / f"{slug(o.zoo)}.onnx")), "onnx"
    if o.live_mode not in ("served", "closed-loop"):
        raise SubmissionError(f"--live-mode {o.live_mode!r}: served or closed-loop")
    space_file = o.space or ((SERVED_SPACE if o.live_mode == "served" else LIVE_SPACE) if kind == "live" else None)
    space = Space.from_file(space_file) if space_file else None
    prices = PriceCatalogue.from_file(o.prices) if o.prices else None
    backend: dict[str, Any]
    table = None
    if kind == "replay":
        if not o.replay_table:
            raise DataError("a replay search needs --replay-table (or --backend live with a model)")
        table = read_model_table(o.replay_table, home() / "cache")       # DataError: missing, unreadable
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
        raise SubmissionError("the search cannot run as submitted: " + "; ".join(problems))
    operators = read_operator_profile(o.profile) if o.profile else None
    search_id = o.search_id or f"{slug(o.model)}-{uuid.uuid4().hex[:12]}"
    return search_id, ModelSubmitted(spec, operators)


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


def result_summary(event: Event) -> dict[str, Any]:
    r = event.payload
    if isinstance(r, SearchCompleted):
        obj = r.objective
        natural = r.objective_value if obj is not None else r.best.value
        out = {"search_id": event.search_id, "status": "completed", "recommended": r.best.config,
               "value": r.best.value, "objective": units.objective_title(obj, r.backend_kind),
               "value_text": units.objective_text(obj, natural, r.backend_kind), "rps": r.best.rps,
               "p99_ms": r.best.p99_ms, "trials": len(r.trials), "spent_usd": round(r.spent_usd, 4),
               "stop_reason": r.stop_reason, "kops": r.kops, "strategy": r.strategy}
        if obj is not None and not obj.is_default:
            out["objective_value"] = natural
        if r.pareto:
            out["pareto"] = [{"config": p.config, "p99_ms": p.p99_ms, "usd_per_million": p.usd_per_million,
                              "best_for": list(p.best_for)} for p in r.pareto]
        if r.notices:
            out["notices"] = list(r.notices)
        return out
    assert isinstance(r, SearchFailed)
    return {"search_id": event.search_id, "status": "failed", "stage": r.stage, "reason": r.reason}


def cmd_submit(a: argparse.Namespace) -> int:
    o = SubmitOptions.from_args(a)
    Objective(o.objective, o.load)           # ObjectiveError (one line, exit 2) before the stack is asked anything
    s = settings()
    runners = None
    if (o.backend or ("replay" if o.replay_table else "live")) == "live":
        runners = asyncio.run(advertising_runners(s))
        if not any("live" in r.capabilities for r in runners or ()):
            print("falcon submit: warning: no runner advertises the live backend now, so the space is not checked "
                  "against what runners can apply (falcon runners)", file=sys.stderr)
    search_id, submission = build_submission(o, runners)
    result = asyncio.run(submit(s, search_id, submission, a.wait, a.timeout))
    if not a.wait:
        out({"search_id": search_id, "status": "submitted"}, a.json, search_id)
        return EXIT_OK
    if result is None:
        out({"search_id": search_id, "status": "timeout"}, True)
        return EXIT_FAILED
    out(result_summary(result), True)
    return EXIT_OK if result.type == "search-completed" else EXIT_FAILED


def state_summary(st: SearchState) -> dict[str, Any]:
    best = st.best
    kind = str(st.spec.backend.get("kind"))
    obj = st.spec.objective
    natural = obj.natural(st.objective_value(best)) if best else None
    return {"search_id": st.search_id, "model": st.spec.model["name"], "status": st.status,
            "trials": len(st.trials), "max_trials": st.spec.stop.max_trials, "backend": kind,
            "objective": units.objective_title(obj, kind), "best_text": units.objective_text(obj, natural, kind),
            "best_value": best.value if best else None, "best_objective": natural,
            "best_config": best.config if best else None,
            "best_rps": best.rps if best else None, "best_p99_ms": best.p99_ms if best else None,
            "spent_usd": round(st.spent_usd, 6), "stop_reason": st.stop_reason,
            "pending": [p.trial_id for p in st.pending], "parallel": st.parallel, "kops": list(st.kops)}


def status_line(r: dict[str, Any]) -> str:
    """One search for people: its status, trials, best objective with its unit, RPS and cost."""
    best = r["best_text"] if r["best_value"] is not None else \
        ("no result yet" if r["status"] == "running" else "no recommendation")
    extra = "".join(f", {x}" for x in (units.rps(r["best_rps"]) if r["best_rps"] is not None else None,
                                        f"p99 {units.ms(r['best_p99_ms'])}" if r["best_p99_ms"] is not None else None)
                    if x)
    return (f"{r['search_id']:40} {r['status']:9} trials {r['trials']:>3}/{r['max_trials']:<3} "
            f"best {best}{extra}, {units.usd(r['spent_usd'])} spent")


async def _status(s: Settings, search_id: str | None) -> list[dict[str, Any]]:
    redis = redis_client(s)
    try:
        store = SearchStore(redis)
        ids = [search_id] if search_id else await store.list_ids()
        rows = []
        for i in ids:
            st = await store.get(i)
            if st is not None:
                rows.append(state_summary(st))
        return rows
    finally:
        await redis.aclose()


def cmd_status(a: argparse.Namespace) -> int:
    rows = asyncio.run(_status(settings(), a.search_id))
    if a.search_id and not rows:
        print(f"no search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join(status_line(r) for r in rows) or "no searches"
    if a.search_id and rows and rows[0]["best_config"]:
        text += f"\n  best configuration: {units.config(rows[0]['best_config'])}"
    out(rows if not a.search_id else rows[0], a.json, text)
    return EXIT_OK


async def _in_log(s: Settings, search_id: str) -> Event | None:
    """The newest event of this search in the log (archive + broker) that says it exists."""
    found = None
    async for item in history(s, ("model-submitted", "kops-identified", "search-results"), archive_path(home()),
                              search_id=search_id, idle_s=1.0):
        found = item.event
    return found


def cmd_watch(a: argparse.Namespace) -> int:
    s = settings()
    seen = -1
    deadline = time.monotonic() + a.timeout
    rows = asyncio.run(_status(s, a.search_id))
    if not rows:          # not in the searcher's state: submitted a moment ago, failed early, or unknown
        logged = asyncio.run(_in_log(s, a.search_id))
        if logged is None:
            print(f"no search {a.search_id!r}: not in the searcher's state nor in the event log "
                  f"(falcon status lists the searches)", file=sys.stderr)
            return EXIT_FAILED
        if logged.type == "search-failed":
            print(f"failed: {logged.payload.reason}")            # type: ignore[union-attr]
            return EXIT_FAILED
    while time.monotonic() < deadline:
        rows = asyncio.run(_status(s, a.search_id))
        if rows:
            r = rows[0]
            if r["trials"] != seen:
                seen = r["trials"]
                bar = "#" * r["trials"] + "." * max(0, r["max_trials"] - r["trials"])
                best = r["best_text"] if r["best_value"] is not None else "-"
                rps = f" ({units.rps(r['best_rps'])})" if r["best_rps"] is not None else ""
                print(f"[{bar}] {r['trials']}/{r['max_trials']} best {best}{rps} "
                      f"{units.config(r['best_config'] or {})}", flush=True)
            if r["status"] != "running":
                print(f"{r['status']}: {r['stop_reason']}")
                return EXIT_OK if r["status"] == "completed" else EXIT_FAILED
        else:
            logged = asyncio.run(_in_log(s, a.search_id))
            if logged is not None and logged.type == "search-failed":
                print(f"failed: {logged.payload.reason}")        # type: ignore[union-attr]
                return EXIT_FAILED
        time.sleep(a.interval)
    print(f"still running after {units.seconds(a.timeout)} (falcon watch again to go on)", file=sys.stderr)
    return EXIT_FAILED


async def search_events(s: Settings, search_id: str) -> list[tuple[str, Event]]:
    """(topic, event) of one search from the archive and the broker, each event once, in log order."""
    return [(i.topic, i.event) async for i in history(s, ALL_TOPICS, archive_path(home()), search_id=search_id)]


async def audit(s: Settings, search_id: str) -> list[dict[str, Any]]:
    """The search's timeline from the event log alone (every topic, deduplicated by event id;
    the local stack's archive too, so it outlives a restart of the broker)."""
    rows = []
    logged = await search_events(s, search_id)
    kinds = [e.data["spec"]["backend"].get("kind") for _, e in logged if e.type in ("model-submitted", "kops-identified")]
    normalised = units.is_normalised(kinds[0]) if kinds else None
    for topic, e in logged:
        rows.append(audit_row(topic, e, normalised))
    return sorted(rows, key=lambda r: r["ts"])


def audit_row(topic: str, e: Event, normalised: bool | None = None) -> dict[str, Any]:
    """One row of a search's timeline (``falcon audit``; the dashboard shows the same rows)."""
    return {"ts": e.ts, "topic": topic, "type": e.type, "event_id": e.event_id, "causation_id": e.causation_id,
            "producer": e.producer, "deliveries": 1, "summary": _summary(e, normalised)}


def _trial_summary(p: TrialResult, normalised: bool | None) -> str:
    head = f"{p.trial_id} {p.status}"
    if p.status != "ok":
        return head + (f" reason={p.reason}" if p.reason else "") + (f" cost={units.usd(p.cost_usd)}"
                                                                      if p.cost_usd else "")
    figures = [units.objective(p.value, "replay" if normalised else "live") if normalised is not None
               else f"value={units.sig(p.value or 0)}"]
    if p.rps is not None:
        figures.append(units.rps(p.rps) + (f" ±{p.stability_cv * 100:.0f}%" if p.stability_cv is not None else ""))
    if p.p50_ms is not None:
        figures.append(f"p50 {units.ms(p.p50_ms)}")
    if p.p99_ms is not None:
        figures.append(f"p99 {units.ms(p.p99_ms)}")
    if p.energy_j_per_request is not None:
        figures.append(f"{units.sig(p.energy_j_per_request, 3)} J/request"
                       + (f" at {units.sig(p.mean_power_w, 3)} W" if p.mean_power_w is not None else ""))
    figures.append(f"cost {units.usd(p.cost_usd)} for {units.seconds(p.duration_s)}")
    return f"{head} " + ", ".join(figures)


def _summary(e: Event, normalised: bool | None = None) -> str:
    try:
        p = e.payload
    except ValueError as exc:
        return f"unusable: {exc}"
    if isinstance(p, ModelSubmitted):
        return (f"model {p.spec.model['name']} ({p.spec.backend.get('kind')}) strategy {p.spec.strategy} "
                f"max_trials {p.spec.stop.max_trials}")
    if isinstance(p, KopsIdentified):
        return f"kops {p.kops}"
    if isinstance(p, KnowledgeRequested):
        return f"knowledge for space {p.space.fingerprint()} ({', '.join(p.space.names)}; {p.space.size:,} configurations)"
    if isinstance(p, TrialRequested):
        return f"{p.trial_id} {p.config}"
    if isinstance(p, TrialResult):
        return _trial_summary(p, normalised)
    if isinstance(p, SearchCompleted):
        shown = units.objective_text(p.objective, p.objective_value if p.objective is not None else p.best.value,
                                     p.backend_kind)
        return (f"best {p.best.config} {shown} after {len(p.trials)} "
                f"trials ({p.stop_reason}), {units.usd(p.spent_usd)} spent")
    if isinstance(p, SearchFailed):
        return f"{p.stage}: {p.reason}"
    if isinstance(p, SearchCancelled):
        return f"{p.reason} (by {p.requested_by})"
    if isinstance(p, DeadLetter):
        return f"{p.source_topic}@{p.offset}: {p.reason}"
    return ""


def cmd_audit(a: argparse.Namespace) -> int:
    rows = asyncio.run(audit(settings(), a.search_id))
    if not rows:
        print(f"no events for search {a.search_id!r}", file=sys.stderr)
        return EXIT_FAILED
    out(rows, a.json, "\n".join(f"{r['ts']}  {r['type']:17} {r['producer']:13} {r['summary']}" for r in rows))
    return EXIT_OK


@dataclass(frozen=True)
class Loaded:
    state: SearchState | None
    knowledge: Knowledge | None
    wall_s: float | None          # submission to result, from the log's timestamps


def _ts(e: Event) -> float:
    return datetime.fromisoformat(e.ts.replace("Z", "+00:00")).timestamp()


async def load_search(s: Settings, search_id: str) -> Loaded:
    """A search's state (Redis, else rebuilt from the event log), the offline knowledge stored
    for its space (None when none was built) and its wall time."""
    from services.knowledge.store import KnowledgeStore
    events = [e for _, e in await search_events(s, search_id)]
    redis = redis_client(s)
    try:
        st = await SearchStore(redis).get(search_id)
        if st is None:
            st = rebuild_states([e for e in events if e.type in LOG_TYPES]).get(search_id)
        knowledge = await KnowledgeStore(redis).load(st.spec.space) if st is not None else None
    finally:
        await redis.aclose()
    start = [_ts(e) for e in events if e.type == "model-submitted"]
    end = [_ts(e) for e in events if e.type in ("search-completed", "search-failed")]
    wall = max(end) - min(start) if start and end else None
    return Loaded(st, knowledge, wall)


def cmd_report(a: argparse.Namespace) -> int:
    from tools.report import Baseline, parse_config, write_report
    loaded = asyncio.run(load_search(settings(), a.search_id))
    st = loaded.state
    if st is None:
        print(f"no search {a.search_id!r} in Redis or in the event log", file=sys.stderr)
        return EXIT_FAILED
    baseline = None
    if a.baseline:
        baseline = Baseline.of(st, parse_config(a.baseline, st.spec.space), a.load_rps, home() / "cache")
    out_dir = Path(a.out or home() / "reports" / slug(a.search_id))
    s = write_report(st, out_dir, loaded.knowledge, wall_s=loaded.wall_s, baseline=baseline)
    rec = s["recommended"]
    kind = s["backend"]
    figures = [] if not rec else [rec.get("objective_text") or units.objective(rec["value"], kind),
                                  units.rps(rec["rps"]) if rec["rps"] is not None else None,
                                  f"p99 {units.ms(rec['p99_ms'])}" if rec["p99_ms"] is not None else None,
                                  units.usd_per_hour(rec["usd_per_hour"])]
    text = f"report: {s['files']['html']}\n" + (
        f"recommended {units.config(rec['config'])}: {', '.join(f for f in figures if f)}"
        if rec else f"no recommendation ({s['stop_reason']})")
    if rec and rec.get("monthly") and s.get("load_rps"):
        m = rec["monthly"]
        text += (f"\n{units.usd(m['usd'])} a month at {units.rps(s['load_rps'])} ({m['replicas']} "
                 f"replica{'s' if m['replicas'] != 1 else ''})")
    text += "".join(f"\n{n}" for n in s.get("notices", []))
    if s.get("baseline"):
        text += f"\nagainst the baseline {units.config(s['baseline']['config'])}: {s['baseline']['verdict']}"
    text += "".join(f"\n{c}" for c in s.get("closest", []))
    out(s, a.json, text)
    return EXIT_OK if rec else EXIT_FAILED


async def rebuild(s: Settings) -> dict[str, int]:
    from services.searcher.app import rebuild_from_log
    from services.trial_runner.app import restore_results
    events = [i.event async for i in history(s, SEARCH_LOG_TOPICS, archive_path(home()))]
    redis = redis_client(s)
    try:
        return {"searches_restored": await rebuild_from_log(s, SearchStore(redis), events=events),
                "trial_results_restored": await restore_results(redis, s, events)}
    finally:
        await redis.aclose()


def cmd_rebuild(a: argparse.Namespace) -> int:
    counts = asyncio.run(rebuild(settings()))
    out(counts, a.json, f"restored {counts['searches_restored']} searches and "
                        f"{counts['trial_results_restored']} trial results from the event log")
    return EXIT_OK


def positive(text: str) -> float:
    """argparse type: a positive finite number."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (x > 0 and x != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return x


def positive_int(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if x < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return x


def register(sub: Any) -> None:
    def cmd(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        return command(sub, name, fn, help_)

    c = cmd("submit", cmd_submit, "submit a model for a configuration search (what upstream CI calls)")
    c.add_argument("model", help="model name")
    c.add_argument("--profile", help="operator profile csv (falcon-data operators.csv format)")
    c.add_argument("--model-file", help="the model itself (ONNX, or a trusted torch.export .pt2): a path or a "
                   "file://, s3:// or https:// URI; the profiler measures its operators with TVM unless --profile "
                   "is given")
    c.add_argument("--zoo", help="submit a built-in zoo model (exported to ONNX); see falcon profile --list-zoo")
    c.add_argument("--format", help="model file format (default: from the file's suffix)")
    c.add_argument("--backend", choices=("replay", "live"),
                   help="replay: answer trials from --replay-table; live: run the model on a live runner "
                        "(default: replay when --replay-table is given)")
    c.add_argument("--replay-table", help="measurement table csv the replay backend answers from (a path or a "
                   "file://, s3:// or https:// URI)")
    c.add_argument("--live-mode", choices=("served", "closed-loop"), default="served",
                   help="live trials: served (Triton + perf_analyzer, the peak RPS within the p99 SLO, default "
                        f"{DEFAULT_SLO_P99_MS:g} ms) or closed-loop (one batch in flight in one process: fast, no "
                        "server); docs/served-trials.md")
    c.add_argument("--measure-s", type=positive, default=3.0, help="closed-loop live trials: seconds of stress "
                   "test per trial")
    c.add_argument("--space", help="configuration space file (.yaml/.toml); default: the paper's 1,440 points "
                   "(replay), deploy/config/live-served-space.yaml (live) or live-cpu-space.yaml (live "
                   "closed-loop)")
    c.add_argument("--prices", help="price catalogue file (.yaml/.toml); default: EC2 on-demand")
    c.add_argument("--max-trials", type=positive_int, default=15)
    c.add_argument("--target-value", type=float, help="stop once a trial reaches this objective value, in the "
                   "objective's unit (at least this many RPS/$; at most this many $/h, ms or J per request)")
    c.add_argument("--budget-usd", type=positive, help="stop before the trials' cost would exceed this")
    c.add_argument("--slo-p99-ms", type=positive, help="latency SLO: never recommend a configuration whose p99 "
                   "latency is above this")
    c.add_argument("--min-rps", type=positive, help="peak load: never recommend a configuration serving fewer "
                   "requests per second")
    c.add_argument("--max-usd-per-million", type=positive, help="cost ceiling: never recommend a configuration "
                   "costing more than this many $ per million requests at its measured RPS (e.g. with --objective "
                   "p99: the fastest configuration within a budget)")
    c.add_argument("--objective", choices=OBJECTIVES, default="rps-per-usd",
                   help="what to optimise: rps-per-usd (requests per $, default), usd-for-load (the cheapest "
                        "deployment carrying --load requests/s: replicas x price), energy-per-request (joules, "
                        "GPU runners with NVML), p99 (latency); the constraints hold for each")
    c.add_argument("--load", type=positive, help="the load to carry, requests/s: required by usd-for-load; with "
                   "any objective, the load the report states monthly costs at")
    c.add_argument("--strategy", default="falcon", help="falcon (default), random, gp-ei, tpe, morphling, prior")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--kop-threshold", type=float, default=DEFAULT_KOP_THRESHOLD)
    c.add_argument("--trial-seconds", type=positive, default=DEFAULT_TRIAL_SECONDS,
                   help="replay: the simulated length (and so the cost) of one trial")
    c.add_argument("--parallel", type=int, help="trials in flight at once (default: as many as live runners "
                   "serve the search's hardware classes; 1 for replay)")
    c.add_argument("--cost-aware", action="store_true", help="weigh each candidate's expected improvement per $ "
                   "of its trial (cheap trials first when they promise as much)")
    c.add_argument("--search-id", help="default: <model>-<random>")
    c.add_argument("--wait", action="store_true", help="wait for the result; exit 1 if the search failed")
    c.add_argument("--timeout", type=positive, default=600.0)
    c = cmd("status", cmd_status, "show searches (or one search) from the searcher's state")
    c.add_argument("search_id", nargs="?")
    c = cmd("watch", cmd_watch, "follow a search's progress until it ends")
    c.add_argument("search_id")
    c.add_argument("--interval", type=positive, default=1.0)
    c.add_argument("--timeout", type=positive, default=3600.0)
    c = cmd("audit", cmd_audit, "print a search's timeline from the event log")
    c.add_argument("search_id")
    c = cmd("report", cmd_report, "write a search's report (HTML + PNG plots): recommendation, runners-up, history")
    c.add_argument("search_id")
    c.add_argument("--out", help="folder for report.html and the plots (default: $FALCON_HOME/reports/<id>)")
    c.add_argument("--baseline", help="the configuration you run today, e.g. 'cpus=2,batchsize=8,graph_opt=all': "
                   "the report compares the recommendation with it (RPS/$, $ per million requests, monthly cost)")
    c.add_argument("--load-rps", type=positive, help="the load the monthly costs are stated at (default: the "
                   "search's --load, else the --min-rps constraint, else the baseline's measured RPS)")
    cmd("rebuild", cmd_rebuild, "rebuild the searches and trial results in Redis from the event log")
