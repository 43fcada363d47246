"""Shared test data: paths into shared/falcon-data and a valid search spec."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from services.domain.space import PAPER_SPACE
from services.domain.spec import SearchSpec, StopRules
from services.knowledge import Knowledge, OfflineDataset

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "falcon-data"
TARGETS = DATA / "models" / "targets"
PROFILES = DATA / "models" / "operators"


def spec(table: str = "mobilenet-v2", max_trials: int = 6, **kw: Any) -> SearchSpec:
    stop = StopRules(max_trials, kw.pop("target_value", None), kw.pop("budget_usd", None))
    kw.setdefault("strategy", "random")      # plumbing tests; falcon's quality has its own tests
    return SearchSpec(model={"name": table, "format": "falcon-profile", "uri": None},
                      backend={"kind": "replay", "table": str(TARGETS / f"reg-{table}.csv"), "trial_seconds": 900.0},
                      stop=stop, **kw)


@cache
def knowledge() -> Knowledge:
    """What the public falcon-data offline dataset says about the paper's space (built once)."""
    return Knowledge.build(OfflineDataset.from_folder(DATA), PAPER_SPACE)


def run_falcon(home: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    """``falcon ARGS`` as a user runs it against the local stack in ``home`` (none of this
    process's FALCON_* settings leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FALCON_")}
    env["FALCON_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


async def trial_runs(settings: Any, search_id: str) -> dict[str, int]:
    """How many times a backend ran each trial of a search (the runners' count in Redis)."""
    from redis.asyncio import Redis

    from services.platform.redis_keys import TRIAL_RUNS
    redis = Redis.from_url(settings.redis_url)
    try:
        return {k.decode(): int(v) for k, v in (await redis.hgetall(TRIAL_RUNS)).items()
                if k.decode().startswith(search_id + "/")}
    finally:
        await redis.aclose()


HIDDEN, FEATURES, SEQ = 8, 4, 5      # gru_onnx: hidden units, input features, sequence length


def gru_onnx(path: Path, symbolic_features: bool = False) -> Path:
    """A tiny ONNX GRU (ONNX Runtime serves it; TVM 0.27's Relax ONNX frontend has no GRU)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, [1, 3 * HIDDEN, FEATURES],
                           rng.standard_normal(3 * HIDDEN * FEATURES).astype(np.float32).ravel().tolist())
    r = helper.make_tensor("R", TensorProto.FLOAT, [1, 3 * HIDDEN, HIDDEN],
                           rng.standard_normal(3 * HIDDEN * HIDDEN).astype(np.float32).ravel().tolist())
    features = "features" if symbolic_features else FEATURES
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", SEQ, features])
    # batch first, as torch's batch_first GRU exports: ONNX's GRU takes [seq, batch, features]
    nodes = [helper.make_node("Transpose", ["X"], ["Xt"], perm=[1, 0, 2]),
             helper.make_node("GRU", ["Xt", "W", "R"], ["", "Y_h"], hidden_size=HIDDEN)]
    y_h = helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, "batch", HIDDEN])
    graph = helper.make_graph(nodes, "gru", [x], [y_h], initializer=[w, r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
