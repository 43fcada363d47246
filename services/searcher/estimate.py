"""What a search believes each tried configuration is worth, and which one to recommend.

With exact measurements (replay of a clean table; no runner-reported spread) a configuration is
worth what it measured, and the recommendation is the best measurement. With noisy ones (the
runner reports a relative spread, ``stability_cv``) the best *measurement* is a winner's curse:
the more configurations a search tries, the likelier a mediocre one measured lucky tops the list.
So the recommendation is the best *posterior mean* (empirical Bayes over every successful
measurement, each with its own reported noise): a lucky measurement is shrunk towards the rest,
a configuration measured three times alike is believed. The interval is the posterior's 95%.

Pure and deterministic: the search state, the report and a state rebuilt from the log all
compute the same recommendation from the same trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import norm

from schemas.events import TrialResult
from services.common.space import Space

Z95 = 1.96
# re-measure the leader or its challenger while the challenger is this likely to be truly better
REMEASURE_PROBABILITY = 0.2
MAX_MEASUREMENTS = 3        # of one configuration
NOISE_FLOOR = 0.05          # a median reported spread below this (live CPU runners here: 0.5-4.5%) is exact
REMEASURE_FROM = 0.5        # ... and only in the later part of the trial budget (explore first)


@dataclass(frozen=True)
class Estimate:
    """One tried configuration: what it is believed to be worth and how sure that is."""
    trial: TrialResult          # its best measurement (the trial the recommendation points at)
    value: float                # posterior mean (the measurement itself when measurements are exact)
    low: float                  # 95% interval
    high: float
    measurements: int           # successful trials of this configuration

    @property
    def sd(self) -> float:
        return (self.high - self.low) / (2 * Z95)


def noisy(trials: Sequence[TrialResult], spread: "Value | None" = None) -> bool:
    """Whether the measurements are noisy enough to matter: their median reported spread is at
    least NOISE_FLOOR (below it they are taken as exact, so ties of the objective stay ties)."""
    spread = spread or _reported
    cvs = [c for t in trials if t.ok and (c := spread(t)) is not None and np.isfinite(c)]
    return bool(cvs) and float(np.median(cvs)) >= NOISE_FLOOR


Value = Callable[[TrialResult], "float | None"]


def _measured(t: TrialResult) -> float | None:
    return t.value


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
        return -e.value, -(e.trial.value or 0.0), e.trial.index
    if not noisy([t for t, _ in ok], spread):
        out = [Estimate(_first_best(ts, eligible), v := float(np.mean([y for _, y in ts])), v, v, len(ts))
               for ts in chosen.values()]
        return sorted(out, key=order)
    posterior = _posterior({k: [(y, spread(t)) for t, y in ts] for k, ts in groups.items()}, predicted or {})
    out = [Estimate(_first_best(ts, eligible), m, m - Z95 * sd, m + Z95 * sd, len(ts))
           for k, ts in chosen.items() for m, sd in [posterior[k]]]
    return sorted(out, key=order)


def _first_best(ts: list[tuple[TrialResult, float]], eligible: Callable[[TrialResult], bool]) -> TrialResult:
    """The configuration's best measurement that may be recommended (a re-measurement may miss a
    constraint another measurement of it met: the one that met it is the trial shown)."""
    return sorted(((t, y) for t, y in ts if eligible(t)), key=lambda ty: (-ty[1], ty[0].index))[0][0]


def _posterior(measured: Mapping[str, list[tuple[float, float | None]]],
               predicted: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Empirical-Bayes posterior (mean, sd) of each configuration's noise-free value, from its
    measurements (``measured``: configuration key -> (value, reported relative spread) each).

    Each configuration's measurements are averaged with their reported noise (precision-weighted)
    and shrunk towards what the model predicts there (else the mean of every measurement), by how
    far the truth strays from that target (the spread of the averages around it less the noise:
    method of moments). One lucky measurement is shrunk hard; three that agree are believed. (A
    Gaussian process over the knobs was tried first: with a handful of 10%-noisy points its fitted
    length-scale smooths every configuration to the same value, which ranks nothing.)"""
    spreads = np.array([np.nan if c is None or not np.isfinite(c) else c
                        for ms in measured.values() for _, c in ms], dtype=float)
    median = float(np.nanmedian(spreads)) if np.isfinite(spreads).any() else 0.0
    scale = float(np.median(np.abs([y for ms in measured.values() for y, _ in ms]))) or 1.0
    mean_of, var_of = {}, {}
    for k, ms in measured.items():
        y = np.array([v for v, _ in ms])
        cv = np.array([np.nan if c is None or not np.isfinite(c) else c for _, c in ms], dtype=float)
        cv = np.maximum(np.where(np.isnan(cv), median, cv), median)    # a lone "exact" report is no exception
        w = 1.0 / (cv * np.maximum(np.abs(y), 1e-3 * scale)) ** 2       # a value of 0 still has noise
        mean_of[k] = float((w * y).sum() / w.sum())
        var_of[k] = float(1.0 / w.sum())
    grand = float(np.mean(list(mean_of.values())))
    # only ever discount luck, never add hope: a measurement is believed worse than it came out when
    # the model expected less, but not better than it came out when the model expected more
    target = {k: min(float(predicted.get(k, grand)), mean_of[k]) for k in mean_of}
    gaps = np.array([mean_of[k] - target[k] for k in mean_of])
    noise = float(np.mean(list(var_of.values())))
    between = max(float(np.mean(gaps ** 2)) - noise, 0.05 * noise, 1e-18)
    out = {}
    for k, v in var_of.items():
        shrink = between / (between + v)
        out[k] = (target[k] + shrink * (mean_of[k] - target[k]), float(np.sqrt(shrink * v)))
    return out


def remeasure(estimates: Sequence[Estimate], trials_done: int, max_trials: int,
              in_flight: set[str], space: Space, attempts: Mapping[str, int] | None = None,
              failed: set[str] | None = None) -> Estimate | None:
    """Which leading configuration to measure again, if any: while its challenger is within the
    noise of the leader (P[challenger truly better] >= REMEASURE_PROBABILITY), in the later part
    of the budget, the one of the two with the wider interval (fewer measurements), at most
    MAX_MEASUREMENTS times (``attempts``: trials of it so far, failed ones included), never one
    already in flight nor one that failed to run (``failed``)."""
    if len(estimates) < 2 or trials_done < REMEASURE_FROM * max_trials:
        return None
    lead, challenger = estimates[0], estimates[1]
    spread = np.hypot(lead.sd, challenger.sd)
    if spread <= 0:
        return None
    p_better = float(norm.cdf((challenger.value - lead.value) / spread))
    if p_better < REMEASURE_PROBABILITY:
        return None
    for e in sorted((lead, challenger), key=lambda e: (-e.sd, e is not lead)):
        key = space.key(e.trial.config)
        tried = (attempts or {}).get(key, e.measurements)      # failed attempts count too
        if tried < MAX_MEASUREMENTS and key not in in_flight and key not in (failed or set()):
            return e
    return None


__all__ = ["Estimate", "estimate", "noisy", "remeasure"]
