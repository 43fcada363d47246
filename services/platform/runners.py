"""What trial runners advertise in Redis (``redis_keys.RUNNER_ADVERT``, written by the trial
runner, expiring): the trial classes each serves, per backend kind the knob values it can apply
and the figures it measures. Read by ``falcon runners``, ``falcon submit`` and the searcher to
refuse, before any trial, a space value or a constraint no runner can serve. (The searcher routes
trials by them: ``services/searcher/routing.py``.)"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from redis.asyncio import Redis

from services.platform.redis_keys import RUNNER_ADVERT


@dataclass(frozen=True)
class RunnerAdvert:
    runner: str
    classes: tuple[str, ...]
    capabilities: Mapping[str, Mapping[str, Any]]            # backend kind -> knob -> values (or a description)
    measures: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # backend kind -> measured figures
    heartbeat: float | None = None              # unix time of the advert (the dashboard shows its age)
    current: tuple[Mapping[str, Any], ...] = ()  # the trials it runs now
    trials_done: int = 0
    partitions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)   # trial topic -> partitions it owns

    def to_json(self) -> str:
        return json.dumps({"runner": self.runner, "classes": list(self.classes),
                           "capabilities": {k: dict(v) for k, v in self.capabilities.items()},
                           "measures": {k: list(v) for k, v in self.measures.items()},
                           "heartbeat": self.heartbeat, "current": [dict(c) for c in self.current],
                           "trials_done": self.trials_done,
                           "partitions": {k: list(v) for k, v in self.partitions.items()}})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunnerAdvert":
        return cls(str(d["runner"]), tuple(d.get("classes") or ()), dict(d.get("capabilities") or {}),
                   {k: tuple(v) for k, v in (d.get("measures") or {}).items()}, d.get("heartbeat"),
                   tuple(d.get("current") or ()), int(d.get("trials_done") or 0),
                   {str(k): tuple(int(p) for p in v) for k, v in (d.get("partitions") or {}).items()})


async def read_adverts(redis: Redis) -> list[RunnerAdvert]:
    """Every runner advertising now, sorted by name (adverts that do not parse are skipped)."""
    keys = [k async for k in redis.scan_iter(match=RUNNER_ADVERT.format("*"))]
    out = []
    for raw in (await redis.mget(keys) if keys else []):
        if not raw:
            continue
        try:
            out.append(RunnerAdvert.from_dict(json.loads(raw)))
        except (ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda a: a.runner)
