"""Search strategies behind one ask/tell interface; the same objects run in-process (bench)
and behind Kafka (searcher service)."""

from __future__ import annotations

from dataclasses import replace

from services.domain.objectives import Objective
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
    """The strategy for a search. For an objective its offline knowledge does not predict, a
    strategy gets no knowledge (falcon: plain GP-EI), and one that has nothing else to go on
    (prior, cost-model) is refused."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r} (known: {sorted(STRATEGIES)})") from None
    if ctx.objective.name not in cls.offline:
        if cls.needs_offline:
            raise StrategyError(f"the {name} strategy ranks configurations by what its offline knowledge predicts "
                                f"({', '.join(sorted(cls.offline))}), which says nothing of objective "
                                f"{ctx.objective.name}: use falcon, gp-ei, tpe or random")
        ctx = replace(ctx, knowledge=None)
    return cls(ctx)


def knowledge_notice(name: str, objective: Objective) -> str | None:
    """What a search under ``objective`` should tell its user about the offline knowledge: none
    behind the objective (the strategy ran on its online model), or how it was carried over."""
    cls = STRATEGIES.get(name)
    if cls is None or not cls.offline:
        return None           # a strategy that never reads offline knowledge
    if objective.name not in cls.offline:
        online = "plain GP-EI after 3 random trials" if cls.name.startswith("falcon") else "random trials"
        return (f"no offline knowledge for objective {objective.name}: the offline curves, tables and cost model "
                f"predict RPS/$, which says nothing of it, so {name} searched on its online model only ({online})")
    if objective.knowledge == "transformed":
        return f"objective {objective.name}: the offline knowledge predicts RPS/$, {objective.knowledge_note()}"
    return None


def missing_knowledge_notice(name: str, objective: Objective, why: str) -> str | None:
    """What a search that began without the offline knowledge of its space should tell its user
    (None for a strategy that never reads it, or an objective it says nothing of)."""
    cls = STRATEGIES.get(name)
    if cls is None or not cls.offline or objective.name not in cls.offline:
        return None
    online = "plain GP-EI" if cls.name.startswith("falcon") else "its online model"
    return f"searched without offline knowledge for this space: {why}, so {name} began as {online}"


__all__ = ["STRATEGIES", "SearchContext", "Strategy", "StrategyError", "knowledge_notice", "make_strategy",
           "missing_knowledge_notice"]
