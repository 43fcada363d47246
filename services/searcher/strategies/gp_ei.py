"""`gp-ei`: plain Bayesian optimisation over the whole space, no offline knowledge: a GP on the
configuration encoding and expected improvement over the untried configurations. Starts from a
few random configurations (the GP needs some data)."""

from __future__ import annotations

import numpy as np

from services.domain.space import Config
from services.searcher.strategies.base import LOCAL_SEEDS, Strategy
from services.searcher.strategies.gp import expected_improvement, fit_gp

N_INITIAL = 3


class GpEi(Strategy):
    name = "gp-ei"

    def ask(self) -> Config | None:
        space = self.ctx.space
        idx, y, cv = self.observed()
        cand = self.pool(idx[np.argsort(-y, kind="stable")[:LOCAL_SEEDS]])
        if not len(cand):
            return None
        if len(y) < N_INITIAL:
            return self.random_untried(self.untried_mask() if self.exhaustive else cand)
        scale = float(np.abs(y).max()) or 1.0
        gp = fit_gp(space.encode_indices(idx), y / scale - (y / scale).mean(), seed=self.ctx.seed,
                    noise=cv * np.abs(y) / scale)
        mu, sd = gp.predict(space.encode_indices(cand), return_std=True)
        ei = self.per_usd(expected_improvement(mu + (y / scale).mean(), sd, float((y / scale).max())), cand)
        feasible = self.feasibility(cand)
        if feasible is not None:
            ei = ei * feasible
        return space.config_at(int(cand[int(np.argmax(ei))]))
