"""Table replay: answers a trial from a measured table in the Falcon csv format, as if the
configuration had been deployed and stress-tested for ``trial_seconds`` (default 15 minutes).

Reports the simulated duration and its cost at the configuration's price; ``time_scale`` makes
the runner really wait (simulated seconds x scale) so a local demo looks like a live system.
``backend.noise`` (sigma) multiplies each answer by a fresh log-normal measurement error, seeded
by the trial id, and reports the spread: a table replayed as a noisy live system (benchmarks)."""

from __future__ import annotations

import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from services.domain.falcon_data import DataError, ModelTable
from services.domain.figures import FIGURES, NORMALISED, OPTIONAL_COLUMNS, Figure, row_key
from services.platform.tables import read_model_table
from services.platform.uris import is_remote
from services.domain.spec import DEFAULT_TRIAL_SECONDS
from schemas.events import TrialRequested, TrialResult
from services.trial_runner.backends.base import TrialBackend


class ReplayBackend(TrialBackend):
    kind = "replay"

    def __init__(self, time_scale: float = 0.0, cache_dir: str | Path = ".falcon/cache") -> None:
        self.time_scale = time_scale
        self.cache_dir = cache_dir
        self._tables: dict[str, ModelTable] = {}
        self._lock = threading.Lock()

    def table(self, uri: str) -> ModelTable:
        """The table at a path or URI (file://, s3://, https://), read once."""
        key = uri if is_remote(uri) else str(Path(uri.removeprefix("file://")).resolve())
        with self._lock:
            if key not in self._tables:
                self._tables[key] = read_model_table(uri, self.cache_dir)
            return self._tables[key]

    def measures(self) -> list[str]:
        return [f"depends on the table: its {', '.join(OPTIONAL_COLUMNS)} columns"]

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
        factor, cv = 1.0, row.get("cv")
        noise = float(trial.backend.get("noise") or 0.0)
        if noise > 0:           # a fresh measurement error per trial, as a live stress test has
            rng = np.random.default_rng(zlib.crc32(trial.trial_id.encode()))
            factor = float(np.exp(rng.normal(0.0, noise)))
            cv = float(np.hypot(cv or 0.0, noise))

        def scaled(f: Figure) -> float | None:      # throughput x factor, times / factor (the registry says)
            v = row.get(row_key(f.column or ""))
            return None if v is None else float(v) * factor ** f.throughput_power if f.throughput_power else v
        measured = {f.name: scaled(f) for f in FIGURES if f.on_trial and f.column}
        return trial.result("ok", cost_usd=cost, duration_s=duration,
                            **{**measured, "rps_per_usd_unit": NORMALISED, "stability_cv": cv})
