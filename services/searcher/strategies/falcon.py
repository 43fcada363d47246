"""`falcon`: Monte-Carlo tree search over per-KOP trees with Bayesian optimisation inside the
chosen region (after Falcon, SoCC'22), on a surrogate that starts from the offline knowledge.

- Surrogate mean: a Bayesian model average of offline "experts" - the KOP-curve landscape
  (KOPs weighted by time share) and every source model's table, each at several smoothing
  widths (a Gaussian kernel over the encoding: the tables are rugged, and the argmax of a rugged
  table is a winner's curse) - each scaled to the observations (ridge towards 1) and weighted by
  how well it predicted the trials so far, from equal prior weights. Before any trial this is the
  offline consensus; each trial re-weights it towards the experts (and smoothness) that resemble
  the new model.
- BO: a GP on the residual (observation - surrogate mean) over the knobs kept by the cut-off
  (pruned knobs had no effect on the KOPs' curves), expected improvement as acquisition.
- MCTS: the KOPs' trees (most time-consuming first) under one virtual root. Each node's value
  mixes its prior (mean surrogate over its members) with the new model's trials inside it
  (eqs. 3-4: V = (n0 V0 + sum y) / (n0 + n)); UCB descends to a leaf, so a region is exploited
  while its trials are good and left for a sibling or another KOP's tree when they are not.
- First trial: the surrogate's best (the offline prior), not a random one; the next ones too
  until MIN_BO_TRIALS trials exist (a GP fitted to one or two points only adds noise).
- With no knowledge for the space or the KOPs (unseen operators): plain GP-EI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.space import Config
from services.searcher.strategies.base import Observed, SearchContext, Strategy
from services.searcher.strategies.gp import expected_improvement, fit_gp

N0 = 2.0                 # pseudo-trials of a node's prior value
UCB_C = 0.25             # exploration, in units of the surrogate's spread
NOISE_FRACTION = 0.1     # expected misfit of a good expert, relative to the observations' scale
N_RANDOM_WITHOUT_KNOWLEDGE = 3
MIN_BO_TRIALS = 3        # a GP's hyper-parameters fitted to 1-2 points are noise: exploit the experts until then
# convergence: the model promises little (best EI under this fraction of the best value) AND the
# trials agree (no improvement for CONVERGED_PATIENCE trials), after at least CONVERGED_MIN_TRIALS
CONVERGED_EI = 1e-3
CONVERGED_PATIENCE = 8
CONVERGED_MIN_TRIALS = 6
NULL_EXPERT = True       # a flat expert: wins the average when every offline expert is wrong
OBSERVED_NOISE = 1.0     # 1: the next trial's EI includes the measurement noise; 0: EI of the noise-free value
SMOOTHING: tuple[float, ...] = (0.0, 0.15, 0.3)   # Gaussian-kernel widths the offline experts are smoothed at


class Falcon(Strategy):
    name = "falcon"

    def __init__(self, ctx: SearchContext, *, use_trees: bool = True, use_bo: bool = True,
                 prune: bool = True) -> None:
        super().__init__(ctx)
        self.use_trees, self.use_bo, self.prune = use_trees, use_bo, prune

    # -- surrogate ------------------------------------------------------------------------------
    def experts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(F: experts x configurations, prior weights) from the offline knowledge."""
        k = self.ctx.knowledge
        if k is None:
            return None
        rows = list(k.sources.values())
        kop = k.kop_prior(self.ctx.kop_shares())
        if kop is not None:
            rows.append(kop)
        if not rows:
            return None
        prior = [1.0 / len(rows)] * len(rows)      # no expert is trusted more than another before the evidence
        F, prior = np.array(rows), np.array(prior)
        if SMOOTHING:       # every expert at every smoothing width; the evidence picks the width
            F = np.vstack([F if w == 0 else F @ k.smoother(w).T for w in SMOOTHING])
            prior = np.tile(prior, len(SMOOTHING)) / len(SMOOTHING)
        return F, prior

    @staticmethod
    def surrogate(F: np.ndarray, prior: np.ndarray, idx: np.ndarray, y: np.ndarray,
                  cv: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """(surrogate mean per configuration, posterior weight of the null model). ``cv``: each
        observation's relative measurement noise; a noisy trial's misfit counts for less (its
        variance is the experts' expected misfit plus the measurement's)."""
        if len(y) == 0:
            return prior @ F, 0.0
        if NULL_EXPERT:     # the null model: "the offline data says nothing about this model"
            F = np.vstack([F, np.full(F.shape[1], float(y.mean()))])
            prior = np.append(prior * len(prior) / (len(prior) + 1), 1.0 / (len(prior) + 1))
        u = np.ones(len(y)) if cv is None else NOISE_FRACTION ** 2 / (NOISE_FRACTION ** 2 + cv ** 2)
        fo = F[:, idx]                                            # experts at the tried configurations
        a = (fo @ (u * y) + 1.0) / ((fo * fo) @ u + 1.0)          # per-expert scale, ridge towards 1
        sse = ((y[None, :] - a[:, None] * fo) ** 2) @ u
        sigma = NOISE_FRACTION * max(float(np.abs(y).max()), 1e-9)
        logw = np.log(prior) - sse / (2 * sigma ** 2)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        return (w * a) @ F, float(w[-1]) if NULL_EXPERT else 0.0

    # -- MCTS -----------------------------------------------------------------------------------
    def select_region(self, mu: np.ndarray, idx: np.ndarray, y: np.ndarray, untried: np.ndarray) -> np.ndarray | None:
        k = self.ctx.knowledge
        roots = [k.tree(op, None if self.prune else self.ctx.space.names)
                 for op, _ in self.ctx.kop_shares() if k is not None and op in k.operators]
        if not roots:
            return None
        c = UCB_C * (float(np.ptp(mu)) or 1.0)

        def stats(node) -> tuple[float, int]:  # noqa: ANN001
            inside = np.isin(idx, node.members)
            n = int(inside.sum())
            return (N0 * float(mu[node.members].mean()) + float(y[inside].sum())) / (N0 + n), n

        def pick(nodes, n_parent):  # noqa: ANN001, ANN202
            best, best_u = None, -np.inf
            for node in nodes:
                if not untried[node.members].any():
                    continue
                v, n = stats(node)
                u = v + c * np.sqrt(np.log(n_parent + 1.0) / (n + 1.0))
                if u > best_u:
                    best, best_u = node, u
            return best

        node = pick(roots, len(y))
        while node is not None and not node.is_leaf:
            child = pick(node.children, stats(node)[1])
            if child is None:
                break
            node = child
        return None if node is None else node.members

    # -- belief: the surrogate, refined by a GP on its residuals --------------------------------
    def belief(self, experts: tuple[np.ndarray, np.ndarray] | None, obs: Observed) -> "Belief":
        """Mean (and, once BO runs, sd) of every configuration's value given the trials."""
        space = self.ctx.space
        idx, y, cv = obs
        if experts is not None:
            mean, null_weight = self.surrogate(*experts, idx, y, cv)
        else:
            mean, null_weight = np.full(space.size, y.mean()), 1.0
        if not (self.use_bo and len(y) >= (MIN_BO_TRIALS if experts is not None else 1)):
            return Belief(mean, np.zeros(space.size), bo=False)
        # the cut-off's pruning is a belief from the KOP curves: hold it while the offline
        # knowledge explains the trials better than "nothing is known" does
        X = self._encoded(prune=self.prune and null_weight < 0.5)
        scale = float(np.abs(y).max()) or 1.0
        gp = fit_gp(X[idx], (y - mean[idx]) / scale, seed=self.ctx.seed, noise=cv * np.abs(y) / scale)
        r_mu, r_sd = gp.predict(X, return_std=True)
        return Belief(mean + scale * r_mu, scale * r_sd, bo=True)

    # -- region: where the tree search says to look ------------------------------------------------
    def candidates(self, mu: np.ndarray, obs: Observed, untried: np.ndarray) -> np.ndarray:
        """The untried configurations of the region MCTS selects (all untried ones without trees)."""
        candidates = untried.copy()
        if self.use_trees:
            region = self.select_region(mu, obs.indices, obs.values, untried)
            if region is not None:
                in_region = np.zeros(self.ctx.space.size, dtype=bool)
                in_region[region] = True
                if (in_region & untried).any():
                    candidates &= in_region
        return candidates

    # -- ask ------------------------------------------------------------------------------------
    def ask(self) -> Config | None:
        untried = self.untried_mask()
        if not untried.any():
            return None
        obs = self.observed()
        experts = self.experts()
        if experts is None and len(obs.values) < N_RANDOM_WITHOUT_KNOWLEDGE:
            return self.random_untried(untried)
        belief = self.belief(experts, obs)
        candidates = self.candidates(belief.mean, obs, untried)
        if belief.bo:
            score = next_measurement_ei(belief, obs)
            self.converged = has_converged(obs.values, float(np.max(np.where(untried, score, 0.0))))
        else:
            score = belief.mean
        return self.ctx.space.config_at(int(np.argmax(np.where(candidates, score, -np.inf))))

    def _encoded(self, prune: bool) -> np.ndarray:
        k = self.ctx.knowledge
        X = k.encoded if k is not None else self.ctx.space.encode_all()
        if prune and k is not None:
            kept = k.kept_knobs([op for op, _ in self.ctx.kop_shares()])
            X = X[:, self.ctx.space.encoded_columns(kept)]
        return X


@dataclass(frozen=True)
class Belief:
    """What the strategy believes of every configuration (space.configs() order)."""
    mean: np.ndarray
    sd: np.ndarray
    bo: bool            # the sd comes from a GP fitted to the trials (else it is zero: no BO yet)


def next_measurement_ei(belief: Belief, obs: Observed) -> np.ndarray:
    """EI of the next *measurement*: it will be as noisy as the runner says measurements are
    (median spread so far), which favours a high mean over a wide posterior."""
    sd_next = np.hypot(belief.sd, OBSERVED_NOISE * float(np.median(obs.stability_cv)) * np.abs(belief.mean))
    return expected_improvement(belief.mean, sd_next, float(obs.values.max()))


def has_converged(values: np.ndarray, best_ei: float) -> bool:
    """The stop rule: the model promises little (best EI under CONVERGED_EI of the best value)
    and the trials agree (no improvement for CONVERGED_PATIENCE trials)."""
    since_best = len(values) - 1 - int(np.argmax(values))
    return (len(values) >= CONVERGED_MIN_TRIALS and since_best >= CONVERGED_PATIENCE
            and best_ei < CONVERGED_EI * max(abs(float(values.max())), 1e-12))


class FalconNoTrees(Falcon):
    """Ablation: no trees - BO on the same surrogate over the whole space."""
    name = "falcon-no-trees"

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx, use_trees=False)


class FalconNoBo(Falcon):
    """Ablation: trees without BO - the best surrogate mean inside the selected region."""
    name = "falcon-no-bo"

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx, use_bo=False)


class FalconNoPruning(Falcon):
    """Ablation: BO and trees over every knob (no cut-off pruning)."""
    name = "falcon-no-pruning"

    def __init__(self, ctx: SearchContext) -> None:
        super().__init__(ctx, prune=False)
