"""Redis repository of search states (the searcher's only state), with a per-search lock so
that two searcher instances never decide for the same search at once (e.g. while Kafka moves a
partition from one to the other)."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import Any, Iterable, Mapping

import msgpack
from redis.asyncio import Redis

from services.common.redis_lock import redis_lock
from services.searcher.search import SearchState

PREFIX = "falcon:search:"
INDEX = "falcon:searches"          # sorted set: search id -> creation time
OPEN = "falcon:searches:open"      # set of running search ids
LOCK = "falcon:lock:search:"
INITIALISED = "falcon:searcher:initialised"   # absent = Redis is new or was wiped: rebuild from the log


class SearchStore:
    def __init__(self, redis: Redis, lock_ttl_s: float = 10.0) -> None:
        self.redis = redis
        self.lock_ttl_s = lock_ttl_s

    async def get(self, search_id: str) -> SearchState | None:
        raw = await self.redis.get(PREFIX + search_id)
        return None if raw is None else SearchState.from_dict(msgpack.unpackb(raw, raw=False))

    async def put(self, *states: SearchState) -> None:
        """One MULTI/EXEC: states, their outboxes and the indexes change together or not at all."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for state in states:
                pipe.set(PREFIX + state.search_id, msgpack.packb(state.to_dict(), use_bin_type=True))
                pipe.zadd(INDEX, {state.search_id: time.time()}, nx=True)
                if state.status == "running":
                    pipe.sadd(OPEN, state.search_id)
                else:
                    pipe.srem(OPEN, state.search_id)
            await pipe.execute()

    async def mark_published(self, search_id: str, outbox: Iterable[Mapping[str, Any]]) -> None:
        """Record that the outbox reached the broker: a later duplicate need not re-publish it."""
        await self.redis.set(PREFIX + search_id + ":published", _outbox_id(outbox))

    async def is_published(self, search_id: str, outbox: Iterable[Mapping[str, Any]]) -> bool:
        return (await self.redis.get(PREFIX + search_id + ":published")) == _outbox_id(outbox).encode()

    async def list_ids(self, limit: int = 50) -> list[str]:
        ids = await self.redis.zrevrange(INDEX, 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    async def mark_initialised(self) -> None:
        await self.redis.set(INITIALISED, "1")

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Mutual exclusion across searcher instances; expires by itself if its holder dies."""
        return redis_lock(self.redis, LOCK + name, self.lock_ttl_s)


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
