"""Knobs no knowledge covers, learnt online: the model and the design behind falcon's handling of
them (``Falcon.ask`` when the space has such knobs). Written from the general literature on
Bayesian linear models and one-factor-at-a-time / covering designs; no code copied.

A knob is *uncovered* when neither the offline tables and curves (the knowledge's grid) nor the
operator cost model (``services.knowledge.cost_model.modelled_knobs``) say anything about it: a dynamic
batcher's queue delay, model instances, threads, a runtime's flags. Falcon's surrogate is flat
along such a knob, so without this module a search learns it only through the residual GP,
i.e. by chance.

The value of a configuration x = (c, u) - c its covered knobs, u its uncovered ones - is modelled
multiplicatively:

    log y(c, u) = log m(c) + g(u, c) + noise

- m(c): what the knowledge predicts (falcon's expert average and residual GP), fitted to the
  trials *corrected* for the uncovered knobs (y / exp(g)); g is re-fitted on log y - log m(c).
  The two are alternated a few times (backfitting).
- g: a Bayesian linear model, exact Gaussian posterior. Features per uncovered knob: the one-hot
  of its value (main effect), and that one-hot times each *partner* covered knob's rank scaled to
  [-1, 1] (how the knob's effect changes with the batch size or the cores: the covered knobs a
  serving knob most plausibly interacts with, INTERACT_WITH); plus an intercept. Prior: a
  Gaussian process over an ordinal knob's value ranks (RBF, LENGTHSCALE: neighbouring values
  have similar effects, so a monotone or single-peaked effect is pinned by a few values),
  independent values for a categorical knob; sd PRIOR_SD_MAIN for main effects (a knob can change
  the value by ~x1.35 before any trial), PRIOR_SD_INTERACT for interactions.
- Acquisition: the expected improvement of y over the best measurement under the log-normal
  belief y ~ m(c) exp(N(mu_g, sd_g^2 + (sd_m / m)^2)), so untried values (wide prior) compete
  with exploiting what is known on one scale.

The early design (the budget): after the first trial (the knowledge's best covered configuration
with every uncovered knob at its middle value), one-knob moves from the best configuration so
far to a value not measured yet, the move with the highest expected improvement first, until
every uncovered knob has been measured at its design levels: every value of a categorical knob,
the two ends and the middle of an ordinal one (DESIGN_LEVELS); the second end is skipped once the
first one beat the middle, and tried next (before other knobs) when it lost to it. So the design costs

    B = sum over uncovered knobs of (levels(k) - 1),   levels(k) = |V_k| (categorical) or min(|V_k|, 3)

trials at most, linear in the number of uncovered knobs and independent of the space's size (3
ordinal knobs: 6 trials; 4: 8). An ordinal knob whose measured one-knob moves change almost
nothing - trials that differ in that knob alone all within FLAT_BAND (log) of each other - is
*flat*: the design stops on it after that one move (a smooth, mostly monotone effect is not
expected to appear at the other end), the acquisition keeps it at the best trial's value, and the
trials go to the covered knobs. Flatness is re-judged at every decision, so a knob that
later shows an effect (e.g. at another batch size) rejoins the design. A categorical knob's values
say nothing of each other: the design measures all of them. A move is a coordinate-ascent step, so the design exploits while it
learns (each move keeps the best covered part and the other knobs' best values). After it, the
acquisition runs over the knowledge's most promising covered configurations times every
combination of uncovered values (a sample of MAX_COMBOS when there are more), and one trial in
len(AFTER_DESIGN) goes to a value never measured of a knob that is not flat (the best such move
from the best configuration), so every value of every such knob is measured after at most
B + len(AFTER_DESIGN) x (sum (|V_k| - levels(k))) trials, unless the space's rules exclude it. A
flat knob's never-measured values get those turns only when no other knob has any left, and then
only in one cycle of AFTER_DESIGN in FLAT_EVERY: a later, cheaper guarantee (every value within
B + len(AFTER_DESIGN) x (sum over non-flat knobs + FLAT_EVERY x sum over flat knobs of the values
left) trials).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import norm

from services.domain.space import Space
from services.knowledge.cost_model import modelled_knobs
from services.searcher.strategies.effect_model import NOISE_SD, EffectModel, Posterior, knob_effects, lognormal_ei

DESIGN_LEVELS = 3           # values of an ordinal knob the early design measures (ends and middle)
DESIGN_CYCLE = 0            # during the design, every n-th trial is a covered move (0: none)
FLAT_BAND = 0.03            # log-space band: an ordinal knob whose one-knob moves all measure within it
                            # is *flat*: the design stops on it (flat_knobs)
FLAT_EVERY = 2              # a flat knob's never-measured values get one "untried" turn in FLAT_EVERY
# after the design, trials take turns: a value never measured (a covered move once none is left), a
# covered move, the acquisition over covered x uncovered, a covered move
AFTER_DESIGN: tuple[tuple[str, ...], ...] = (("untried", "covered"), ("covered",), (), ("covered",))
MAX_COMBOS = 4096           # uncovered-value combinations scored per covered configuration at most
TOP_COVERED = 24            # covered configurations (the knowledge's best) the acquisition scores
BACKFIT_ROUNDS = 3


def uncovered_knobs(space: Space, grid: Space | None) -> tuple[str, ...]:
    """The knobs of ``space`` that neither the knowledge's grid nor the cost model cover."""
    modelled = modelled_knobs(space.roles)
    covered = set(grid.names if grid is not None else space.names)
    return tuple(n for n in space.names if n not in covered and n not in modelled)


