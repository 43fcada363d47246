"""The model of the uncovered knobs' effect (:mod:`services.searcher.strategies.uncovered`):
g(u, c), a Bayesian linear model of the log effect of each uncovered value and its interactions
with the batch and the cores, with an exact Gaussian posterior; and the expected improvement under
the log-normal belief it gives. Pure numpy/scipy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import norm

from services.domain.space import Space

INTERACT_WITH = ("batch", "cpus")   # roles of the covered knobs whose level changes an uncovered knob's effect
PRIOR_SD_MAIN = 0.3         # log-space sd of a value's main effect before any trial
PRIOR_SD_INTERACT = 0.15    # ... of all interactions together at the partners' extremes
PRIOR_SD_LEVEL = 1.0        # the intercept (the knowledge's scale against the trials')
TREND_SHARE = 0.5           # an ordinal knob's prior: this share of its variance a linear trend over the ranks
LENGTHSCALE = 0.4           # RBF length over an ordinal knob's ranks scaled to [0, 1]
NOISE_SD = 0.05             # log-space misfit of the model at a measured configuration


@dataclass(frozen=True)
class Posterior:
    mean: np.ndarray        # parameters' posterior mean
    cov: np.ndarray         # ... and covariance


class EffectModel:
    """g(u, c): the Bayesian linear model of the uncovered knobs' log effect (module doc)."""

    def __init__(self, space: Space, knobs: Sequence[str]) -> None:
        self.space = space
        self.knobs = tuple(knobs)
        self.cols = [space.names.index(n) for n in self.knobs]
        partners = [getattr(space.roles, r) for r in INTERACT_WITH]      # the space's batch and cores knobs
        self.partners = [space.names.index(n) for n in partners
                         if n in space.names and n not in self.knobs and space.knob(n).kind == "ordinal"
                         and len(space.knob(n).values) > 1]
        self.sizes = [len(space.knob(n).values) for n in self.knobs]
        blocks, self.offsets = [np.array([[PRIOR_SD_LEVEL ** 2]])], []
        pos = 1
        for n, size in zip(self.knobs, self.sizes):
            K = self._kernel(size, space.knob(n).kind)
            self.offsets.append(pos)
            blocks.append(PRIOR_SD_MAIN ** 2 * K)
            # the interactions' prior is shared out, so that together they move a configuration's
            # log value by PRIOR_SD_INTERACT at the partners' extremes however many knobs there are
            share = PRIOR_SD_INTERACT ** 2 / (len(knobs) * max(len(self.partners), 1))
            blocks += [share * K for _ in self.partners]
            pos += size * (1 + len(self.partners))
        self.dim = pos
        prior = np.zeros((pos, pos))
        at = 0
        for b in blocks:
            prior[at:at + len(b), at:at + len(b)] = b
            at += len(b)
        self.prior_cov = prior + 1e-8 * np.eye(pos)

    @staticmethod
    def _kernel(n: int, kind: str) -> np.ndarray:
        if kind == "categorical" or n == 1:
            return np.eye(n)
        x = np.arange(n) / (n - 1)
        rbf = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * LENGTHSCALE ** 2))
        trend = 4.0 * np.outer(x - 0.5, x - 0.5)       # a linear trend over the ranks: 1 at the ends
        return (1.0 - TREND_SHARE) * rbf + TREND_SHARE * trend

    def features(self, rows: np.ndarray) -> np.ndarray:
        """Design matrix of configurations given as value-index rows of the space."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(self.space.knobs))
        n = len(rows)
        out = np.zeros((n, self.dim))
        out[:, 0] = 1.0
        scaled = [2.0 * rows[:, j] / (len(self.space.knobs[j].values) - 1) - 1.0 for j in self.partners]
        ar = np.arange(n)
        for col, size, off in zip(self.cols, self.sizes, self.offsets):
            v = rows[:, col]
            out[ar, off + v] = 1.0
            for p, s in enumerate(scaled, start=1):
                out[ar, off + p * size + v] = s
        return out

    def fit(self, Phi: np.ndarray, r: np.ndarray, noise_sd: np.ndarray) -> Posterior:
        """Exact posterior from residuals ``r`` (log y - log m) at design rows ``Phi``, in the
        function-space form (n trials x n trials solve: cheap for a handful of trials)."""
        S0 = self.prior_cov
        if not len(r):
            return Posterior(np.zeros(self.dim), S0)
        A = Phi @ S0                                   # n x p
        K = A @ Phi.T + np.diag(noise_sd ** 2)
        L = np.linalg.cholesky(K + 1e-10 * np.eye(len(K)))
        W = np.linalg.solve(L, A)                       # L^-1 Phi S0
        mean = W.T @ np.linalg.solve(L, r)
        return Posterior(mean, S0 - W.T @ W)

    @staticmethod
    def predict(post: Posterior, Phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = Phi @ post.mean
        var = np.einsum("ij,jk,ik->i", Phi, post.cov, Phi)
        return mu, np.sqrt(np.maximum(var, 1e-12))


def lognormal_ei(m: np.ndarray, mu: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """E[max(V - best, 0)] for V = m exp(Z), Z ~ N(mu, sd^2) (m > 0)."""
    sd = np.maximum(sd, 1e-9)
    m = np.maximum(m, 1e-300)
    lb = np.log(max(best, 1e-300) / m)
    return m * np.exp(mu + sd ** 2 / 2) * norm.cdf((mu + sd ** 2 - lb) / sd) - best * norm.cdf((mu - lb) / sd)


def knob_effects(model: EffectModel, post: Posterior, at_row: np.ndarray) -> dict[str, list[float]]:
    """Per uncovered knob: its values' estimated factors at the configuration ``at_row`` (the
    other knobs held there), relative to its best value (1 at the best)."""
    out = {}
    for name, col, size in zip(model.knobs, model.cols, model.sizes):
        rows = np.tile(at_row, (size, 1))
        rows[:, col] = np.arange(size)
        mu, _ = model.predict(post, model.features(rows))
        out[name] = list(np.exp(mu - mu.max()))
    return out
