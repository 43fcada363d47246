"""`prior`: no learning at all. Rank every configuration once by the KOP curves weighted by
each KOP's time share, and try them in that order (the baseline that shows how much the offline
curves alone know)."""

from __future__ import annotations

import numpy as np

from services.common.space import Config
from services.searcher.strategies.base import Strategy, StrategyError


class PriorOrder(Strategy):
    name = "prior"

    def ask(self) -> Config | None:
        k = self.ctx.knowledge
        if k is None:
            raise StrategyError("the prior strategy needs offline knowledge (KOP curves)")
        score = k.kop_prior(self.ctx.kop_shares())
        if score is None:
            score = np.zeros(self.ctx.space.size)
        mask = self.untried_mask()
        if not mask.any():
            return None
        order = np.argsort(-score, kind="stable")
        return self.ctx.space.config_at(int(next(i for i in order if mask[i])))