def design_levels(n_values: int, kind: str) -> list[int]:
    """Value indices the early design measures for a knob of ``n_values`` values."""
    if kind == "categorical" or n_values <= DESIGN_LEVELS:
        return list(range(n_values))
    return sorted({0, (n_values - 1) // 2, n_values - 1})


def start_level(n_values: int, kind: str) -> int:
    """The value a knob takes before anything is known of it: the middle of an ordinal range
    (the hedge between its ends), the first value of a categorical knob (its default)."""
    return (n_values - 1) // 2 if kind == "ordinal" else 0


def design_budget(space: Space, knobs: Sequence[str]) -> int:
    """B: the early design's one-knob moves (module doc)."""
    return sum(len(design_levels(len(space.knob(n).values), space.knob(n).kind)) - 1 for n in knobs)


def describe(space: Space, knobs: Sequence[str], factors: Mapping[str, list[float]],
             measured_rows: np.ndarray) -> list[str]:
    """One line per uncovered knob: the value the search believes best, each value's estimated
    factor against it, and how many trials measured which of its values."""
    lines = []
    for name in knobs:
        j = space.names.index(name)
        values = space.knob(name).values
        f = factors[name]
        counts = np.bincount(measured_rows[:, j], minlength=len(values)) if len(measured_rows) else \
            np.zeros(len(values), dtype=int)
        best = int(np.argmax(f))
        per = ", ".join(f"{v}: x{x:.2f} ({c} trial{'s' if c != 1 else ''})"
                        for v, x, c in zip(values, f, counts))
        lines.append(f"uncovered knob {name} (no offline knowledge; learnt online from {int(counts.sum())} trials, "
                     f"{int((counts > 0).sum())} of its {len(values)} values measured): best {values[best]}; "
                     f"estimated factor of each value against it, at the recommendation: {per}")
    return lines


# -- the search: what falcon asks when the space has uncovered knobs -----------------------------
@dataclass(frozen=True)
class Fitted:
    """The model fitted to the trials so far."""
    model: EffectModel
    post: Posterior
    covered_idx: np.ndarray      # full-space indices of the covered configurations scored (uncovered at 0)
    m: np.ndarray                # the knowledge's belief there (mean, > 0) ...
    m_sd: np.ndarray             # ... and its sd (0 before the residual GP runs)
    region: np.ndarray           # the ones inside the region falcon's tree search selects
    attempted: np.ndarray        # rows of every trial told (failed ones included)
    measured: np.ndarray         # rows of the successful trials
    best_row: np.ndarray | None  # the best measurement's row
    best_corrected: float        # the best measurement corrected for its uncovered knobs (m's scale)


def applies(strategy, experts) -> tuple[str, ...]:  # noqa: ANN001
    """The uncovered knobs falcon learns with this module: some, the objective is RPS/$ (the
    model is multiplicative: values must be positive) and the knowledge has experts."""
    from services.domain.objectives import RPS_PER_USD
    k = strategy.ctx.knowledge
    if experts is None or k is None or strategy.ctx.objective.name != RPS_PER_USD:
        return ()
    if any(v is not None and v <= 0 for _, v in strategy.history):
        return ()
    return uncovered_knobs(strategy.ctx.space, k.grid)


def _covered_pool(strategy, knobs: Sequence[str], obs) -> np.ndarray:  # noqa: ANN001
    """Full-space indices (uncovered knobs at their first value) of the covered configurations to
    score: all of them in a small covered space, else a seeded sample plus the trials' covered parts
    and their neighbours."""
    from services.searcher.strategies.base import EXHAUSTIVE_LIMIT, SAMPLE_SIZE
    space = strategy.ctx.space
    sub = space.subspace(tuple(n for n in space.names if n not in knobs))
    cov_cols = [space.names.index(n) for n in sub.names]
    if sub.size <= EXHAUSTIVE_LIMIT:
        sub_idx = np.arange(sub.size, dtype=np.int64)
    else:
        rng = np.random.default_rng([strategy.ctx.seed, len(strategy.history), 7])
        tried = space.project(obs.indices, sub) if len(obs.indices) else np.zeros(0, dtype=np.int64)
        parts = [sub.sample(rng, 2 * SAMPLE_SIZE), tried, *(sub.neighbours(int(i)) for i in tried[:8])]
        sub_idx = np.unique(np.concatenate(parts))
    rows = np.zeros((len(sub_idx), len(space.knobs)), dtype=np.int64)
    rows[:, cov_cols] = sub.rows(sub_idx)
    return space.indices_of(rows)


def fit(strategy, experts, knobs: Sequence[str]) -> Fitted:  # noqa: ANN001
    """Backfit m (the knowledge) and g (the uncovered knobs) to the trials (module doc)."""
    from services.searcher.strategies.base import Observed
    from services.searcher.strategies.falcon import Columns
    space = strategy.ctx.space
    model = EffectModel(space, knobs)
    obs = strategy.observed()
    rows = space.rows(obs.indices) if len(obs.indices) else np.zeros((0, len(space.knobs)), dtype=np.int64)
    base = rows.copy()
    base[:, model.cols] = 0
    base_idx = space.indices_of(base)
    y = obs.values
    Phi = model.features(rows)
    noise = np.hypot(NOISE_SD, obs.stability_cv)
    k = strategy.ctx.knowledge
    F, prior = experts
    pool = _covered_pool(strategy, knobs, obs)
    post = model.fit(Phi, np.zeros(0), noise[:0])
    g = np.zeros(len(y))
    if len(y):
        cols = Columns.of(Observed(base_idx, y, obs.stability_cv), np.zeros(0, dtype=np.int64))
        Fo = F[:, k.on_grid(cols.indices)] * strategy._uncovered_ratio(cols.indices)[None, :]
        for _ in range(BACKFIT_ROUNDS):
            m_obs, _ = strategy.surrogate(Fo, prior, cols.observed, y / np.exp(g), obs.stability_cv)
            r = np.log(y) - np.log(np.maximum(m_obs, 1e-12 * float(y.max())))
            post = model.fit(Phi, r, noise)
            g = Phi @ post.mean - post.mean[0]
    corrected = Observed(base_idx, y / np.exp(g), obs.stability_cv)
    cols = Columns.of(corrected, pool)
    belief = strategy.belief(experts, corrected, cols)
    n = len(y)
    region = strategy.candidates(belief.mean, corrected, cols)[n:]     # falcon's MCTS region (covered knobs)
    m = np.maximum(belief.mean[n:], 1e-6 * (float(y.max()) if n else float(np.abs(belief.mean).max() or 1.0)))
    told = [space.index(c) for c in strategy._taken()]
    best_row = rows[int(np.argmax(y))] if n else None
    return Fitted(model, post, pool, m, belief.sd[n:], region if region.any() else np.ones(len(pool), dtype=bool),
                  space.rows(np.array(told, dtype=np.int64)), rows, best_row,
                  float(corrected.values.max()) if n else 0.0)


def flat_knobs(fitted: Fitted, knobs: Sequence[str], values: np.ndarray) -> set[str]:
    """The ordinal uncovered knobs whose measured one-knob moves change almost nothing: there is at
    least one pair of successful trials that differ in that knob alone, and in every such group of
    trials the measured values lie within FLAT_BAND (log) of each other (module doc). Judged on
    the measurements, not the model (whose misfit elsewhere would leak into it), and re-judged at
    every decision: a move that later shows an effect (at another batch size, say) ends it."""
    rows, out = fitted.measured, set()
    if len(rows) < 2:
        return out
    logs = np.log(np.maximum(values, 1e-300))
    space = fitted.model.space
    for n in knobs:
        if space.knob(n).kind != "ordinal":     # a categorical value says nothing of the others
            continue
        j = space.names.index(n)
        others = np.delete(rows, j, axis=1)
        _, group = np.unique(others, axis=0, return_inverse=True)
        group = group.reshape(-1)
        paired, flat = False, True
        for g in np.unique(group):
            at = group == g
            if len(np.unique(rows[at, j])) < 2:
                continue
            paired = True
            if float(logs[at].max() - logs[at].min()) >= FLAT_BAND:
                flat = False
                break
        if paired and flat:
            out.add(n)
    return out


def _unmeasured(fitted: Fitted, knobs: Sequence[str], design: bool,
                skip: frozenset[str] | set[str] = frozenset()) -> dict[int, list[int]]:
    """Per uncovered knob (its column): the value indices not attempted yet (``design``: only the
    design levels it still needs), leaving out the knobs in ``skip``."""
    space, attempted = fitted.model.space, fitted.attempted
    out, urgent = {}, []
    for i, n in enumerate(knobs):
        if n in skip:
            continue
        j = space.names.index(n)
        kb = space.knob(n)
        want = design_levels(len(kb.values), kb.kind) if design else list(range(len(kb.values)))
        seen = set(attempted[:, j].tolist()) if len(attempted) else set()
        left = [v for v in want if v not in seen]
        if design and kb.kind == "ordinal" and len(want) == 3 and len(left) == 1 and fitted.best_row is not None:
            # start and one end measured: the other end is needed only if the measured end did not
            # beat the start (a rising effect is not expected to turn back past the middle)
            f = knob_effects(fitted.model, fitted.post, fitted.best_row)[n]
            end = ({want[0], want[2]} - set(left)).pop()
            if f[end] > f[want[1]]:
                continue
        if left:
            out[j] = left
            if design and kb.kind == "ordinal" and len(want) == 3 and len(left) == 1 and want[1] not in left:
                urgent.append(j)      # one end measured and it lost to the middle: the other end next
    return {j: out[j] for j in urgent} if urgent else out


def _score(strategy, fitted: Fitted, rows: np.ndarray, m: np.ndarray, m_sd: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Log-normal EI of each candidate row (m, m_sd: the knowledge's belief at its covered part)."""
    space = strategy.ctx.space
    mu, sd = fitted.model.predict(fitted.post, fitted.model.features(rows))
    mu = mu - fitted.post.mean[0]                 # the intercept is the scale m was fitted on
    obs = strategy.observed()
    best = float(obs.values.max()) if len(obs.values) else 0.0
    sd = np.hypot(sd, m_sd / m)
    score = lognormal_ei(m, mu, sd, best) if best > 0 else m * np.exp(mu)
    idx = space.indices_of(rows)
    feasible = strategy.feasibility(idx)
    return score if feasible is None else score * feasible


def _allowed_untried(strategy, rows: np.ndarray) -> np.ndarray:  # noqa: ANN001
    space = strategy.ctx.space
    ok = space.allows_rows(rows) if space.rules else np.ones(len(rows), dtype=bool)
    return ok & ~np.isin(space.indices_of(rows), strategy.tried_indices())


def _moves(strategy, fitted: Fitted, todo: dict[int, list[int]]):  # noqa: ANN001, ANN202
    """One-knob moves to the ``todo`` values from the best trials (the best first; the next one
    when the rules or earlier trials leave the best none)."""
    space = strategy.ctx.space
    obs = strategy.observed()
    for t in np.argsort(-obs.values, kind="stable")[:8]:
        start = fitted.measured[int(t)]
        rows = []
        for j, values in todo.items():
            for v in values:
                r = start.copy()
                r[j] = v
                rows.append(r)
        rows = np.array(rows, dtype=np.int64)
        rows = rows[_allowed_untried(strategy, rows)]
        if len(rows):
            c = space.indices_of(start[None, :])[0]
            at = np.flatnonzero(fitted.covered_idx == _baseline(space, fitted.model, c))
            m = fitted.m[at[0]] if len(at) else float(obs.values[int(t)])
            sd = fitted.m_sd[at[0]] if len(at) else 0.0
            return rows, np.full(len(rows), m), np.full(len(rows), sd)
    return None


def _covered_move(strategy, fitted: Fitted) -> int | None:  # noqa: ANN001
    """A configuration whose covered part no trial has measured: the covered configuration of the
    tree search's region with the highest expected improvement of the knowledge's belief (its
    mean before the residual GP runs) over the best corrected measurement, with the uncovered knobs
    at the values the model expects best there."""
    from services.searcher.strategies.gp import expected_improvement
    space, model = strategy.ctx.space, fitted.model
    base = fitted.attempted.copy()
    base[:, model.cols] = 0
    fresh = fitted.region & ~np.isin(fitted.covered_idx, space.indices_of(base))
    if not fresh.any():
        return None
    if fitted.m_sd.max() > 0:
        score = expected_improvement(fitted.m, fitted.m_sd, fitted.best_corrected)
    else:
        score = fitted.m.copy()
    if fitted.best_row is not None:       # the chance to run, with the uncovered knobs as at the best trial
        rows = space.rows(fitted.covered_idx)
        rows[:, model.cols] = fitted.best_row[model.cols]
        feasible = strategy.feasibility(space.indices_of(rows))
        if feasible is not None:
            score = score * feasible
    order = np.argsort(-np.where(fresh, score, -np.inf), kind="stable")[:min(8, int(fresh.sum()))]
    combos = _combos(space, model, strategy.ctx.seed, len(strategy.history), fitted.best_row)
    if fitted.best_row is not None:     # the best trial's uncovered values first: a move of the covered knobs only
        combos = np.vstack([fitted.best_row[model.cols][None, :], combos])
    for c in order:
        rows = np.tile(space.rows(fitted.covered_idx[c:c + 1])[0], (len(combos), 1))
        rows[:, model.cols] = combos
        rows = rows[_allowed_untried(strategy, rows)]
        if len(rows) and fitted.best_row is not None and (rows[0, model.cols] == fitted.best_row[model.cols]).all():
            return int(space.indices_of(rows[:1])[0])
        if len(rows):
            mu, _ = model.predict(fitted.post, model.features(rows))
            feasible = strategy.feasibility(space.indices_of(rows))
            mu = np.exp(mu) if feasible is None else np.exp(mu) * feasible
            return int(space.indices_of(rows[int(np.argmax(mu))][None, :])[0])
    return None


def _baseline(space: Space, model: EffectModel, index: int) -> int:
    r = space.rows(np.array([index]))[0]
    r[model.cols] = 0
    return int(space.indices_of(r[None, :])[0])


def _combos(space: Space, model: EffectModel, seed: int, n_told: int, around: np.ndarray | None) -> np.ndarray:
    """Uncovered value combinations (rows over the uncovered columns): all of them, or a seeded
    sample of MAX_COMBOS plus the one-knob neighbours of ``around``'s."""
    total = int(np.prod(model.sizes))
    if total <= MAX_COMBOS:
        grids = np.meshgrid(*[np.arange(s) for s in model.sizes], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1)
    rng = np.random.default_rng([seed, n_told, 11])
    out = [np.stack([rng.integers(0, s, MAX_COMBOS) for s in model.sizes], axis=1)]
    if around is not None:
        base = around[model.cols]
        for i, s in enumerate(model.sizes):
            near = np.tile(base, (s, 1))
            near[:, i] = np.arange(s)
            out.append(near)
    return np.unique(np.concatenate(out), axis=0)


def ask(strategy, experts, knobs: Sequence[str]):  # noqa: ANN001, ANN201
    """The next configuration of a search with uncovered knobs (module doc); None when nothing is left."""
    space = strategy.ctx.space
    fitted = fit(strategy, experts, knobs)
    model = fitted.model
    obs = strategy.observed()
    n_told = len(strategy.history) - strategy.n_fantasies
    strategy.converged = False
    flat = flat_knobs(fitted, knobs, obs.values) if len(obs.values) else set()
    if len(obs.values):
        design_todo = _unmeasured(fitted, knobs, True, flat)      # a flat knob leaves the design
        if design_todo:         # the design, every DESIGN_CYCLE-th trial a covered move
            plan = ("covered", "design") if DESIGN_CYCLE and n_told % DESIGN_CYCLE == DESIGN_CYCLE - 1 \
                else ("design",)
        else:                   # then: AFTER_DESIGN in turn
            plan = AFTER_DESIGN[n_told % len(AFTER_DESIGN)]
        for what in plan:
            if what == "covered":
                pick = _covered_move(strategy, fitted)
                if pick is not None:
                    return space.config_at(pick)
                continue
            if what == "design":
                todo = design_todo
            else:   # a value never measured: of a knob that is not flat; of a flat one in one turn of FLAT_EVERY
                todo = _unmeasured(fitted, knobs, False, flat)
                if not todo and (n_told // len(AFTER_DESIGN)) % FLAT_EVERY == 0:
                    todo = _unmeasured(fitted, knobs, False)
            moves = _moves(strategy, fitted, todo) if todo else None
            if moves is not None:
                rows, m, sd = moves
                s = _score(strategy, fitted, rows, m, sd)
                return space.config_at(int(space.indices_of(rows[int(np.argmax(s))][None, :])[0]))
    # the acquisition over the knowledge's best covered configurations x uncovered combinations
    ranked = np.where(fitted.region, fitted.m + fitted.m_sd, -np.inf)
    top = list(np.argsort(-ranked, kind="stable")[:min(TOP_COVERED, int(fitted.region.sum()))])
    if len(obs.values):          # and the covered parts of the best trials
        for t in np.argsort(-obs.values, kind="stable")[:3]:
            at = np.flatnonzero(fitted.covered_idx == _baseline(space, model, int(obs.indices[int(t)])))
            top += at.tolist()
    top = np.unique(np.array(top, dtype=np.int64))
    if not len(obs.values):
        combos = np.array([[start_level(s, space.knob(n).kind) for s, n in zip(model.sizes, knobs)]])
        combos = np.vstack([combos, _combos(space, model, strategy.ctx.seed, n_told, None)])
    else:
        combos = _combos(space, model, strategy.ctx.seed, n_told, fitted.best_row)
        if flat:    # a flat knob stays at the best trial's value (its other values: the "untried" turns)
            for i, n in enumerate(knobs):
                if n in flat:
                    combos = combos[combos[:, i] == fitted.best_row[model.cols[i]]]
            if not len(combos):
                combos = fitted.best_row[model.cols][None, :]
    cov_rows = space.rows(fitted.covered_idx[top])
    rows = np.repeat(cov_rows, len(combos), axis=0)
    rows[:, model.cols] = np.tile(combos, (len(top), 1))
    m = np.repeat(fitted.m[top], len(combos))
    sd = np.repeat(fitted.m_sd[top], len(combos))
    keep = _allowed_untried(strategy, rows)
    if not keep.any():
        return None
    rows, m, sd = rows[keep], m[keep], sd[keep]
    if not len(obs.values):       # before any measurement: the knowledge's best, uncovered knobs at their start
        first = np.all(rows[:, model.cols] == combos[0], axis=1)
        pick = np.flatnonzero(first)[int(np.argmax(m[first]))] if first.any() else \
            int(np.argmax(_score(strategy, fitted, rows, m, sd)))
        return space.config_at(int(space.indices_of(rows[pick][None, :])[0]))
    s = _score(strategy, fitted, rows, m, sd)
    return space.config_at(int(space.indices_of(rows[int(np.argmax(s))][None, :])[0]))


def explain(strategy, experts, knobs: Sequence[str]) -> list[str]:  # noqa: ANN001
    """What the search learnt of each uncovered knob (describe), at the best measured configuration."""
    fitted = fit(strategy, experts, knobs)
    if fitted.best_row is None:
        return []
    return describe(strategy.ctx.space, knobs, knob_effects(fitted.model, fitted.post, fitted.best_row),
                    fitted.measured)
