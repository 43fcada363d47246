"""``falcon calibrate``: measure the user's hardware for the offline knowledge (the plan, the
tables and the design are :mod:`tools.calibration`; this is the bus side).

One ordinary live search (strategy ``design``) per single-operator model, with a deterministic
search id (``cal-<calibration id>-<op>-<shape>``): asked again, the command finds the searches the
stack already has - done, still running, or never submitted - follows the running ones and
submits only the missing (a failed one again, as ``...-a2``). Nothing is published until every
search is complete; then the tables are written (falcon-data layout), published as
``falcon publish-offline`` publishes a folder, and the command waits for the treebuilder's
knowledge of the space to name them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping

from schemas import Event
from schemas.events import KnowledgeRequested, ModelSubmitted, SearchCompleted, SearchFailed, TreesReady, TrialResult
from services.platform.bus import KafkaPublisher, read_events
from services.platform.connections import redis_client
from services.domain.pricing import DEFAULT_PRICES, PriceCatalogue
from services.platform.runners import RunnerAdvert
from services.platform.settings import Settings
from services.domain.serving import LIVE_MODES
from services.domain.space import Space
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareCatalogue
from services.knowledge.store import KnowledgeStore
from services.searcher.store import SearchStore
from tools import calibration as cal
from tools import localstack, units
from tools.archive import archive_path, history
from tools.cli._shared import EXIT_FAILED, EXIT_OK, EXIT_USAGE, PRODUCER, command, home, out, require_stack, settings
from tools.cli.data_cmds import publish_offline
from tools.app.submit import SubmitOptions, advertising_runners, build_submission
from tools.cli.search_cmds import positive, positive_int

TERMINAL = ("completed", "failed", "cancelled")
MAX_ATTEMPTS = 5


@dataclass
class Tracked:
    """One single-operator model's search as the stack knows it."""
    item: cal.Item
    search_id: str
    attempt: int = 1
    status: str = "new"            # new | submitted | running | completed | failed | cancelled
    trials: int = 0
    spent_usd: float = 0.0
    reason: str | None = None
    results: list[TrialResult] = field(default_factory=list)
    retried: str | None = None     # why the previous attempt is not used


def calibration_dir(plan: cal.Plan) -> Path:
    return home() / "calibrations" / plan.calibration_id


def profile_file(plan: cal.Plan, item: cal.Item) -> Path:
    """The single-operator model's operator profile (falcon-data operators.csv: all of its time
    is the one operator), so the profiler does not profile what is known by construction."""
    p = calibration_dir(plan) / "models" / f"{item.model}.operators.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"op_name,running time percentage\n{item.op},100\n")
    return p


def submission(plan: cal.Plan, item: cal.Item, search_id: str, a: argparse.Namespace,
               runners: list[RunnerAdvert] | None) -> ModelSubmitted:
    """The item's search as ``falcon submit`` builds one (same checks: SubmissionError, exit 2)."""
    budget = a.budget_usd / len(plan.items) if a.budget_usd else None
    _, sub = build_submission(SubmitOptions(
        model=item.model, model_file=item.onnx, format="onnx", profile=str(profile_file(plan, item)), backend="live",
        measure_s=plan.measure_s, space=a.space, prices=a.prices, max_trials=len(plan.design), budget_usd=budget,
        strategy=cal.STRATEGY, seed=plan.seed, search_id=search_id, live_mode=plan.mode,
        slo_p99_ms=plan.slo_p99_ms if plan.mode == "served" else None), runners)
    return sub


async def seen_kops(s: Settings, limit: int = 200) -> list[str]:
    """The KOPs of the searches the stack knows (the submitted models'); empty when unreachable."""
    redis = redis_client(s)
    try:
        store = SearchStore(redis)
        ids = await asyncio.wait_for(store.list_ids(limit), 3.0)
        return sorted({k for st in await store.get_many(ids) if st is not None for k in st.kops})
    except Exception:  # noqa: BLE001 - the default operators do without the stack
        return []
    finally:
        await redis.aclose()


