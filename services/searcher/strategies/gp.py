"""Gaussian-process pieces shared by the BO strategies (scikit-learn GP, EI acquisition)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel


def fit_gp(X: np.ndarray, y: np.ndarray, seed: int = 0, noise: np.ndarray | None = None) -> GaussianProcessRegressor:
    """Matern-5/2 ARD GP with a learned noise level (live measurements are noisy); ``noise``:
    each observation's known noise sd (the runner's measured spread), added to the diagonal."""
    d = X.shape[1]
    kernel = (ConstantKernel(0.1, (1e-4, 10.0)) * Matern(np.full(d, 0.5), (0.05, 20.0), nu=2.5)
              + WhiteKernel(1e-4, (1e-6, 1e-1)))
    alpha = 1e-10 if noise is None else 1e-10 + np.asarray(noise, dtype=float) ** 2
    gp = GaussianProcessRegressor(kernel, alpha=alpha, normalize_y=False, n_restarts_optimizer=1, random_state=seed)
    with warnings.catch_warnings():       # bounds reached on tiny data sets are expected, not news
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(X, y)


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    sd = np.maximum(sd, 1e-9)
    z = (mu - best - xi) / sd
    return (mu - best - xi) * norm.cdf(z) + sd * norm.pdf(z)
