"""Random search without replacement: the honest baseline."""

from __future__ import annotations

import random

from services.domain.space import Config
from services.searcher.strategies.base import Strategy


class RandomSearch(Strategy):
    name = "random"

    def ask(self) -> Config | None:
        space = self.ctx.space
        if space.rules:                                  # only allowed configurations
            cand = self.pool()
            return self.random_untried(cand) if len(cand) else None
        if len(self.tried) >= space.size:
            return None
        rng = random.Random(f"{self.ctx.seed}:{len(self.history)}")
        if len(self.tried) < space.size // 2:           # rejection sampling is cheap while sparse
            while True:
                cfg = space.config_at(rng.randrange(space.size))
                if space.key(cfg) not in self.tried:
                    return cfg
        untried = [c for c in space.configs() if space.key(c) not in self.tried]
        return rng.choice(untried)
