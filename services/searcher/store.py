"""Redis repository of search states (the searcher's only state)."""

from __future__ import annotations

import time
from typing import Any

import msgpack
from redis.asyncio import Redis

from services.searcher.search import SearchState

PREFIX = "falcon:search:"
INDEX = "falcon:searches"          # sorted set: search id -> creation time
OPEN = "falcon:searches:open"      # set of running search ids


class SearchStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, search_id: str) -> SearchState | None:
        raw = await self.redis.get(PREFIX + search_id)
        return None if raw is None else SearchState.from_dict(msgpack.unpackb(raw, raw=False))

    async def get_raw(self, search_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(PREFIX + search_id)
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    async def put(self, state: SearchState) -> None:
        """One MULTI/EXEC: the state, its outbox and the indexes change together or not at all."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(PREFIX + state.search_id, msgpack.packb(state.to_dict(), use_bin_type=True))
            pipe.zadd(INDEX, {state.search_id: time.time()}, nx=True)
            if state.status == "running":
                pipe.sadd(OPEN, state.search_id)
            else:
                pipe.srem(OPEN, state.search_id)
            await pipe.execute()

    async def list_ids(self, limit: int = 50) -> list[str]:
        ids = await self.redis.zrevrange(INDEX, 0, limit - 1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]
