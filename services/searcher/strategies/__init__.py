"""Search strategies behind one ask/tell interface; the same objects run in-process (bench)
and behind Kafka (searcher service)."""

from __future__ import annotations

from services.searcher.strategies.base import SearchContext, Strategy, StrategyError
from services.searcher.strategies.cost_model import CostModelStrategy
from services.searcher.strategies.design import Design
from services.searcher.strategies.falcon import (
    Falcon,
    FalconNoBo,
    FalconNoPruning,
    FalconNoTrees,
)
from services.searcher.strategies.gp_ei import GpEi
from services.searcher.strategies.morphling import Morphling
from services.searcher.strategies.prior import PriorOrder
from services.searcher.strategies.random_search import RandomSearch
from services.searcher.strategies.tpe import Tpe

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    RandomSearch, PriorOrder, GpEi, Tpe, Morphling, CostModelStrategy, Falcon, FalconNoTrees, FalconNoBo,
    FalconNoPruning, Design)}


def make_strategy(name: str, ctx: SearchContext) -> Strategy:
    try:
        return STRATEGIES[name](ctx)
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r} (known: {sorted(STRATEGIES)})") from None


__all__ = ["STRATEGIES", "SearchContext", "Strategy", "StrategyError", "make_strategy"]
