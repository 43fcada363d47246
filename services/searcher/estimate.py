"""What a search believes each tried configuration is worth, and which one to recommend.

With exact measurements (replay of a clean table; no runner-reported spread) a configuration is
worth what it measured, and the recommendation is the best measurement. With noisy ones (the
runner reports a relative spread, ``stability_cv``) the best *measurement* is a winner's curse:
the more configurations a search tries, the likelier a mediocre one measured lucky tops the list.
So the recommendation is the best *posterior mean* (empirical Bayes over every successful
measurement, each with its own reported noise, around what the search's model expects): a lucky
measurement is believed only in part, a configuration measured three times alike is believed.
The interval is the posterior's 95%. While the runner-up is within the noise of the leader, the
tried configuration whose next measurement is worth most to the recommendation (knowledge
gradient) is measured again.

Pure and deterministic: the search state, the report and a state rebuilt from the log all
compute the same recommendation from the same trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import norm

from schemas.events import TrialResult
from services.domain.space import Space

Z95 = 1.96
# re-measure while the runner-up is this likely to be truly better than the leader ...
REMEASURE_PROBABILITY = 0.2
REMEASURE_FROM = 0.2        # ... once this share of the trial budget has explored (a model's
REMEASURE_FROM_BLIND = 0.5  # expectations point at the few worth confirming; without them, explore longer)
MAX_MEASUREMENTS = 5        # of one configuration
KG_FLOOR = 1e-3             # a re-measurement expected to gain less than this share of its noise is not worth a trial
NOISE_FLOOR = 0.05          # a median reported spread below this (live CPU runners here: 0.5-4.5%) is exact
# How far the truth strays from the model's expectation before any trial says so: the offline
# consensus's relative error at the configurations a search tries (leave-one-source-out on the
# public source tables: 3% over each model's 5 best-predicted configurations, 7% over its 15
# best), held as firmly as this many configurations' evidence; the trials' own misfit takes over
# as they accumulate (a model that misleads is soon trusted less).
PRIOR_MISFIT = 0.05
PRIOR_WEIGHT = 10.0
MIN_MODELLED = 3            # measured configurations before a model's expectation (or their mean) is a prior


@dataclass(frozen=True)
class Estimate:
    """One tried configuration: what it is believed to be worth and how sure that is."""
    trial: TrialResult          # its best measurement (the trial the recommendation points at)
    value: float                # posterior mean (the measurement itself when measurements are exact)
    low: float                  # 95% interval
    high: float
    measurements: int           # successful trials of this configuration
    noise: float = 0.0          # sd of one more measurement of it (0: measurements are exact)

    @property
    def sd(self) -> float:
        return (self.high - self.low) / (2 * Z95)


def noisy(trials: Sequence[TrialResult], spread: "Value | None" = None) -> bool:
    """Whether the measurements are noisy enough to matter: their median reported spread is at
    least NOISE_FLOOR (below it they are taken as exact, so ties of the objective stay ties)."""
    spread = spread or _reported
    cvs = [c for t in trials if t.ok and np.isfinite(c := _finite(spread(t)))]
    return bool(cvs) and float(np.median(cvs)) >= NOISE_FLOOR


def _finite(spread: float | None) -> float:
    """A reported spread, NaN when none (or no number) was reported."""
    return np.nan if spread is None or not np.isfinite(spread) else float(spread)


Value = Callable[[TrialResult], "float | None"]


def _measured(t: TrialResult) -> float | None:
    return t.rps_per_usd


def _reported(t: TrialResult) -> float | None:
    return t.stability_cv


def estimate(space: Space, trials: Sequence[TrialResult], eligible: Callable[[TrialResult], bool],
             predicted: Mapping[str, float] | None = None, value: Value = _measured,
             spread: Value = _reported) -> list[Estimate]:
    """The eligible configurations (e.g. those meeting the constraints), best first, each with
    its estimate; every successful trial informs the model, eligible or not. ``value``: the
    search's objective of a trial (higher is better; default its RPS/$), ``spread``: its relative
    measurement noise. ``predicted``: what the search's model expects of each tried
    configuration (space key -> value, from the offline knowledge fitted to the trials): the
    measurements are shrunk towards it rather than towards their overall mean. Ties: the higher
    RPS/$ (more headroom), then the earlier trial."""
    ok = [(t, y) for t in trials if t.ok and (y := value(t)) is not None]
    groups: dict[str, list[tuple[TrialResult, float]]] = {}
    for t, y in ok:
        groups.setdefault(space.key(t.config), []).append((t, y))
    chosen = {k: ts for k, ts in groups.items() if any(eligible(t) for t, _ in ts)}
    if not chosen:
        return []

    def order(e: Estimate) -> tuple[float, float, int]:
        return -e.value, -(e.trial.rps_per_usd or 0.0), e.trial.index
    if not noisy([t for t, _ in ok], spread):
        out = [Estimate(_first_best(ts, eligible), v := float(np.mean([y for _, y in ts])), v, v, len(ts))
               for ts in chosen.values()]
        return sorted(out, key=order)
    posterior = _posterior({k: [(y, spread(t)) for t, y in ts] for k, ts in groups.items()}, predicted or {})
    out = [Estimate(_first_best(ts, eligible), m, m - Z95 * sd, m + Z95 * sd, len(ts), noise)
           for k, ts in chosen.items() for m, sd, noise in [posterior[k]]]
    return sorted(out, key=order)


def _first_best(ts: list[tuple[TrialResult, float]], eligible: Callable[[TrialResult], bool]) -> TrialResult:
    """The configuration's best measurement that may be recommended (a re-measurement may miss a
    constraint another measurement of it met: the one that met it is the trial shown)."""
    return sorted(((t, y) for t, y in ts if eligible(t)), key=lambda ty: (-ty[1], ty[0].index))[0][0]


def _posterior(measured: Mapping[str, list[tuple[float, float | None]]],
               predicted: Mapping[str, float]) -> dict[str, tuple[float, float, float]]:
    """Empirical-Bayes posterior (mean, sd, sd of one more measurement) of each configuration's
    noise-free value, from its measurements (``measured``: configuration key -> (value, reported
    relative spread) each).

    Each configuration's measurements are averaged with their reported noise (precision-weighted)
    and shrunk towards what the model predicts there (once it predicted MIN_MODELLED measured
    configurations; else towards the mean of every measurement), by how far the truth strays
    from that target: with a model, its offline misfit (PRIOR_MISFIT) pooled with the trials'
    misfit beyond the noise; without one, the spread of the averages less the noise (method of
    moments). One lucky measurement is shrunk hard; three that agree are believed. (A Gaussian
    process over the knobs was tried first: with a handful of 10%-noisy points its fitted
    length-scale smooths every configuration to the same value, which ranks nothing.)"""
    spreads = np.array([_finite(c) for ms in measured.values() for _, c in ms])
    median = float(np.nanmedian(spreads)) if np.isfinite(spreads).any() else 0.0
    scale = float(np.median(np.abs([y for ms in measured.values() for y, _ in ms]))) or 1.0
    mean_of, var_of, cv_of = {}, {}, {}
    for k, ms in measured.items():
        y = np.array([v for v, _ in ms])
        cv = np.array([_finite(c) for _, c in ms])
        cv = np.maximum(np.where(np.isnan(cv), median, cv), median)    # a lone "exact" report is no exception
        w = 1.0 / (cv * np.maximum(np.abs(y), 1e-3 * scale)) ** 2       # a value of 0 still has noise
        mean_of[k] = float((w * y).sum() / w.sum())
        var_of[k] = float(1.0 / w.sum())
        cv_of[k] = float(np.median(cv))
    grand = float(np.mean(list(mean_of.values())))
    noise = float(np.mean(list(var_of.values())))
    # too few configurations to tell their spread from the noise: believe the measurements
    blind = _misfit({k: grand for k in mean_of}, mean_of, var_of) if len(mean_of) >= MIN_MODELLED else np.inf
    expected = _model_expectations(predicted, mean_of)
    model_misfit = _misfit(expected, mean_of, var_of) if expected else 0.0
    out = {}
    for k, v in var_of.items():
        target = expected.get(k, grand)
        if k in expected:
            between = (PRIOR_WEIGHT * (PRIOR_MISFIT * target) ** 2 + len(expected) * model_misfit) \
                / (PRIOR_WEIGHT + len(expected))
        else:
            between = blind
        between = max(between, 0.05 * noise, 1e-18)
        shrink = between / (between + v) if np.isfinite(between) else 1.0
        mean = target + shrink * (mean_of[k] - target)
        out[k] = (mean, float(np.sqrt(shrink * v)), cv_of[k] * max(abs(mean), 1e-3 * scale))
    return out


def _model_expectations(predicted: Mapping[str, float], mean_of: Mapping[str, float]) -> dict[str, float]:
    """The model's expectation of each measured configuration it predicted, when it predicted at
    least MIN_MODELLED of them (its scale is fitted to the trials - one least-squares factor - and
    a prediction scaled to one or two measurements is hardly independent evidence about them)."""
    keys = [k for k in mean_of if k in predicted]
    if len(keys) < MIN_MODELLED:
        return {}
    return {k: float(predicted[k]) for k in keys}


def _misfit(target: Mapping[str, float], mean_of: Mapping[str, float], var_of: Mapping[str, float]) -> float:
    """How far the truth strays from ``target`` beyond the measurement noise (method of moments)."""
    keys = list(target)
    gaps = np.array([mean_of[k] - target[k] for k in keys])
    return max(float(np.mean(gaps ** 2)) - float(np.mean([var_of[k] for k in keys])), 0.0)


def remeasure(estimates: Sequence[Estimate], trials_done: int, max_trials: int,
              in_flight: set[str], space: Space, attempts: Mapping[str, int] | None = None,
              failed: set[str] | None = None, modelled: bool = True) -> Estimate | None:
    """Which tried configuration to measure again, if any. Only while the runner-up is within the
    noise of the leader (P[runner-up truly better] >= REMEASURE_PROBABILITY) and once
    REMEASURE_FROM of the trial budget has explored (REMEASURE_FROM_BLIND when the search has no
    model's expectations, ``modelled`` False: it has more to gain from exploring); then the one
    whose next measurement is expected to raise the recommendation's true value most (knowledge
    gradient: a leader that may be lucky, or a configuration measured unlucky once that may be
    the best), at most MAX_MEASUREMENTS times (``attempts``: trials of it so far, failed ones
    included), never one already in flight nor one that failed to run (``failed``)."""
    if len(estimates) < 2 or trials_done < (REMEASURE_FROM if modelled else REMEASURE_FROM_BLIND) * max_trials:
        return None
    lead, challenger = estimates[0], estimates[1]
    spread = np.hypot(lead.sd, challenger.sd)
    if spread <= 0 or norm.cdf((challenger.value - lead.value) / spread) < REMEASURE_PROBABILITY:
        return None
    best: tuple[float, Estimate] | None = None
    for e, gain in zip(estimates, knowledge_gradients(estimates)):
        key = space.key(e.trial.config)
        tried = (attempts or {}).get(key, e.measurements)      # failed attempts count too
        if tried < MAX_MEASUREMENTS and key not in in_flight and key not in (failed or set()) \
                and (best is None or gain > best[0]):
            best = (gain, e)
    # one that cannot reach the leaders is worth (next to) nothing: explore instead
    return best[1] if best is not None and best[0] > KG_FLOOR * best[1].noise else None


def knowledge_gradients(estimates: Sequence[Estimate]) -> list[float]:
    """For each estimate, the expected rise of the best posterior mean if it were measured once
    more (independent normal beliefs; Frazier, Powell & Dayanik 2008): its posterior mean moves by
    a normal step of sd s^2 / sqrt(s^2 + noise^2), and that matters as far as it can cross the
    best of the others."""
    means = np.array([e.value for e in estimates])
    sd = np.array([e.sd for e in estimates])
    step = sd ** 2 / np.sqrt(np.maximum(sd ** 2 + np.array([e.noise for e in estimates]) ** 2, 1e-300))
    out = []
    for i, s in enumerate(step):
        if s <= 0 or len(means) < 2:
            out.append(0.0)
            continue
        z = -abs(means[i] - float(np.max(np.delete(means, i)))) / s
        out.append(float(s * (z * norm.cdf(z) + norm.pdf(z))))
    return out


__all__ = ["Estimate", "estimate", "knowledge_gradients", "noisy", "remeasure"]
