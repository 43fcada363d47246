"""Redis coordination shared by the services: a lock (SET NX with an expiry, so a dead holder
frees it by itself, and a compare-and-delete release, so a holder never frees someone else's
lock), and a run-once initialisation guarded by it."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

from redis.asyncio import Redis

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@asynccontextmanager
async def redis_lock(redis: Redis, key: str, ttl_s: float) -> AsyncIterator[None]:
    token, delay = uuid.uuid4().hex, 0.02
    while not await redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    try:
        yield
    finally:
        await redis.eval(_RELEASE, 1, key, token)


async def initialise_once(redis: Redis, marker: str, restore: Callable[[], Awaitable[int]],
                          lock_ttl_s: float = 60.0) -> int | None:
    """Run ``restore`` once for this Redis: skipped while ``marker`` exists (it is absent when
    Redis is new or was wiped), serialised across processes, and the marker set after it.
    Returns what ``restore`` returned, or None when nothing had to be done."""
    if await redis.exists(marker):
        return None
    async with redis_lock(redis, f"falcon:lock:init:{marker}", lock_ttl_s):
        if await redis.exists(marker):
            return None
        n = await restore()
        await redis.set(marker, "1")
        return n
