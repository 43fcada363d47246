"""Which partition a trial request goes to (the searcher's shell): the idlest advertising runner
of the trial's class, so the trials of a batch land on distinct idle runners."""

from __future__ import annotations

import time
from typing import Mapping, Sequence

from redis.asyncio import Redis

from services.platform.runners import RunnerAdvert, read_adverts

STALE_ADVERT_S = 12.0      # a runner re-advertises every 5 s: an older advert is likely a dead runner's


def pick_partition(adverts: Sequence[RunnerAdvert], topic: str, routed: Mapping[str, int]) -> tuple[str, int] | None:
    """(runner, partition) for a new trial on ``topic``: a partition of the runner of that topic
    with the fewest trials running now plus routed to it and not started yet (``routed``; ties by
    name), so the trials of a batch land on distinct idle runners instead of queueing behind each
    other in one partition. None when no runner says which partitions it owns (then: by key)."""
    now = time.time()
    owners = [(a, a.partitions[topic]) for a in adverts if a.partitions.get(topic)
              and (a.heartbeat is None or now - a.heartbeat <= STALE_ADVERT_S)]     # a dead runner's advert lingers
    if not owners:
        return None
    runner, parts = min(owners, key=lambda o: (len(o[0].current) + routed.get(o[0].runner, 0), o[0].runner))
    return runner.runner, parts[routed.get(runner.runner, 0) % len(parts)]


class TrialRouter:
    """Chooses the partition of each trial request (the searcher's shell): see :func:`pick_partition`.
    Remembers what it routed until the runner's advert shows the trial running (or ROUTED_TTL_S)."""
    ROUTED_TTL_S = 60.0
    ADVERTS_TTL_S = 0.5

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._adverts: list[RunnerAdvert] = []
        self._read_at = -1e9
        self._routed: dict[str, tuple[str, float]] = {}     # trial id -> (runner, when)

    async def partition(self, topic: str, trial_id: str) -> int | None:
        now = time.monotonic()
        if now - self._read_at > self.ADVERTS_TTL_S:
            self._adverts, self._read_at = await read_adverts(self.redis), now
        running = {str(c.get("trial_id")) for a in self._adverts for c in a.current}
        self._routed = {t: (r, at) for t, (r, at) in self._routed.items()
                        if t not in running and now - at < self.ROUTED_TTL_S}
        if trial_id in self._routed:                       # re-published: where it went before
            runner = self._routed[trial_id][0]
            owned = next((a.partitions.get(topic) for a in self._adverts if a.runner == runner), None)
            if owned:
                return owned[0]
        counts: dict[str, int] = {}
        for r, _ in self._routed.values():
            counts[r] = counts.get(r, 0) + 1
        picked = pick_partition(self._adverts, topic, counts)
        if picked is None:
            return None
        self._routed[trial_id] = (picked[0], now)
        return picked[1]
