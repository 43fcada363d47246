"""Trial runner shell: trial-requested -> run on a backend -> trial-completed.

Runners are one consumer group, so Kafka gives each request to one runner. On top of that a
trial id is claimed atomically in Redis (SET NX with a lease the runner keeps renewing) and
its result is stored before it is published: a redelivered request re-publishes the stored
result instead of paying for the trial again, and a request whose runner died is taken over
once the lease runs out."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable, Mapping

import faust
import msgpack
from redis.asyncio import Redis

from schemas import Event
from schemas.events import TrialRequested, TrialResult
from services.platform.bus import (
    Publisher,
    create_app,
    instance_name,
    read_events,
    run_worker,
    subscribe,
)
from services.platform.connections import redis_client
from services.platform.observability import TRIAL_SECONDS, TRIALS
from services.platform.redis_keys import (
    RUNNER_ADVERT,
    RUNNER_INITIALISED,
    TRIAL_CLAIM,
    TRIAL_PUBLISHED,
    TRIAL_RESULT,
    TRIAL_RUNS,
)
from services.platform.redis_lock import initialise_once
from services.platform.runners import RunnerAdvert
from services.platform.settings import Settings
from services.platform.topics import trial_topic
from services.trial_runner.backends import LiveBackend, ReplayBackend, TrialBackend

SERVICE = "trial-runner"
RESULT_TTL_S = 30 * 24 * 3600
log = logging.getLogger("falcon.trial_runner")


class TrialRunner:
    def __init__(self, redis: Redis, backends: Mapping[str, TrialBackend], settings: Settings,
                 name: str | None = None) -> None:
        self.redis = redis
        self.backends = dict(backends)
        self.settings = settings
        self.name = name or instance_name(SERVICE)
        self.current: dict[str, dict[str, object]] = {}   # trials running here now: id -> search, since
        self.trials_done = 0
        self.changed = asyncio.Event()                   # a trial started or ended: advertise now

    async def ensure_initialised(self) -> None:
        """After Redis was wiped, put every result in the log back before running anything, so
        a redelivered request for a measured trial is answered from its result, not paid again."""
        n = await initialise_once(self.redis, RUNNER_INITIALISED, lambda: restore_results(self.redis, self.settings))
        if n:
            log.warning("Redis had no trial results: restored %d from the event log", n)

    async def on_trial_requested(self, event: Event[TrialRequested], publisher: Publisher) -> None:
        await self.ensure_initialised()
        request = event.payload
        trial_id = request.trial_id
        while True:
            stored = await self.redis.get(TRIAL_RESULT.format(trial_id))
            if stored is not None:
                if not await self.redis.exists(TRIAL_PUBLISHED.format(trial_id)):
                    log.info("trial=%s already measured: publishing its stored result", trial_id)
                    await publisher.publish(Event(**msgpack.unpackb(stored, raw=False)))
                    await self.redis.set(TRIAL_PUBLISHED.format(trial_id), 1, ex=RESULT_TTL_S)
                return
            lease_ms = int(self.settings.trial_lease_s * 1000)
            if await self.redis.set(TRIAL_CLAIM.format(trial_id), self.name, nx=True, px=lease_ms):
                break
            await asyncio.sleep(min(1.0, self.settings.trial_lease_s / 4))  # another runner has it
        attempt = await self.redis.hincrby(TRIAL_RUNS, trial_id, 1)
        if attempt > self.settings.trial_max_attempts:
            outcome = request.failed(f"gave up after {attempt - 1} attempts: the runner died each time it ran "
                                     f"this trial")
        else:
            renew = asyncio.create_task(self._renew(trial_id))
            self.current[trial_id] = {"trial_id": trial_id, "search_id": event.search_id, "since": time.time(),
                                      "config": dict(request.config)}
            self.changed.set()
            try:
                outcome = await asyncio.to_thread(self._run, request)
            finally:
                renew.cancel()
                self.current.pop(trial_id, None)
                self.trials_done += 1
                self.changed.set()
            kind = str(request.backend.get("kind"))
            TRIALS.labels(kind, outcome.status).inc()
            TRIAL_SECONDS.labels(kind, outcome.status).observe(outcome.duration_s)
        # the request's own identity and configuration, whatever the backend wrote
        outcome = replace(outcome, trial_id=trial_id, index=request.index, config=dict(request.config),
                          runner=self.name)
        result = event.caused(outcome, SERVICE)
        await self.redis.set(TRIAL_RESULT.format(trial_id), msgpack.packb(result.as_dict(), use_bin_type=True),
                             ex=RESULT_TTL_S)
        await publisher.publish(result)
        await self.redis.set(TRIAL_PUBLISHED.format(trial_id), 1, ex=RESULT_TTL_S)
        log.info("search=%s trial=%s status=%s rps_per_usd=%s %s", event.search_id, trial_id, outcome.status,
                 outcome.rps_per_usd, outcome.rps_per_usd_unit or "")

    def _run(self, request: TrialRequested) -> TrialResult:
        kind = request.backend["kind"]
        backend = self.backends.get(kind)
        if backend is None:
            return request.failed(f"this runner has no {kind!r} backend (it has {sorted(self.backends)})")
        return backend.run(request)

    async def _renew(self, trial_id: str) -> None:
        every = self.settings.trial_lease_s / 3
        while True:
            await asyncio.sleep(every)
            await self.redis.pexpire(TRIAL_CLAIM.format(trial_id), int(self.settings.trial_lease_s * 1000))


async def restore_results(redis: Redis, settings: Settings, events: list[Event] | None = None) -> int:
    """Store every trial result found in the log (where none is stored); returns how many.
    ``events``: the trial-completed events as the caller read them; default: the broker's."""
    if events is None:
        events = [item.event async for item in read_events(settings, ("trial-completed",)) if item.event is not None]
    n = 0
    for event in events:
        if event.type == "trial-completed":
            tid = event.payload.trial_id      # type: ignore[attr-defined]
            if await redis.set(TRIAL_RESULT.format(tid), msgpack.packb(event.as_dict(), use_bin_type=True),
                               nx=True, ex=RESULT_TTL_S):
                await redis.set(TRIAL_PUBLISHED.format(tid), 1, ex=RESULT_TTL_S)   # it is in the log
                await redis.hsetnx(TRIAL_RUNS, tid, 1)
                n += 1
    return n


