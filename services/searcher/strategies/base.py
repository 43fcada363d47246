"""The strategy interface: ask for the next configuration, tell what it measured.

Strategies are rebuilt from a search's stored history (``tell`` every past trial, then ``ask``),
so a searcher restarted from Redis decides exactly what it would have decided; an ``ask`` must
therefore be a deterministic function of (context, the tells so far)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, NamedTuple, Sequence

import numpy as np

from services.common.space import Config, Space
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

    def kop_shares(self) -> list[tuple[str, float]]:
        """(KOP, time share), most time-consuming first."""
        share = {str(o["op"]): float(o["time_share"]) for o in self.operators}
        return sorted(((k, share.get(k, 0.0)) for k in self.kops), key=lambda kv: -kv[1])


class Observed(NamedTuple):
    """The successful trials, in the order they were told."""
    indices: np.ndarray         # configuration indices (space.configs() order)
    values: np.ndarray
    stability_cv: np.ndarray    # each measurement's relative spread (0 where none was reported)


class Strategy(ABC):
    name: ClassVar[str]
    converged: bool = False   # set by ask() when the strategy's model says further trials are unlikely to help

    def __init__(self, ctx: SearchContext) -> None:
        self.ctx = ctx
        self.history: list[tuple[Config, float | None]] = []
        self.stability_cv: list[float | None] = []    # per trial: the measurement's relative spread, if known
        self.tried: set[str] = set()

    def tell(self, config: Mapping[str, Any], value: float | None, stability_cv: float | None = None) -> None:
        """Record a finished trial (value None: the trial failed). ``stability_cv``: the
        measurement's relative spread (coefficient of variation) when the runner reported one."""
        c = self.ctx.space.canonical(config)
        self.history.append((c, value))
        cv = stability_cv
        self.stability_cv.append(None if cv is None or not np.isfinite(cv) else max(float(cv), 0.0))
        self.tried.add(self.ctx.space.key(c))

    @abstractmethod
    def ask(self) -> Config | None:
        """The next configuration to try, never one already tried; None when nothing is left."""

    def observed(self) -> Observed:
        """The trials that succeeded: indices, values and spreads."""
        ok = [(self.ctx.space.index(c), v, n or 0.0)
              for (c, v), n in zip(self.history, self.stability_cv) if v is not None]
        return Observed(np.array([i for i, _, _ in ok], dtype=int), np.array([v for _, v, _ in ok], dtype=float),
                        np.array([n for _, _, n in ok], dtype=float))

    def random_untried(self, untried: np.ndarray) -> Config:
        """A random untried configuration, the same for the same seed and number of tells (so a
        rebuilt strategy asks what the original asked)."""
        rng = random.Random(f"{self.ctx.seed}:{len(self.history)}")
        return self.ctx.space.config_at(rng.choice(np.flatnonzero(untried).tolist()))

    def untried_mask(self) -> np.ndarray:
        """True for every configuration (space.configs() order) not tried yet."""
        space = self.ctx.space
        mask = np.ones(space.size, dtype=bool)
        for c, _ in self.history:
            mask[space.index(c)] = False
        return mask