def candidate_ids(plan: cal.Plan) -> list[str]:
    return [cal.search_id(plan.calibration_id, i.op, i.shape, k)
            for i in plan.items for k in range(1, MAX_ATTEMPTS + 1)]


def resolve(plan: cal.Plan, states: Mapping[str, Any], results: Mapping[str, Event],
            submitted: set[str]) -> list[Tracked]:
    """Each model's current search from what the stack knows (``states``: search id -> its
    SearchState in Redis; ``results``: its search-completed/failed in the log; ``submitted``: ids
    with a model-submitted in the log): the first attempt that did not fail. A failed or cancelled
    attempt is retried as the next (``-a2``, ...); one never submitted is ``new``."""
    tracked = []
    for item in plan.items:
        t = Tracked(item, item.search_id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            sid = cal.search_id(plan.calibration_id, item.op, item.shape, attempt)
            t.search_id, t.attempt = sid, attempt
            _apply(t, states.get(sid), results.get(sid), sid in submitted)
            if t.status not in ("failed", "cancelled") or attempt == MAX_ATTEMPTS:
                break
            t.retried = f"{sid} {t.status}: {t.reason}"
            t.status, t.reason, t.trials, t.spent_usd, t.results = "new", None, 0, 0.0, []
        tracked.append(t)
    return tracked


async def discover(s: Settings, plan: cal.Plan) -> list[Tracked]:
    """What the stack knows of this calibration's searches: Redis states, and the event log
    (the local stack's archive too) for searches submitted but not started, or that failed
    before the searcher (profile stage)."""
    prefix = f"cal-{plan.calibration_id}-"
    submitted: set[str] = set()
    results: dict[str, Event] = {}
    async for item in history(s, ("model-submitted", "search-results"), archive_path(home()), idle_s=1.0):
        e = item.event
        if e.search_id.startswith(prefix):
            if e.type == "model-submitted":
                submitted.add(e.search_id)
            else:
                results[e.search_id] = e
    redis = redis_client(s)
    try:
        ids = candidate_ids(plan)
        states = {sid: st for sid, st in zip(ids, await SearchStore(redis).get_many(ids)) if st is not None}
    finally:
        await redis.aclose()
    return resolve(plan, states, results, submitted)


async def submit_missing(tracked: list[Tracked], make: Callable[[cal.Item, str], ModelSubmitted],
                         publish: Callable[[Event], Awaitable[None]]) -> list[str]:
    """Submit the searches the stack does not have (``new``); returns their ids."""
    sent = []
    for t in tracked:
        if t.status == "new":
            await publish(Event.new(make(t.item, t.search_id), t.search_id, PRODUCER))
            t.status = "submitted"
            sent.append(t.search_id)
    return sent


def _apply(t: Tracked, state: Any, result: Event | None, submitted: bool) -> None:
    """Fold what Redis (``state``: a SearchState) and the log (``result``) say into ``t``."""
    if state is not None:
        t.status, t.trials, t.spent_usd = state.status, len(state.trials), state.spent_usd
        t.reason, t.results = state.stop_reason, list(state.trials)
    if result is not None and (state is None or state.status == "running"):
        p = result.payload
        if isinstance(p, SearchCompleted):
            t.status, t.results, t.trials, t.spent_usd = "completed", list(p.trials), len(p.trials), p.spent_usd
            t.reason = p.stop_reason
        elif isinstance(p, SearchFailed):
            t.status, t.reason = "failed", f"{p.stage}: {p.reason}"
            t.results = list(p.trials)
    if t.status == "new" and submitted:
        t.status = "submitted"


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, stream: Any = None, width: int = 30) -> None:
        self.total, self.width = max(total, 1), width
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.monotonic()
        self.last: tuple[int, int] | None = None
        self.start_done: int | None = None

    def line(self, done: int, spent: float, running: int) -> str:
        frac = min(done / self.total, 1.0)
        bar = "#" * round(frac * self.width) + "." * (self.width - round(frac * self.width))
        elapsed = time.monotonic() - self.t0
        fresh = done - (self.start_done or 0)
        eta = elapsed / fresh * (self.total - done) if fresh > 0 and done < self.total else None
        return (f"[{bar}] {done}/{self.total} trials, {units.usd(spent)} spent, {units.seconds(elapsed)}"
                + (f", ~{units.seconds(eta)} left" if eta is not None else "")
                + (f", {running} search(es) running" if running else ""))

    def update(self, done: int, spent: float, running: int) -> None:
        if self.start_done is None:
            self.start_done = done
        if self.tty:
            print("\r" + self.line(done, spent, running).ljust(100), end="", file=self.stream, flush=True)
            return
        step = (done * 10) // self.total
        if self.last is None or step != self.last[0] or (done == self.total and self.last[1] != done):
            print(self.line(done, spent, running), file=self.stream, flush=True)
            self.last = (step, done)

    def close(self) -> None:
        if self.tty:
            print(file=self.stream, flush=True)


