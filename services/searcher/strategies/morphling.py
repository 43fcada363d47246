"""`morphling`: a Morphling-style meta-learned regressor (Morphling, SoCC'21, written from the
paper): small MLPs meta-trained across the source models, adapted online to the new model's
trials, and a UCB-like acquisition over the ensemble.

Meta-training: an ensemble of MLPs, each fitted to the configurations -> RPS/$ of a bootstrap
sample of the source models (the spread of the ensemble is the uncertainty). Online: every member
is fine-tuned from its meta-trained weights on the trials so far (a few gradient steps, as in
MAML's adaptation), then the next trial maximises mean + kappa * std over untried configurations."""

from __future__ import annotations

import copy
import warnings
from weakref import WeakKeyDictionary

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from services.domain.objectives import RPS_PER_USD
from services.domain.space import Config
from services.knowledge import Knowledge
from services.searcher.strategies.base import LOCAL_SEEDS, Strategy

ENSEMBLE = 5
KAPPA = 1.0
ADAPT_STEPS = 30
PRETRAIN_EPOCHS = 40


# meta-trained nets per knowledge object: the strategy's own derived model, built once per
# (space, dataset version) and never written into the shared knowledge
_META_TRAINED: "WeakKeyDictionary[Knowledge, list[MLPRegressor]]" = WeakKeyDictionary()


def meta_train(X: np.ndarray, sources: np.ndarray, seed: int = 0) -> list[MLPRegressor]:
    nets = []
    rng = np.random.default_rng(seed)
    for e in range(ENSEMBLE):
        pick = rng.integers(0, len(sources), len(sources))
        net = MLPRegressor(hidden_layer_sizes=(32, 32), max_iter=PRETRAIN_EPOCHS, batch_size=256,
                           learning_rate_init=3e-3, random_state=seed + e)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            nets.append(net.fit(np.tile(X, (len(pick), 1)), sources[pick].ravel()))
    return nets


class Morphling(Strategy):
    name = "morphling"
    offline = frozenset({RPS_PER_USD})        # its nets are meta-trained on RPS/$ tables

    def _nets(self) -> list[MLPRegressor] | None:
        k = self.ctx.knowledge
        if k is None or not k.sources:
            return None
        if k not in _META_TRAINED:
            _META_TRAINED[k] = meta_train(k.encoded, np.array(list(k.sources.values())))
        return _META_TRAINED[k]

    def ask(self) -> Config | None:
        space, k = self.ctx.space, self.ctx.knowledge
        idx, y, _ = self.observed()
        cand = self.pool(idx[np.argsort(-y, kind="stable")[:LOCAL_SEEDS]])
        if not len(cand):
            return None
        nets = self._nets()
        if nets is None or k is None:                     # nothing to meta-learn from
            return self.random_untried(self.untried_mask() if self.exhaustive else cand)
        X = k.encoded                                     # the nets read the grid's encoding
        preds = []
        for net in nets:
            if len(y):
                net = copy.deepcopy(net)
                net.batch_size = len(y)                   # full-batch steps on the few trials
                for _ in range(ADAPT_STEPS):
                    net.partial_fit(X[k.on_grid(idx)], y)
            preds.append(net.predict(X[k.on_grid(cand)]))
        p = np.array(preds)
        score = p.mean(0) + KAPPA * p.std(0)
        return space.config_at(int(cand[int(np.argmax(score))]))
