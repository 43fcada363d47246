"""`prior`: no learning at all. Rank every configuration once by the KOP curves weighted by
each KOP's time share, and try them in that order (the baseline that shows how much the offline
curves alone know)."""

from __future__ import annotations

import numpy as np

from services.domain.objectives import P99, RPS_PER_USD, USD_FOR_LOAD
from services.domain.space import Config
from services.searcher.strategies.base import Strategy, StrategyError


class PriorOrder(Strategy):
    """Under another objective than RPS/$, the curves' RPS/$ read as that objective
    (``Objective.from_rps_per_usd``: the same order for a load's cost; latency = batch / RPS)."""
    name = "prior"
    offline = frozenset({RPS_PER_USD, USD_FOR_LOAD, P99})
    needs_offline = True

    def ask(self) -> Config | None:
        k = self.ctx.knowledge
        if k is None:
            raise StrategyError("the prior strategy needs offline knowledge (KOP curves)")
        if not self.ctx.kops:
            raise StrategyError("the prior strategy ranks configurations by the model's KOP curves, and this model "
                                "has no KOPs (no operator profile): use falcon, gp-ei, tpe or random")
        grid_score = k.kop_prior(self.ctx.kop_shares())
        cand = self.pool()
        if not len(cand):
            return None
        score = np.zeros(len(cand)) if grid_score is None else grid_score[k.on_grid(cand)]
        if grid_score is not None:
            score = self.expected(score, cand)
            if score is None:
                raise StrategyError(f"the prior strategy cannot rank by {self.ctx.objective.name} without prices")
        return self.ctx.space.config_at(int(cand[int(np.argsort(-score, kind="stable")[0])]))