async def run(s: Settings, plan: cal.Plan, tracked: list[Tracked], make: Callable[[cal.Item, str], ModelSubmitted],
              timeout_s: float, progress: Progress | None = None, poll_s: float = 1.0) -> list[Tracked]:
    """Submit the searches the stack does not have, then follow every one until it ends."""
    if any(t.status == "new" for t in tracked):
        async with KafkaPublisher(s) as pub:
            await submit_missing(tracked, make, pub.publish)
    ids = {t.search_id: t for t in tracked}
    logged: dict[str, Event] = {}

    async def follow() -> None:
        async for item in read_events(s, ("search-results",), follow=True):
            if item.event is not None and item.event.search_id in ids:
                logged[item.event.search_id] = item.event

    follower = asyncio.create_task(follow())
    redis = redis_client(s)
    deadline = time.monotonic() + timeout_s
    try:
        store = SearchStore(redis)
        while True:
            states = await store.get_many(list(ids))
            for (sid, t), st in zip(ids.items(), states):
                _apply(t, st, logged.get(sid), True)
            if progress is not None:
                progress.update(sum(t.trials for t in tracked), sum(t.spent_usd for t in tracked),
                                sum(1 for t in tracked if t.status not in TERMINAL))
            if all(t.status in TERMINAL for t in tracked):
                return tracked
            if follower.done() and follower.exception() is not None:
                raise follower.exception()       # type: ignore[misc]
            if time.monotonic() > deadline:
                return tracked
            await asyncio.sleep(poll_s)
    finally:
        follower.cancel()
        try:
            await follower
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping the follower
            pass
        await redis.aclose()
        if progress is not None:
            progress.close()


async def publish(s: Settings, plan: cal.Plan, folder: Path, wait_s: float = 120.0) -> dict[str, Any]:
    """Publish the tables (as ``falcon publish-offline``), then ask for the space's knowledge and
    wait for the treebuilder's trees-ready built from a dataset that holds them."""
    n = await publish_offline(s, folder, wait_s)
    redis = redis_client(s)
    try:
        version = await KnowledgeStore(redis).dataset_version() or 0
    finally:
        await redis.aclose()
    async with KafkaPublisher(s) as pub:
        await pub.publish(Event.new(KnowledgeRequested(plan.space), "", PRODUCER))
    fp = plan.space.fingerprint()

    def built(item: Any) -> bool:
        p = item.event.payload if item.event is not None and item.event.type == "trees-ready" else None
        return isinstance(p, TreesReady) and p.space_key == fp and p.version >= version

    ready = None
    async for item in read_events(s, ("trees",), until=built, timeout_s=wait_s):
        if built(item):
            ready = item.event.payload
    if ready is None:
        raise localstack.StackError(f"published {n} tables, but the treebuilder announced no knowledge of space "
                                    f"{fp} within {wait_s:.0f}s")
    return {"published": n, "version": ready.version, "space": fp, "sources": ready.sources,
            "operators": [o["op"] for o in ready.operators]}


