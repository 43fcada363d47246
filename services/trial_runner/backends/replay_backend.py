"""Table replay: answers a trial from a measured table in the Falcon csv format, as if the
configuration had been deployed and stress-tested for ``trial_seconds`` (default 15 minutes).

Reports the simulated duration and its cost at the configuration's price; ``time_scale`` makes
the runner really wait (simulated seconds x scale) so a local demo looks like a live system."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from services.common.falcon_data import DataError, ModelTable, load_model_table
from services.common.spec import DEFAULT_TRIAL_SECONDS
from schemas.events import TrialRequested, TrialResult
from services.trial_runner.backends.base import TrialBackend


class ReplayBackend(TrialBackend):
    kind = "replay"

    def __init__(self, time_scale: float = 0.0) -> None:
        self.time_scale = time_scale
        self._tables: dict[Path, ModelTable] = {}
        self._lock = threading.Lock()

    def table(self, path: str) -> ModelTable:
        p = Path(path).resolve()
        with self._lock:
            if p not in self._tables:
                self._tables[p] = load_model_table(p)
            return self._tables[p]

    def capabilities(self) -> dict[str, Any]:
        return {"any": "every configuration of the requested table"}

    def run(self, trial: TrialRequested) -> TrialResult:
        duration = float(trial.backend.get("trial_seconds", DEFAULT_TRIAL_SECONDS))
        cost = trial.price_per_hour * duration / 3600.0
        path = trial.backend.get("table")
        if not path:
            return trial.failed("replay backend needs backend.table (a csv path)")
        try:
            table = self.table(str(path))
        except (OSError, DataError) as exc:
            return trial.failed(f"cannot read table {path}: {exc}")
        row = table.lookup(trial.config)
        if row is None:
            return trial.failed(f"configuration {dict(trial.config)} is not in table {table.name}")
        if self.time_scale > 0:
            time.sleep(duration * self.time_scale)
        return trial.result("ok", value=float(row["value"]), cost_usd=cost, duration_s=duration, rps=row.get("rps"),
                            p50_ms=row.get("p50_ms"), p99_ms=row.get("p99_ms"), stability_cv=row.get("cv"))
