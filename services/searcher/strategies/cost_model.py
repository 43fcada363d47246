"""`cost-model`: the operator cost model alone (services.knowledge.cost_model): every candidate
ranked by the RPS/$ a roofline of the model's operators on the device's public specs predicts,
recalibrated per device on the trials so far. No offline tables needed: it is what the product
knows of a model on hardware nobody measured, and the benchmark's measure of the cost model."""

from __future__ import annotations

import numpy as np

from services.domain.objectives import P99, RPS_PER_USD, USD_FOR_LOAD
from services.domain.pricing import PricingError
from services.domain.space import Config
from services.knowledge.cost_model import CostModel, CostModelError
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareError
from services.searcher.strategies.base import LOCAL_SEEDS, Strategy, StrategyError


def cost_model_for(strategy: Strategy, calibrated: bool = True) -> CostModel | None:
    """The cost model of the search's model, calibrated on its successful trials unless
    ``calibrated`` is False (None when the operators or prices are not known). Under RPS/$ the
    told values are RPS/$; under another objective it calibrates on the measured RPS at the
    configuration's price (requests per $), so its RPS predictions are real throughputs."""
    ctx = strategy.ctx
    if not ctx.operators or ctx.hourly is None:
        return None
    try:
        model = CostModel(list(ctx.operators), DEFAULT_HARDWARE, ctx.hourly, knobs=ctx.space.roles)
    except (CostModelError, HardwareError):
        return None
    if ctx.objective.name == RPS_PER_USD:
        done = [(c, v) for c, v in strategy.history if v is not None and v > 0]
    else:
        done = []
        for (c, v), rps in zip(strategy.history, strategy.rps):
            if v is None or not rps:
                continue
            try:
                done.append((c, rps * 3600.0 / float(ctx.hourly(c))))
            except (PricingError, ZeroDivisionError):
                continue
    return model.calibrate(done) if calibrated and done else model


class CostModelStrategy(Strategy):
    name = "cost-model"
    offline = frozenset({RPS_PER_USD, USD_FOR_LOAD, P99})    # it predicts RPS: a load's cost, a batch's time
    needs_offline = True

    def ask(self) -> Config | None:
        space = self.ctx.space
        idx, y, _ = self.observed()
        cand = self.pool(idx[np.argsort(-y, kind="stable")[:LOCAL_SEEDS]])
        if not len(cand):
            return None
        model = cost_model_for(self)
        if model is None:
            raise StrategyError("the cost-model strategy needs the model's operator profile and prices")
        configs = [space.config_at(int(i)) for i in cand]
        try:
            if self.ctx.objective.name == RPS_PER_USD:
                pred = model.predict(configs)
            else:       # RPS -> the objective (replicas rounded up at the load; a batch's time)
                assert self.ctx.hourly is not None
                batch, price = self.batch_and_price(cand)
                pred = self.ctx.objective.from_rps(model.predict_rps(configs), price, batch)
        except (CostModelError, HardwareError, PricingError) as exc:
            raise StrategyError(f"the cost model cannot price this space: {exc}") from None
        feasible = self.feasibility(cand)
        if feasible is not None:
            if self.ctx.objective.maximise:
                pred = pred * feasible
            else:           # negative values: a multiplicative penalty would favour them
                finite = pred[np.isfinite(pred)]
                pred = pred - (1.0 - feasible) * ((float(np.ptp(finite)) if len(finite) else 0.0) or 1.0)
        return space.config_at(int(cand[int(np.argmax(pred))]))