def cmd_calibrate(a: argparse.Namespace) -> int:
    t0 = time.monotonic()
    s = settings()
    space = Space.from_file(a.space)
    prices = PriceCatalogue.from_file(a.prices) if a.prices else DEFAULT_PRICES
    hardware = HardwareCatalogue.from_file(a.hardware) if a.hardware else DEFAULT_HARDWARE
    asked = [o.strip() for o in a.operators.split(",") if o.strip()] if a.operators else None
    ops, notes = cal.choose_operators(asked, [] if asked else asyncio.run(seen_kops(s)))
    shapes: int | list[str] = int(a.shapes) if a.shapes.strip().isdigit() else [x.strip() for x in a.shapes.split(",")]
    if isinstance(shapes, int) and shapes < 1:
        raise cal.CalibrationError(f"--shapes must be at least 1, not {a.shapes}")
    probe = cal.make_plan(space, prices, hardware, ops, shapes, a.points, a.measure_s, a.seed, a.backend,
                          mode=a.live_mode, slo_p99_ms=a.slo_p99_ms)
    plan = cal.make_plan(space, prices, hardware, ops, shapes, a.points, a.measure_s, a.seed, a.backend,
                         models_dir=home() / "calibrations" / probe.calibration_id / "models", notes=notes,
                         mode=a.live_mode, slo_p99_ms=a.slo_p99_ms)
    folder = Path(a.out) if a.out else calibration_dir(plan) / "tables"
    cal.check_out(folder)
    runners = asyncio.run(advertising_runners(s))
    live = [r for r in runners or () if "live" in r.capabilities]
    for item in plan.items:               # the checks falcon submit makes, before anything is published
        submission(plan, item, item.search_id, a, runners)
    print(plan.text(), file=sys.stderr if a.json else sys.stdout)
    serving = {c for r in live for c in r.classes}
    missing = [c for c in plan.runner_classes if c not in serving]
    if missing:
        print(f"falcon calibrate: warning: no runner advertises trial class(es) {', '.join(missing)} now: those "
              "trials wait until one does (falcon runners)", file=sys.stderr)
    if a.budget_usd is not None and plan.cost_usd > a.budget_usd:
        fits = plan.points_within(a.budget_usd)
        print(f"falcon calibrate: the estimated cost {units.usd(plan.cost_usd)} is over --budget-usd "
              f"{units.usd(a.budget_usd)}; nothing was started ("
              + (f"--points {fits} fits the budget" if fits else "no design point fits it") + ")", file=sys.stderr)
        return EXIT_USAGE
    if a.dry_run:
        out(plan.to_dict(), a.json, "dry run: nothing was started")
        return EXIT_OK
    if not a.yes:
        if not sys.stdin.isatty():
            print(f"falcon calibrate: not started: pass --yes to run {plan.trials} trials "
                  f"(about {units.usd(plan.cost_usd)}) without a prompt", file=sys.stderr)
            return EXIT_USAGE
        if input(f"start {plan.trials} trials (about {units.usd(plan.cost_usd)})? [y/N] ").strip().lower() \
                not in ("y", "yes"):
            print("not started", file=sys.stderr)
            return EXIT_FAILED
    require_stack(s)                     # the plan is good and accepted: now the stack must answer (exit 3 if not)
    tracked = asyncio.run(discover(s, plan))
    done = [t for t in tracked if t.status == "completed"]
    going = [t for t in tracked if t.status in ("submitted", "running")]
    if done or going:
        print(f"resuming calibration {plan.calibration_id}: {len(done)} search(es) complete, {len(going)} running, "
              f"{len(tracked) - len(done) - len(going)} to submit", file=sys.stderr)
    for t in tracked:
        if t.retried:
            print(f"  retrying {t.item.model} as {t.search_id} ({t.retried})", file=sys.stderr)
    try:
        tracked = asyncio.run(run(s, plan, tracked, lambda item, sid: submission(plan, item, sid, a, runners),
                                  a.timeout, Progress(plan.trials)))
    except KeyboardInterrupt:
        print(f"\ninterrupted: the calibration's searches go on in the stack; run the same falcon calibrate "
              f"again to follow them and publish (calibration {plan.calibration_id})", file=sys.stderr)
        return 130
    unfinished = [t for t in tracked if t.status not in TERMINAL]
    failed = [t for t in tracked if t.status in ("failed", "cancelled")]
    if unfinished or failed:
        for t in failed:
            print(f"  {t.search_id} {t.status}: {t.reason}", file=sys.stderr)
        what = (f"{len(unfinished)} search(es) still running after {units.seconds(a.timeout)}" if unfinished else "") \
            + ("; " if unfinished and failed else "") + (f"{len(failed)} failed" if failed else "")
        print(f"falcon calibrate: {what}: nothing published; run the same command again to "
              f"{'follow them' if unfinished else 'retry the failed ones'} (completed ones are kept)", file=sys.stderr)
        if a.json:
            out({"calibration_id": plan.calibration_id, "status": "incomplete",
                 "searches": {t.search_id: t.status for t in tracked}}, True)
        return EXIT_FAILED
    written = cal.write_tables(plan, {t.item.model: t.results for t in tracked}, folder,
                               runners=sorted({r.runner for r in live}))
    knowledge = asyncio.run(publish(s, plan, folder))
    spent = sum(t.spent_usd for t in tracked)
    summary = {"calibration_id": plan.calibration_id, "status": "published", "out": str(folder),
               "searches": [t.search_id for t in tracked], "trials": sum(t.trials for t in tracked),
               "spent_usd": round(spent, 6), "sources": written.sources, "kop_curves": written.curves,
               "knowledge": knowledge, "wall_s": round(time.monotonic() - t0, 1)}
    out(summary, a.json, f"calibration {plan.calibration_id}: {summary['trials']} trials, {units.usd(spent)} spent; "
                         f"{len(written.sources)} source tables and {len(written.curves)} KOP curves in {folder}\n"
                         f"published: knowledge v{knowledge['version']} of space {knowledge['space']} "
                         f"({len(knowledge['sources'])} source models, operators {', '.join(knowledge['operators'])})")
    return EXIT_OK


