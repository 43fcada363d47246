"""`gp-ei`: plain Bayesian optimisation over the whole space, no offline knowledge: a GP on the
configuration encoding and expected improvement over the untried configurations. Starts from a
few random configurations (the GP needs some data)."""

from __future__ import annotations

import numpy as np

from services.common.space import Config
from services.searcher.strategies.base import Strategy
from services.searcher.strategies.gp import expected_improvement, fit_gp

N_INITIAL = 3


class GpEi(Strategy):
    name = "gp-ei"

    def ask(self) -> Config | None:
        space = self.ctx.space
        mask = self.untried_mask()
        if not mask.any():
            return None
        idx, y, cv = self.observed()
        if len(y) < N_INITIAL:
            return self.random_untried(mask)
        X = np.array([space.encode(space.config_at(int(i))) for i in idx])
        scale = float(np.abs(y).max()) or 1.0
        gp = fit_gp(X, y / scale - (y / scale).mean(), seed=self.ctx.seed, noise=cv * np.abs(y) / scale)
        cand = np.flatnonzero(mask)
        Xc = np.array([space.encode(space.config_at(int(i))) for i in cand])
        mu, sd = gp.predict(Xc, return_std=True)
        ei = expected_improvement(mu + (y / scale).mean(), sd, float((y / scale).max()))
        return space.config_at(int(cand[int(np.argmax(ei))]))
