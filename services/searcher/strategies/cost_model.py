"""`cost-model`: the operator cost model alone (services.knowledge.cost_model): every candidate
ranked by the RPS/$ a roofline of the model's operators on the device's public specs predicts,
recalibrated per device on the trials so far. No offline tables needed: it is what the product
knows of a model on hardware nobody measured, and the benchmark's measure of the cost model."""

from __future__ import annotations

import numpy as np

from services.common.space import Config
from services.knowledge.cost_model import CostModel, CostModelError
from services.knowledge.hardware import DEFAULT_HARDWARE, HardwareError
from services.searcher.strategies.base import LOCAL_SEEDS, Strategy, StrategyError


def cost_model_for(strategy: Strategy, calibrated: bool = True) -> CostModel | None:
    """The cost model of the search's model, calibrated on its successful trials unless
    ``calibrated`` is False (None when the operators or prices are not known)."""
    ctx = strategy.ctx
    if not ctx.operators or ctx.hourly is None:
        return None
    try:
        model = CostModel(list(ctx.operators), DEFAULT_HARDWARE, ctx.hourly)
    except (CostModelError, HardwareError):
        return None
    done = [(c, v) for c, v in strategy.history if v is not None and v > 0]
    return model.calibrate(done) if calibrated and done else model


class CostModelStrategy(Strategy):
    name = "cost-model"

    def ask(self) -> Config | None:
        space = self.ctx.space
        idx, y, _ = self.observed()
        cand = self.pool(idx[np.argsort(-y, kind="stable")[:LOCAL_SEEDS]])
        if not len(cand):
            return None
        model = cost_model_for(self)
        if model is None:
            raise StrategyError("the cost-model strategy needs the model's operator profile and prices")
        try:
            pred = model.predict([space.config_at(int(i)) for i in cand])
        except (CostModelError, HardwareError) as exc:
            raise StrategyError(f"the cost model cannot price this space: {exc}") from None
        feasible = self.feasibility(cand)
        if feasible is not None:
            pred = pred * feasible
        return space.config_at(int(cand[int(np.argmax(pred))]))
