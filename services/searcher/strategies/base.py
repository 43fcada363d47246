"""The strategy interface: ask for the next configuration, tell what it measured.

Strategies are rebuilt from a search's stored history (``tell`` every past trial, then ``ask``),
so a searcher restarted from Redis decides exactly what it would have decided; an ``ask`` must
therefore be a deterministic function of (context, the tells so far)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, Sequence

import numpy as np

from services.domain.objectives import RPS_PER_USD, Objective
from services.domain.pricing import PricingError
from services.domain.space import Config, Space
from services.domain.spec import Constraints
from services.knowledge import Knowledge


class StrategyError(ValueError):
    pass


@dataclass(frozen=True)
class SearchContext:
    space: Space
    seed: int = 0
    kops: tuple[str, ...] = ()
    operators: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    knowledge: Knowledge | None = None     # what the offline data says about this space, when anything
    hourly: Callable[[Mapping[str, Any]], float] | None = None   # $ per hour of a configuration (the spec's prices)
    objective: Objective = field(default_factory=Objective)       # what the told values are (higher is better)
    constraints: Constraints | None = None       # what a recommendation must meet (told values already count them)
    cost_aware: bool = False      # weigh the acquisition per $ of the trial (strategies with an acquisition)

    def kop_shares(self) -> list[tuple[str, float]]:
        """(KOP, time share), most time-consuming first."""
        share = {str(o["op"]): float(o["time_share"]) for o in self.operators}
        return sorted(((k, share.get(k, 0.0)) for k in self.kops), key=lambda kv: -kv[1])


class Observed(NamedTuple):
    """The successful trials, in the order they were told."""
    indices: np.ndarray         # configuration indices (space.configs() order)
    values: np.ndarray
    stability_cv: np.ndarray    # each measurement's relative spread (0 where none was reported)


EXHAUSTIVE_LIMIT = 50_000     # spaces up to this many configurations are scored whole
SAMPLE_SIZE = 2048            # larger ones: this many configurations drawn per decision ...
LOCAL_SEEDS = 8               # ... plus the neighbours of this many of the best ones
FEASIBLE_PRIOR = 0.95         # chance that an untried configuration far from any trial runs
FEASIBLE_PSEUDO = 0.5         # weight of that prior against the trials nearby
FEASIBLE_WIDTH = 0.25         # Gaussian kernel width (encoding units) of "nearby" for failures
FAILURE_WEIGHT = 4.0          # a failure's vote against the ones that ran: a neighbour of a lone failure ~0.2


class Strategy(ABC):
    """Strategies see the space through :meth:`pool`: every untried allowed configuration when
    the space is small (scored exhaustively), else a sample plus local moves around the best
    configurations, so a decision costs the same in a space of 10^3 or 10^6."""
    name: ClassVar[str]
    converged: bool = False   # set by ask() when the strategy's model says further trials are unlikely to help
    # the objectives whose values this strategy takes from the offline knowledge (KOP curves, source
    # tables, the cost model: they predict RPS/$); for any other objective it searches without it
    offline: ClassVar[frozenset[str]] = frozenset()
    needs_offline: ClassVar[bool] = False     # nothing to search with for an objective outside ``offline``

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.history: list[tuple[Config, float | None]] = []
        self.stability_cv: list[float | None] = []    # per trial: the measurement's relative spread, if known
        self.rps: list[float | None] = []             # per trial: the measured RPS, if known
        self.tried: set[str] = set()
        self.in_flight: list[Config] = []   # proposed, not measured yet, no fantasy value (see ask_batch)
        self.n_fantasies = 0                 # history entries that are fantasised values, not measurements

    def tell(self, config: Mapping[str, Any], value: float | None, stability_cv: float | None = None,
             rps: float | None = None) -> None:
        """Record a finished trial (value None: the trial failed): ``value`` is the search's
        objective, higher is better. ``stability_cv``: the objective's relative measurement spread
        when known; ``rps``: the measured throughput (what a cost model calibrates on)."""
        c = self.ctx.space.canonical(config)
        self.history.append((c, value))
        cv = stability_cv
        self.stability_cv.append(None if cv is None or not np.isfinite(cv) else max(float(cv), 0.0))
        self.tried.add(self.ctx.space.key(c))
        self.rps.append(None if rps is None or not np.isfinite(rps) else float(rps))

    @abstractmethod
    def ask(self) -> Config | None:
        """The next configuration to try, never one already tried; None when nothing is left."""

    def learnt(self) -> list[str]:
        """What the search learnt that the user should read with its recommendation (falcon: the
        effect of each knob no offline knowledge covers, and on how many trials); none by default."""
        return []

    def predict(self, configs: Sequence[Mapping[str, Any]]) -> list[float] | None:
        """What the strategy's model expects each configuration to measure, from what it knew
        before the search and the trials so far (None: no model beyond the measurements). A noisy
        search's recommendation shrinks each measurement towards it."""
        return None

    # -- batches: several trials in flight -------------------------------------------------------
    def ask_batch(self, n: int, pending: Sequence[Mapping[str, Any]] = ()) -> list[Config]:
        """Up to ``n`` distinct configurations to try while the ``pending`` ones are measured.

        Every in-flight configuration, and every one proposed here, is told a fantasised value
        (:meth:`fantasies`: the model's own prediction, the "kriging believer") before the next
        ask, so the model is as sure there as after a measurement and the next proposal goes
        where it still expects something: a jointly informative batch, not n copies of one idea.
        Deterministic given (context, tells, pending), like :meth:`ask`. ``converged`` is the
        first ask's verdict (the one with only the pending trials fantasised)."""
        space = self.ctx.space
        pending = [space.canonical(c) for c in pending]
        for c, v in zip(pending, self.fantasies(pending)):
            self._believe(c, v)
        out: list[Config] = []
        converged = None
        for _ in range(n):
            c = self.ask()
            converged = self.converged if converged is None else converged
            if c is None:
                break
            out.append(c)
            if len(out) < n:
                self._believe(c, self.fantasies([c])[0])
        self.converged = bool(converged)
        return out

    def fantasies(self, configs: Sequence[Config]) -> list[float | None]:
        """What each in-flight configuration is believed to measure; the default is the
        "constant liar" (the mean of the measurements so far; None before any), for strategies
        without a model of their own."""
        measured = self.history[:len(self.history) - self.n_fantasies]     # fantasies are told last
        vals = [v for _, v in measured if v is not None]
        lie = float(np.mean(vals)) if vals else None
        return [lie] * len(configs)

    def _believe(self, config: Config, value: float | None) -> None:
        """Tell a fantasised value (None: only keep the configuration from being proposed)."""
        if value is None:
            self.in_flight.append(config)
            self.tried.add(self.ctx.space.key(config))
            return
        self.tell(config, value, stability_cv=0.0)
        self.n_fantasies += 1

    def expected(self, f: np.ndarray, indices: np.ndarray) -> np.ndarray | None:
        """Offline predictions of RPS/$ at configurations ``indices`` (the columns of ``f``) as
        predictions of the search's objective, up to scale (``Objective.from_rps_per_usd``); None
        when the objective cannot be had from RPS/$."""
        obj = self.ctx.objective
        if obj.name == RPS_PER_USD:
            return f
        batch, price = self.batch_and_price(indices)
        return obj.from_rps_per_usd(f, batch, price)

    def batch_and_price(self, indices: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per configuration: its batch size (None without a batch knob) and $/hour (None without
        prices; a configuration the catalogue cannot price gets the median price)."""
        space = self.ctx.space
        cache = self.__dict__.setdefault("_batch_price", {})
        todo = [int(i) for i in indices if int(i) not in cache]
        for i in todo:
            c = space.config_at(i)
            b = c.get(space.roles.batch)        # the space's batch knob (its roles)
            try:
                p = float(self.ctx.hourly(c)) if self.ctx.hourly is not None else np.nan
            except PricingError:
                p = np.nan
            cache[i] = (float(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else 1.0, p)
        pairs = np.array([cache[int(i)] for i in indices], dtype=float).reshape(-1, 2)
        batch = pairs[:, 0] if space.roles.batch in space.names else None
        if self.ctx.hourly is None or np.isnan(pairs[:, 1]).all():
            return batch, None
        price = pairs[:, 1]
        return batch, np.where(np.isnan(price), np.nanmedian(price), price)

    def observed(self) -> Observed:
        """The trials that succeeded: indices, values and spreads."""
        ok = [(self.ctx.space.index(c), v, n or 0.0)
              for (c, v), n in zip(self.history, self.stability_cv) if v is not None]
        return Observed(np.array([i for i, _, _ in ok], dtype=int), np.array([v for _, v, _ in ok], dtype=float),
                        np.array([n for _, _, n in ok], dtype=float))

    def random_untried(self, untried: np.ndarray) -> Config:
        """A random untried configuration (``untried``: a mask over the space, or the pool's
        indices), the same for the same seed and number of tells (so a rebuilt strategy asks
        what the original asked)."""
        salt = f":{len(self.in_flight)}" if self.in_flight else ""
        rng = random.Random(f"{self.ctx.seed}:{len(self.history)}{salt}")
        choices = np.flatnonzero(untried) if untried.dtype == bool else untried
        return self.ctx.space.config_at(rng.choice(choices.tolist()))

    @property
    def exhaustive(self) -> bool:
        return self.ctx.space.size <= EXHAUSTIVE_LIMIT

    def _taken(self) -> list[Config]:
        """Configurations measured, fantasised or in flight: none is proposed again."""
        return [*(c for c, _ in self.history), *self.in_flight]

    def tried_indices(self) -> np.ndarray:
        """Space indices of :meth:`_taken`."""
        return np.array([self.ctx.space.index(c) for c in self._taken()], dtype=np.int64)

    def pool(self, seeds: Sequence[int] = ()) -> np.ndarray:
        """Untried allowed configurations to score: all of them in a small space; in a large
        one SAMPLE_SIZE drawn at random (seeded by the seed and the trial count) plus the
        neighbours (one knob one step) of ``seeds``."""
        space = self.ctx.space
        if self.exhaustive:
            return np.flatnonzero(self.untried_mask())
        rng = np.random.default_rng([self.ctx.seed, len(self.history) + len(self.in_flight)])
        parts = [space.sample(rng, SAMPLE_SIZE), *(space.neighbours(int(i)) for i in seeds)]
        cand = np.unique(np.concatenate(parts))
        return cand[~np.isin(cand, self.tried_indices())]

    def feasibility(self, indices: np.ndarray) -> np.ndarray | None:
        """Chance that each configuration runs at all, learnt from the trials that failed (out of
        memory, refused, crashed) and the ones that ran: a Gaussian-kernel vote over the
        encoding, from FEASIBLE_PRIOR far from any trial. None while no trial has failed."""
        failed = [self.ctx.space.index(c) for c, v in self.history if v is None]
        if not failed:
            return None
        ran = [self.ctx.space.index(c) for c, v in self.history if v is not None]
        X = self.ctx.space.encode_indices(indices)

        def votes(at: list[int]) -> np.ndarray:
            if not at:
                return np.zeros(len(X))
            T = self.ctx.space.encode_indices(np.array(at))
            d2 = np.maximum((X * X).sum(1)[:, None] + (T * T).sum(1)[None, :] - 2 * X @ T.T, 0.0)
            return np.exp(-d2 / (2 * FEASIBLE_WIDTH ** 2)).sum(1)
        ok, bad = votes(ran), votes(failed)
        return (FEASIBLE_PRIOR * FEASIBLE_PSEUDO + ok) / (FEASIBLE_PSEUDO + ok + FAILURE_WEIGHT * bad)

    def per_usd(self, score: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """``score`` per $ of each configuration's trial (relative to the median price) when the
        search is cost-aware: a V100 trial must promise 6x what a T4 one does. Unchanged otherwise."""
        hourly = self.ctx.hourly
        if not self.ctx.cost_aware or hourly is None or not len(indices):
            return score
        try:
            price = np.array([hourly(self.ctx.space.config_at(int(i))) for i in indices])
        except PricingError:     # an unpriced configuration: the submission checks refuse it
            return score
        price = np.where(price > 0, price, np.nan)
        ref = float(np.nanmedian(price)) if np.isfinite(price).any() else 1.0
        return score / np.nan_to_num(price / ref, nan=1.0)

    def untried_mask(self) -> np.ndarray:
        """True for every allowed configuration (space.configs() order) not tried yet (small
        spaces only: see :meth:`pool`)."""
        space = self.ctx.space
        mask = np.ones(space.size, dtype=bool)
        if space.rules:
            mask[:] = False
            mask[space.allowed_indices()] = True
        for c in self._taken():
            mask[space.index(c)] = False
        return mask