def register(sub: Any) -> None:
    c = command(sub, "calibrate", cmd_calibrate,
                "measure single-operator models on this stack's runners over a design of a space, and publish them "
                "as offline knowledge for that space (your own hardware)")
    c.add_argument("--space", required=True, help="configuration space file (.yaml/.toml) of the hardware to measure")
    c.add_argument("--prices", help="price catalogue file (default: EC2 on-demand)")
    c.add_argument("--hardware", help="hardware catalogue file (default: deploy/config/hardware.yaml); every device "
                   "the space names must be in it")
    c.add_argument("--backend", default="live", help="live (the only one: a calibration measures on live runners)")
    c.add_argument("--operators", help="comma-separated operator kinds (default: the zoo's KOPs and those of the "
                   "models submitted to this stack; tools/opmodels.py lists the ones a model can be built for)")
    c.add_argument("--shapes", default="2", help="representative shapes per operator: how many (default 2), or "
                   "their names, comma-separated")
    c.add_argument("--points", type=positive_int, default=cal.DEFAULT_POINTS,
                   help="design points (configurations) measured per model")
    c.add_argument("--live-mode", choices=LIVE_MODES, default="served",
                   help="served (default): each point a Triton deployment stressed up to its peak within the SLO; "
                        "closed-loop: the in-process loop (docs/served-trials.md)")
    c.add_argument("--slo-p99-ms", type=positive, default=cal.DEFAULT_SLO_P99_MS,
                   help="served: the p99 the peak load is judged against (default 100)")
    c.add_argument("--measure-s", type=positive, default=cal.DEFAULT_MEASURE_S,
                   help="closed-loop: seconds of stress test per trial")
    c.add_argument("--seed", type=int, default=0, help="the design's seed")
    c.add_argument("--budget-usd", type=positive, help="refuse to start if the estimated cost is over this")
    c.add_argument("--out", help="folder for the tables (default: $FALCON_HOME/calibrations/<id>/tables)")
    c.add_argument("--dry-run", action="store_true", help="print the plan and its cost; start nothing")
    c.add_argument("--yes", action="store_true", help="start without asking (needed when not on a terminal)")
    c.add_argument("--timeout", type=positive, default=6 * 3600.0, help="seconds to follow the searches")


__all__ = ["cmd_calibrate", "register"]
