"""Search quality on the public target tables, and where the offline knowledge misleads
(tables perturbed on purpose). Small versions of `python -m bench.search`, asserting the
behaviour a user pays for: few trials to a near-optimal configuration."""

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from bench.perturb_tables import perturb
from bench.search import run_one
from services.domain.falcon_data import read_csv, read_operator_profile
from services.domain.space import PAPER_SPACE
from services.trial_runner.backends import ReplayBackend
from tests.helpers import PROFILES, TARGETS, knowledge

MODELS = ("resnet-101", "bert-large", "gru", "mobilenet-v2")


def curve(strategy, model, table=None, trials=15, seed=0):
    ops = read_operator_profile(PROFILES / model / "operators.csv")
    return run_one(strategy, table or TARGETS / f"reg-{model}.csv", ops, knowledge(), PAPER_SPACE, trials, seed,
                   ReplayBackend()).curve


def test_falcon_is_near_optimal_in_few_trials_on_the_public_targets():
    runs = np.array([curve("falcon", m) for m in MODELS])
    best = np.array([ReplayBackend().table(str(TARGETS / f"reg-{m}.csv")).best()[1] for m in MODELS])
    assert runs[:, 0].mean() >= 0.90            # after 1 trial
    assert runs[:, 2].mean() >= 0.985           # after 3
    assert runs[:, 5].mean() >= 0.99            # after 6
    # each table's optimum within 15 trials, or within 0.5% of it where the search stopped on its
    # own convergence rule (as the product does: bert-large converges after 10 trials at .993/.997)
    assert (runs[:, 14] >= 0.995 * best).all() and np.isclose(runs[:, 14], best).sum() >= 3
    prior = np.array([curve("prior", m) for m in MODELS])
    assert (runs.mean(0) >= prior.mean(0) - 1e-9).all()     # never worse than the curves alone


@cache
def perturbed(tmp: Path, model: str, noise: float, swap: bool) -> Path:
    columns, rows = perturb(*read_csv(TARGETS / f"reg-{model}.csv"), noise, swap, np.random.default_rng(7))
    out = tmp / f"reg-{model}-{noise}-{swap}.csv"
    import csv
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return out


@pytest.mark.parametrize("noise, swap", [(0.15, False), (0.05, True)])
def test_falcon_stays_ahead_of_random_where_the_offline_knowledge_misleads(tmp_path_factory, noise, swap):
    tmp = tmp_path_factory.getbasetemp()
    falcon = np.array([curve("falcon", m, perturbed(tmp, m, noise, swap)) for m in MODELS])
    rnd = np.array([curve("random", m, perturbed(tmp, m, noise, swap), seed=s) for m in MODELS for s in range(3)])
    checkpoints = [0, 2, 5, 14]                  # after 1, 3, 6 and 15 trials
    assert (falcon[:, checkpoints].mean(0) >= rnd[:, checkpoints].mean(0)).all()
