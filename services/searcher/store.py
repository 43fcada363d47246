"""Redis repository of search states (the searcher's only state), with a per-search lock so
that two searcher instances never decide for the same search at once (e.g. while Kafka moves a
partition from one to the other)."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Iterable, Mapping, Sequence

import msgpack
from redis.asyncio import Redis

from services.platform.redis_keys import (
    SEARCH_INDEX,
    SEARCH_LOCK,
    SEARCH_OPEN,
    SEARCH_STATE,
    SEARCHER_INITIALISED,
)
from services.platform.redis_lock import redis_lock
from services.domain.spec import SearchSpec
from services.searcher.search import SearchState


class SearchStore:
    def __init__(self, redis: Redis, lock_ttl_s: float = 10.0) -> None:
        self.redis = redis
        self.lock_ttl_s = lock_ttl_s
        self._specs: dict[str, tuple[bytes, SearchSpec]] = {}   # a search's spec never changes: parse it once

    async def get(self, search_id: str) -> SearchState | None:
        return self._load(search_id, await self.redis.get(SEARCH_STATE.format(search_id)))

    async def get_many(self, search_ids: Sequence[str]) -> list[SearchState | None]:
        """Several states in one round trip (MGET), in the order asked."""
        if not search_ids:
            return []
        raws = await self.redis.mget([SEARCH_STATE.format(i) for i in search_ids])
        return [self._load(i, raw) for i, raw in zip(search_ids, raws)]

    def _load(self, search_id: str, raw: bytes | None) -> SearchState | None:
        if raw is None:
            return None
        d = msgpack.unpackb(raw, raw=False)
        packed = msgpack.packb(d["spec"])
        cached = self._specs.get(search_id)
        if cached is None or cached[0] != packed:
            cached = self._specs[search_id] = (packed, SearchSpec.from_dict(d["spec"]))
        return SearchState.from_dict(d, cached[1])

    async def put(self, *states: SearchState) -> None:
        """One MULTI/EXEC: states, their outboxes and the indexes change together or not at all."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for state in states:
                pipe.set(SEARCH_STATE.format(state.search_id), msgpack.packb(state.to_dict(), use_bin_type=True))
                pipe.zadd(SEARCH_INDEX, {state.search_id: time.time()}, nx=True)
                if state.status == "running":
                    pipe.sadd(SEARCH_OPEN, state.search_id)
                else:
                    pipe.srem(SEARCH_OPEN, state.search_id)
            await pipe.execute()

    async def mark_published(self, search_id: str, outbox: Iterable[Mapping[str, Any]]) -> None:
        """Record that the outbox reached the broker: a later duplicate need not re-publish it."""
        await self.redis.set(SEARCH_STATE.format(search_id) + ":published", _outbox_id(outbox))

    async def is_published(self, search_id: str, outbox: Iterable[Mapping[str, Any]]) -> bool:
        return (await self.redis.get(SEARCH_STATE.format(search_id) + ":published")) == _outbox_id(outbox).encode()

    async def list_ids(self, limit: int = 50) -> list[str]:
        return [i for i, _ in await self.recent(limit)]

    async def recent(self, limit: int = 50) -> list[tuple[str, float]]:
        """The newest searches first: (search id, when its state was first stored, epoch seconds)."""
        rows = await self.redis.zrevrange(SEARCH_INDEX, 0, limit - 1, withscores=True)
        return [(i.decode() if isinstance(i, bytes) else i, float(t)) for i, t in rows]

    async def created(self, search_ids: Sequence[str]) -> list[float | None]:
        """When each search's state was first stored (None: no state), in one round trip."""
        if not search_ids:
            return []
        return [None if t is None else float(t) for t in await self.redis.zmscore(SEARCH_INDEX, list(search_ids))]

    async def mark_initialised(self) -> None:
        await self.redis.set(SEARCHER_INITIALISED, "1")

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion across searcher instances; expires by itself if its holder dies."""
        return redis_lock(self.redis, SEARCH_LOCK.format(name), self.lock_ttl_s)


def _outbox_id(outbox: Iterable[Mapping[str, Any]]) -> str:
    return ",".join(e["event_id"] for e in outbox)


def _progress(state: SearchState) -> tuple[int, int]:
    return len(state.trials), 0 if state.status == "running" else 1


async def restore(store: SearchStore, states: Iterable[SearchState]) -> int:
    """Write rebuilt states where Redis lacks the search or is behind the log; never overwrite a
    state a live searcher has moved further meanwhile. Returns how many were written."""
    written = 0
    for state in states:
        async with store.lock(state.search_id):
            current = await store.get(state.search_id)
            if current is None or _progress(current) < _progress(state):
                await store.put(state)
                written += 1
    return written
