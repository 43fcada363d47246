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
from typing import Sequence

import numpy as np
from scipy.stats import norm

from services.domain.objectives import P99, RPS_PER_USD, USD_FOR_LOAD
from services.domain.pricing import PricingError
from services.domain.space import Config
from services.knowledge.cost_model import CostModelError
from services.knowledge.hardware import HardwareError
from services.knowledge.transfer import uncovered_ratio
from services.searcher.strategies import uncovered
from services.searcher.strategies.base import LOCAL_SEEDS, Observed, SearchContext, Strategy
from services.searcher.strategies.cost_model import cost_model_for
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
CONSTRAINT_SIGMA_PRIOR = 0.35   # log-space error of the experts' scaled RPS/$ before 3 trials measured it
CONSTRAINT_SIGMA_MIN = 0.1


class Falcon(Strategy):
    name = "falcon"
    offline = frozenset({RPS_PER_USD, USD_FOR_LOAD, P99})

    def __init__(self, ctx: SearchContext, *, use_trees: bool = True, use_bo: bool = True,
                 prune: bool = True) -> None:
        super().__init__(ctx)
        self.use_trees, self.use_bo, self.prune = use_trees, use_bo, prune

    # -- surrogate ------------------------------------------------------------------------------
    def experts(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(F: experts x grid configurations, prior weights) from the offline knowledge."""
        k = self.ctx.knowledge
        if k is None:
            return None
        if self.expected(np.ones((1, 1)), np.zeros(1, dtype=np.int64)) is None:
            return None         # the objective cannot be read off RPS/$ here (e.g. a latency without prices)
        rows = list(k.sources.values())
        kop = k.kop_prior(self.ctx.kop_shares())
        if kop is not None:
            rows.append(kop)
        if not rows:
            return None
        prior = [1.0 / len(rows)] * len(rows)      # no expert is trusted more than another before the evidence
        F, prior = np.array(rows), np.array(prior)
        if SMOOTHING:       # every expert at every smoothing width; the evidence picks the width
            F = np.vstack([F if w == 0 else k.smooth(F, w) for w in SMOOTHING])
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
    def select_region(self, mu: np.ndarray, cols: "Columns", obs: Observed) -> np.ndarray | None:
        """The region (a mask over ``cols``) of the leaf MCTS descends to; None without trees."""
        k = self.ctx.knowledge
        roots = [k.tree(op, None if self.prune else k.grid.names)
                 for op, _ in self.ctx.kop_shares() if k is not None and op in k.operators]
        if not roots or k is None:
            return None
        c = UCB_C * (float(np.ptp(mu)) or 1.0)
        on_grid, tried_on_grid, y = k.on_grid(cols.indices), k.on_grid(obs.indices), obs.values

        def inside(node) -> np.ndarray:  # noqa: ANN001
            return np.isin(on_grid, node.members)

        def stats(node) -> tuple[float, int]:  # noqa: ANN001
            tried = np.isin(tried_on_grid, node.members)
            n = int(tried.sum())
            return (N0 * float(mu[inside(node)].mean()) + float(y[tried].sum())) / (N0 + n), n

        def pick(nodes, n_parent):  # noqa: ANN001, ANN202
            best, best_u = None, -np.inf
            for node in nodes:
                if not (cols.candidate & inside(node)).any():
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
        return None if node is None else inside(node)

    # -- belief: the surrogate, refined by a GP on its residuals --------------------------------
    def belief(self, experts: tuple[np.ndarray, np.ndarray] | None, obs: Observed, cols: "Columns") -> "Belief":
        """Mean (and, once BO runs, sd) of the value of every configuration in ``cols``."""
        k = self.ctx.knowledge
        _, y, cv = obs
        at = cols.observed
        if experts is not None and k is not None:
            F, prior = experts
            F = F[:, k.on_grid(cols.indices)] * self._uncovered_ratio(cols.indices)[None, :]
            F = self.expected(F, cols.indices)      # the experts' RPS/$ as the objective (up to scale)
            if self.ctx.objective.knowledge == "transformed" and len(y):
                # put each expert on the trials' scale first (a cost per hour is no 0-1 table value), so
                # the surrogate's ridge towards a scale of 1 is a prior, not a pull off the data
                fo = F[:, at]
                F = F * np.clip((fo @ y) / np.maximum((fo * fo).sum(1), 1e-300), 1e-12, None)[:, None]
            mean, null_weight = self.surrogate(F, prior, at, y, cv)
        else:
            mean, null_weight = np.full(len(cols.indices), y.mean()), 1.0
        measured = len(y) - self.n_fantasies          # fantasies (batch proposals) come last
        if not (self.use_bo and measured >= (MIN_BO_TRIALS if experts is not None else 1)):
            return Belief(mean, np.zeros(len(cols.indices)), bo=False)
        # the cut-off's pruning is a belief from the KOP curves: hold it while the offline
        # knowledge explains the trials better than "nothing is known" does
        X = self._encoded(cols.indices, prune=self.prune and null_weight < 0.5)
        scale = float(np.abs(y).max()) or 1.0
        gp = fit_gp(X[at], (y - mean[at]) / scale, seed=self.ctx.seed, noise=cv * np.abs(y) / scale)
        r_mu, r_sd = gp.predict(X, return_std=True)
        return Belief(mean + scale * r_mu, scale * r_sd, bo=True)

    # -- region: where the tree search says to look ------------------------------------------------
    def candidates(self, mu: np.ndarray, obs: Observed, cols: "Columns") -> np.ndarray:
        """The proposable configurations of the region MCTS selects (all of them without trees)."""
        candidates = cols.candidate.copy()
        if self.use_trees:
            region = self.select_region(mu, cols, obs)
            if region is not None and (region & candidates).any():
                candidates &= region
        return candidates

    # -- ask ------------------------------------------------------------------------------------
    def ask(self) -> Config | None:
        obs = self.observed()
        experts = self.experts()
        knobs = uncovered.applies(self, experts)
        if knobs:          # knobs no knowledge covers: learnt online (strategies.uncovered)
            return uncovered.ask(self, experts, knobs)
        if self.exhaustive:
            untried = self.untried_mask()
            if not untried.any():
                return None
            if experts is None and len(obs.values) < N_RANDOM_WITHOUT_KNOWLEDGE:
                return self.random_untried(untried)
            return self._decide(experts, obs, Columns.everything(untried, obs))
        # a large space: score a sample and the neighbours of the best trials, then the
        # neighbours of the best-scored candidates (sampling plus local moves)
        best_tried = obs.indices[np.argsort(-obs.values, kind="stable")[:LOCAL_SEEDS]]
        pool = self.pool(best_tried)
        if not len(pool):
            return None
        if experts is None and len(obs.values) < N_RANDOM_WITHOUT_KNOWLEDGE:
            return self.random_untried(pool)
        cols = Columns.of(obs, pool)
        score, _ = self._score(experts, obs, cols)
        ranked = cols.indices[np.argsort(-np.where(cols.candidate, score, -np.inf), kind="stable")[:LOCAL_SEEDS]]
        local = np.setdiff1d(np.concatenate([self.ctx.space.neighbours(int(i)) for i in ranked]),
                             np.concatenate([pool, obs.indices, self.tried_indices()]))
        return self._decide(experts, obs, Columns.of(obs, np.concatenate([pool, local])))

    def _score(self, experts: tuple[np.ndarray, np.ndarray] | None, obs: Observed,
               cols: "Columns") -> tuple[np.ndarray, "Belief"]:
        """(each column's score, the belief it comes from): EI of the next measurement once BO
        runs (else the mean), times its chance to run at all when trials have failed; sets the
        convergence flag."""
        belief = self.belief(experts, obs, cols)
        if belief.bo:
            score = self.per_usd(next_measurement_ei(belief, obs), cols.indices)
            self.converged = has_converged(obs.values[:len(obs.values) - self.n_fantasies],
                                           float(np.max(np.where(cols.candidate, score, 0.0))))
        else:
            score = belief.mean
        for chance in (self.feasibility(cols.indices), self.constraint_chance(experts, obs, cols)):
            if chance is not None:
                score = score * chance if belief.bo else score - (1.0 - chance) * float(np.ptp(score) or 1.0)
        return score, belief

    def constraint_chance(self, experts: tuple[np.ndarray, np.ndarray] | None, obs: Observed,
                          cols: "Columns") -> np.ndarray | None:
        """Chance that each configuration meets the constraints that are a matter of throughput
        (a ceiling on $ per million requests, a minimum RPS), from the offline experts' RPS/$
        (their consensus, scaled to the requests per $ the trials measured; log-normal error of
        the trials' spread around it). None without such a constraint, experts, prices or a
        trial that measured RPS (the offline data's scale is unknown until then)."""
        c, k = self.ctx.constraints, self.ctx.knowledge
        if c is None or (c.max_usd_per_million is None and c.min_rps is None) or experts is None or k is None:
            return None
        _, price = self.batch_and_price(cols.indices)
        rps = np.array([r if r is not None else np.nan
                        for (_, v), r in zip(self.history, self.rps) if v is not None], dtype=float)
        if price is None or not np.isfinite(rps).any():
            return None
        F, prior = experts
        f = (prior @ F)[k.on_grid(cols.indices)] * self._uncovered_ratio(cols.indices)
        at = cols.observed
        measured = rps * 3600.0 / price[at]
        use = np.isfinite(measured) & (measured > 0) & (f[at] > 0)
        if not use.any():
            return None
        resid = np.log(measured[use]) - np.log(f[at][use])
        sigma = max(CONSTRAINT_SIGMA_MIN, float(resid.std())) if use.sum() >= 3 else CONSTRAINT_SIGMA_PRIOR
        log_pred = np.log(np.maximum(f, 1e-300)) + float(resid.mean())       # requests per $
        chance = np.ones(len(cols.indices))
        if c.max_usd_per_million is not None:    # $ per million = 1e6 / (requests per $)
            chance *= norm.cdf((log_pred - np.log(1e6 / c.max_usd_per_million)) / sigma)
        if c.min_rps is not None:                # RPS = requests per $ x $/h / 3600
            chance *= norm.cdf((log_pred + np.log(price / 3600.0) - np.log(c.min_rps)) / sigma)
        return chance

    def _decide(self, experts: tuple[np.ndarray, np.ndarray] | None, obs: Observed, cols: "Columns") -> Config:
        score, belief = self._score(experts, obs, cols)
        candidates = self.candidates(belief.mean, obs, cols)
        return self.ctx.space.config_at(int(cols.indices[int(np.argmax(np.where(candidates, score, -np.inf)))]))

    def fantasies(self, configs: Sequence[Config]) -> list[float | None]:
        """Kriging believer: what the belief (surrogate + residual GP) expects each configuration
        to measure, given the trials (and fantasies) told so far."""
        obs = self.observed()
        if not configs or (not len(obs.values) and self.ctx.knowledge is None):
            return super().fantasies(configs)
        experts = self.experts()
        if experts is None and not len(obs.values):
            return super().fantasies(configs)
        idx = np.array([self.ctx.space.index(c) for c in configs], dtype=np.int64)
        belief = self.belief(experts, obs, Columns.of(obs, idx))
        return [float(v) for v in belief.mean[len(obs.indices):]]

    def learnt(self) -> list[str]:
        """Per knob no knowledge covers: its estimated effect and the trials behind it."""
        experts = self.experts()
        knobs = uncovered.applies(self, experts)
        return uncovered.explain(self, experts, knobs) if knobs else []

    def predict(self, configs: Sequence[Config]) -> list[float] | None:
        """The offline consensus (every expert at equal weight, as before the first trial), scaled
        to the measurements by one least-squares factor: re-weighting the experts, or a GP on the
        residuals, would fit the very noise the prediction is meant to see through."""
        k, experts = self.ctx.knowledge, self.experts()
        obs = self.observed()
        if k is None or experts is None or not len(obs.values) or not configs:
            return None
        idx = np.array([self.ctx.space.index(c) for c in configs], dtype=np.int64)
        cols = Columns.of(obs, idx)
        F, prior = experts
        F = self.expected(F[:, k.on_grid(cols.indices)] * self._uncovered_ratio(cols.indices)[None, :], cols.indices)
        if F is None:                  # the objective cannot be read off the offline RPS/$
            return None
        consensus = prior @ F
        at = consensus[cols.observed]
        scale = float(at @ obs.values / max(float(at @ at), 1e-12))
        return [float(v) for v in scale * consensus[len(obs.indices):]]

    def _uncovered_ratio(self, indices: np.ndarray) -> np.ndarray:
        """The cost model's word on the knobs no offline table covers (precision, replicas, ...):
        1 everywhere when the offline data covers every knob or the cost model cannot speak."""
        k = self.ctx.knowledge
        if k is None or k.grid is None or k.grid.names == self.ctx.space.names:
            return np.ones(len(indices))
        model = cost_model_for(self, calibrated=False)     # a ratio on one device: its scale cancels
        if model is None:
            return np.ones(len(indices))
        try:
            return uncovered_ratio(self.ctx.space, k.grid, indices, model.predict)
        except (CostModelError, HardwareError, PricingError):
            return np.ones(len(indices))

    def _encoded(self, indices: np.ndarray, prune: bool) -> np.ndarray:
        space, k = self.ctx.space, self.ctx.knowledge
        X = space.encode_indices(indices)
        if prune and k is not None:
            kept = k.kept_knobs([op for op, _ in self.ctx.kop_shares()])
            X = X[:, space.encoded_columns(kept)]
        return X


@dataclass(frozen=True)
class Columns:
    """The configurations one decision scores: every configuration of a small space, or the
    successful trials followed by the candidates of a large one."""
    indices: np.ndarray          # space indices
    candidate: np.ndarray        # may be proposed (allowed, untried)
    observed: np.ndarray         # positions of the successful trials (Observed order) in ``indices``

    @classmethod
    def everything(cls, untried: np.ndarray, obs: Observed) -> "Columns":
        return cls(np.arange(len(untried)), untried, obs.indices)

    @classmethod
    def of(cls, obs: Observed, pool: np.ndarray) -> "Columns":
        n = len(obs.indices)
        return cls(np.concatenate([obs.indices, pool]).astype(np.int64),
                   np.r_[np.zeros(n, dtype=bool), np.ones(len(pool), dtype=bool)], np.arange(n))


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
