"""`design`: no search at all - the configurations of a space-filling design, in order.

What a calibration measures (``falcon calibrate``: single-operator models run as ordinary trials
over a design of the space). The design is a scrambled Sobol sequence (scipy.stats.qmc) over the
space's value grid: point u in [0, 1)^d takes, for each knob, the value floor(u_j x number of
values); points that repeat a configuration, or that the space's rules forbid, are skipped. The
sequence is extensible, so the first n configurations of the design are the first n of any
longer one (a calibration that measures more points keeps the ones it has) and a design of n a
power of two is balanced in every knob. Seeded, hence deterministic: a search rebuilt from its
history asks what it asked before."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import qmc

from services.domain.space import Config, Space
from services.searcher.strategies.base import EXHAUSTIVE_LIMIT, Strategy

MAX_DRAWS_LOG2 = 18          # Sobol points drawn at most (2^18) before a small space is completed at random


def design_indices(space: Space, n: int, seed: int = 0) -> np.ndarray:
    """The first ``n`` distinct allowed configurations (indices in ``space.configs()`` order) of
    the seeded scrambled Sobol sequence over the space; fewer when the space has fewer. A space of
    more than EXHAUSTIVE_LIMIT configurations whose rules forbid nearly everything may also give
    fewer (after 2^18 draws)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    radices = np.array([len(k.values) for k in space.knobs], dtype=np.int64)
    m = max(1, math.ceil(math.log2(n)))
    found = np.zeros(0, dtype=np.int64)
    while m <= MAX_DRAWS_LOG2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # balance warnings: the draw count is a power of two
            u = qmc.Sobol(len(radices), scramble=True, rng=np.random.default_rng(seed)).random_base2(m)
        rows = np.minimum((u * radices).astype(np.int64), radices - 1)
        if space.rules:
            rows = rows[space.allows_rows(rows)]
        idx = space.indices_of(rows)
        _, first = np.unique(idx, return_index=True)
        found = idx[np.sort(first)]
        if len(found) >= n:
            return found[:n]
        if space.size <= len(found) or (len(found) and space.size <= 2 ** m // 4):
            break                                     # every configuration the sequence reaches is found
        m += 1
    if space.size <= EXHAUSTIVE_LIMIT:                 # complete a small space in a seeded random order
        allowed = space.allowed_indices() if space.rules else np.arange(space.size, dtype=np.int64)
        rest = allowed[~np.isin(allowed, found)]
        rest = np.random.default_rng([seed, 1]).permutation(rest)
        found = np.concatenate([found, rest])
    return found[:n]


def design_configs(space: Space, n: int, seed: int = 0) -> list[Config]:
    return [space.config_at(int(i)) for i in design_indices(space, n, seed)]


class Design(Strategy):
    """Asks the design's configurations in order (failed trials are not repeated); None once the
    design has no configuration left that was not tried (the space is exhausted)."""
    name = "design"

    def ask(self) -> Config | None:
        tried = set(self.tried_indices().tolist())
        n = len(tried) + 1
        while True:
            points = design_indices(self.ctx.space, n, self.ctx.seed)
            for i in points:
                if int(i) not in tried:
                    return self.ctx.space.config_at(int(i))
            if len(points) < n:
                return None
            n += max(1, len(tried))
