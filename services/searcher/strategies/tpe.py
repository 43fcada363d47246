"""`tpe`: Optuna's TPE sampler (multivariate), the strongest off-the-shelf baseline we know.

Ordinal knobs are given to Optuna as integer ranks (so TPE sees their order), categorical knobs
as categorical. The study is rebuilt from the history on every ask (like every strategy here),
with a seed that depends on the trial count, so a restarted searcher asks the same. A suggestion
that was already tried is told its known value and asked again (a repeat would waste a trial)."""

from __future__ import annotations

import logging

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.samplers import TPESampler
from optuna.trial import create_trial

from services.domain.space import Config
from services.searcher.strategies.base import Strategy

optuna.logging.set_verbosity(logging.WARNING)
N_STARTUP = 3
MAX_REASKS = 50


class Tpe(Strategy):
    name = "tpe"

    def _distributions(self) -> dict:
        return {k.name: (CategoricalDistribution(list(k.values)) if k.kind == "categorical"
                         else IntDistribution(0, len(k.values) - 1)) for k in self.ctx.space.knobs}

    def _params(self, config: Config) -> dict:
        return {k.name: config[k.name] if k.kind == "categorical" else k.index_of(config[k.name])
                for k in self.ctx.space.knobs}

    def _config(self, params: dict) -> Config:
        return {k.name: params[k.name] if k.kind == "categorical" else k.values[params[k.name]]
                for k in self.ctx.space.knobs}

    def ask(self) -> Config | None:
        space = self.ctx.space
        if len(self.tried) >= space.size:
            return None
        dists = self._distributions()
        sampler = TPESampler(seed=self.ctx.seed * 1000 + len(self.history) + 100 * len(self.in_flight),
                             multivariate=True,
                             n_startup_trials=N_STARTUP)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        known: dict[str, float] = {}
        for config, value in self.history:
            v = value if value is not None else min((x for _, x in self.history if x is not None), default=0.0)
            study.add_trial(create_trial(params=self._params(config), distributions=dists, value=v))
            known[space.key(config)] = v
        worst = min(known.values(), default=0.0)
        for _ in range(MAX_REASKS):
            trial = study.ask(dists)
            config = self._config(trial.params)
            key = space.key(config)
            if not space.allows(config):               # the rules forbid it: as bad as the worst seen
                study.tell(trial, worst)
                continue
            if key not in self.tried:
                return config
            study.tell(trial, known.get(key, worst))     # in flight (a batch): no value yet
        cand = self.pool()                             # TPE keeps repeating itself: first untried one
        return space.config_at(int(cand.min())) if len(cand) else None
