"""What a search believes each tried configuration is worth, and which one to recommend.

With exact measurements (replay of a clean table; no runner-reported spread) a configuration is
worth what it measured, and the recommendation is the best measurement. With noisy ones (the
runner reports a relative spread, ``stability_cv``) the best *measurement* is a winner's curse:
the more configurations a search tries, the likelier a mediocre one measured lucky tops the list.
So the recommendation is the best *posterior mean* of a Gaussian process over every successful
measurement (each with its own reported noise): a lucky outlier among worse neighbours is pulled
down, a configuration measured twice is trusted more. The interval is the posterior's 95%.

Pure and deterministic (the GP's optimiser is seeded): the search state, the report and a state
rebuilt from the log all compute the same recommendation from the same trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import warnings

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern

from schemas.events import TrialResult
from services.common.space import Space

Z95 = 1.96
# re-measure the leader or its challenger while the challenger is this likely to be truly better
REMEASURE_PROBABILITY = 0.2
MAX_MEASUREMENTS = 3        # of one configuration
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

    def to_data(self) -> dict[str, float | int | str]:
        return {"trial_id": self.trial.trial_id, "value": self.value, "low": self.low, "high": self.high,
                "measurements": self.measurements}


def noisy(trials: Sequence[TrialResult]) -> bool:
    """Whether any successful measurement came with a spread (else they are taken as exact)."""
    return any(t.ok and (t.stability_cv or 0.0) > 0 for t in trials)


def estimate(space: Space, trials: Sequence[TrialResult], eligible: Callable[[TrialResult], bool],
             seed: int = 0) -> list[Estimate]:
    """The eligible configurations (e.g. those meeting the constraints), best first, each with
    its estimate; every successful trial informs the model, eligible or not."""
    ok = [t for t in trials if t.ok and t.value is not None]
    groups: dict[str, list[TrialResult]] = {}
    for t in ok:
        groups.setdefault(space.key(t.config), []).append(t)
    chosen = {k: ts for k, ts in groups.items() if any(eligible(t) for t in ts)}
    if not chosen:
        return []
    if not noisy(ok):
        out = [Estimate(_first_best(ts), v := float(np.mean([t.value for t in ts])), v, v, len(ts))
               for ts in chosen.values()]
        return sorted(out, key=lambda e: (-e.value, e.trial.index))
    keys = list(chosen)
    mean, sd = _posterior(space, ok, [chosen[k][0].config for k in keys], seed)
    out = [Estimate(_first_best(chosen[k]), float(m), float(m - Z95 * s), float(m + Z95 * s), len(chosen[k]))
           for k, m, s in zip(keys, mean, sd)]
    return sorted(out, key=lambda e: (-e.value, e.trial.index))


def _first_best(ts: list[TrialResult]) -> TrialResult:
    return sorted(ts, key=lambda t: (-(t.value or 0.0), t.index))[0]


def _posterior(space: Space, ok: list[TrialResult], at: list, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """GP posterior mean and sd of the noise-free value at ``at``, from every measurement.

    The measurement noise is what the runners reported (per trial); the signal variance is the
    measurements' variance less that noise (method of moments), not a free hyper-parameter: with a
    handful of noisy points a likelihood fit happily explains everything as noise and ranks every
    configuration the same. Only the length-scales are fitted."""
    y = np.array([float(t.value) for t in ok])
    cvs = np.array([t.stability_cv if t.stability_cv and np.isfinite(t.stability_cv) else np.nan for t in ok])
    cvs = np.where(np.isnan(cvs), np.nanmedian(cvs) if np.isfinite(cvs).any() else 0.0, cvs)
    scale = float(np.abs(y).max()) or 1.0
    z = y / scale
    centre = float(z.mean())
    noise_var = np.maximum(cvs * np.abs(z), 1e-4) ** 2
    signal_var = max(float(z.var()) - float(noise_var.mean()), 0.25 * float(noise_var.mean()), 1e-6)
    X = space.encode_indices(np.array([space.index(t.config) for t in ok]))
    kernel = ConstantKernel(signal_var, "fixed") * Matern(np.full(X.shape[1], 0.5), (0.05, 5.0), nu=2.5)
    gp = GaussianProcessRegressor(kernel, alpha=noise_var, normalize_y=False, n_restarts_optimizer=1,
                                  random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(X, z - centre)
    mu, sd = gp.predict(space.encode_indices(np.array([space.index(c) for c in at])), return_std=True)
    return (mu + centre) * scale, sd * scale


def remeasure(estimates: Sequence[Estimate], trials_done: int, max_trials: int,
              in_flight: set[str], space: Space) -> Estimate | None:
    """Which leading configuration to measure again, if any: while its challenger is within the
    noise of the leader (P[challenger truly better] >= REMEASURE_PROBABILITY), in the later part
    of the budget, the one of the two with the wider interval (fewer measurements), at most
    MAX_MEASUREMENTS times, never one already in flight."""
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
        if e.measurements < MAX_MEASUREMENTS and space.key(e.trial.config) not in in_flight:
            return e
    return None


__all__ = ["Estimate", "estimate", "noisy", "remeasure"]