def owned_partitions(app: faust.App, classes: list[str]) -> dict[str, tuple[int, ...]]:
    """The partitions of this runner's trial topics Kafka assigned to it now (the searcher routes
    each trial to an idle runner's partition)."""
    topics = {trial_topic(c) for c in classes}
    out: dict[str, list[int]] = {}
    try:
        assigned = app.consumer.assignment()
    except Exception:  # noqa: BLE001 - no consumer yet (starting up): nothing to advertise
        return {}
    for tp in assigned:
        if tp.topic in topics:
            out.setdefault(tp.topic, []).append(tp.partition)
    return {t: tuple(sorted(p)) for t, p in out.items()}


def runner_classes(settings: Settings) -> list[str]:
    classes = [c.strip() for c in settings.runner_classes.split(",") if c.strip()]
    if not classes:
        raise ValueError("FALCON_RUNNER_CLASSES names no trial class to serve")
    return classes


def make_backends(settings: Settings, classes: list[str]) -> dict[str, TrialBackend]:
    backends: dict[str, TrialBackend] = {}
    if "replay" in classes:
        backends[ReplayBackend.kind] = ReplayBackend(settings.trial_time_scale, settings.cache_dir)
    if any(c.startswith("live-") for c in classes):
        backends[LiveBackend.kind] = LiveBackend(settings.compiled_cache_dir, download_dir=settings.cache_dir,
                                                 max_model_bytes=settings.max_model_bytes)
    return backends


async def advertise(redis: Redis, runner: TrialRunner, classes: list[str], every_s: float = 5.0,
                    owned: Callable[[], Mapping[str, tuple[int, ...]]] = dict) -> None:
    """Keep this runner's classes, the knob values it can apply, the figures it measures, the
    trials it runs now and a heartbeat in Redis (expiring), so ``falcon runners``, submission
    checks, the dashboard and operators see which hardware serves which trial class and what it
    is doing. Re-advertised every ``every_s`` and at once when a trial starts or ends."""
    caps = {k: b.capabilities() for k, b in runner.backends.items()}
    measures = {k: tuple(b.measures()) for k, b in runner.backends.items()}
    key = RUNNER_ADVERT.format(runner.name)
    while True:
        runner.changed.clear()
        advert = RunnerAdvert(runner.name, tuple(classes), caps, measures, heartbeat=time.time(),
                              current=tuple(runner.current.values()), trials_done=runner.trials_done,
                              partitions=owned())
        await redis.set(key, advert.to_json(), ex=int(every_s * 4))
        try:
            await asyncio.wait_for(runner.changed.wait(), every_s)
        except asyncio.TimeoutError:
            pass


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    classes = runner_classes(settings)
    redis = redis_client(settings)
    runner = TrialRunner(redis, make_backends(settings, classes), settings)
    for cls in classes:
        subscribe(app, settings, trial_topic(cls), runner.on_trial_requested)

    @app.task
    async def initialise() -> None:   # noqa: ANN202
        log.info("runner %s serves trial classes %s with backends %s", runner.name, classes, sorted(runner.backends))
        await runner.ensure_initialised()

    @app.task
    async def advertise_capabilities() -> None:   # noqa: ANN202
        await advertise(redis, runner, classes, owned=lambda: owned_partitions(app, classes))
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
