"""Search strategies behind one ask/tell interface; the same objects run in-process (bench)
and behind Kafka (searcher service)."""

from __future__ import annotations

from services.searcher.strategies.base import SearchContext, Strategy, StrategyError
from services.searcher.strategies.random_search import RandomSearch

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (RandomSearch,)}


def make_strategy(name: str, ctx: SearchContext) -> Strategy:
    try:
        return STRATEGIES[name](ctx)
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r} (known: {sorted(STRATEGIES)})") from None


__all__ = ["STRATEGIES", "SearchContext", "Strategy", "StrategyError", "make_strategy"]
