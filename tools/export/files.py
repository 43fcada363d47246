"""The I/O shell of ``falcon export``: read what the pure core needs from a search's state and its
model file, and write the exported files (the CLI and the dashboard's download both call
:func:`export_search`)."""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from schemas.events import TrialResult
from services.platform.model_files import ModelFileError, model_path
from services.domain.objectives import RPS_PER_USD
from services.domain.pricing import PricingError
from services.searcher.search import SearchState, estimate_data
from services.trial_runner import model_repo
from services.trial_runner.model_repo import MODEL_PY
from tools.export.artefacts import (
    DEFAULT_HEADROOM, DEFAULT_MAX_REPLICAS, Export, ExportRefused, Recommendation, Tensor, refusal, serving,
)
from tools.export.deploy import export


def onnx_io(path: Path) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The model's inputs and outputs as Triton declares them (the served trials' reading)."""
    try:
        return model_repo.onnx_io(path)
    except model_repo.ModelIOError as exc:
        raise ExportRefused(str(exc)) from None


def _served(t: TrialResult) -> bool:
    return (t.details or {}).get("mode") == "served"


def recommendation(state: SearchState, model: Path | None, date: str | None = None) -> Recommendation | None:
    """The search's recommendation with the figures it rests on (None: it has none). ``model``:
    the local model file (its inputs and outputs), None where there is none (replay)."""
    best = state.best
    if best is None:
        return None
    kind = str(state.spec.backend.get("kind"))
    details: Mapping[str, Any] = best.details or {}
    try:
        hourly: float | None = state.spec.prices.hourly(best.config)
    except PricingError:
        hourly = None
    inputs: tuple[Tensor, ...] = ()
    outputs: tuple[Tensor, ...] = ()
    if model is not None and kind == "live":
        inputs, outputs = onnx_io(model)
    peak = details.get("peak") or {}
    notes: tuple[str, ...] = ()
    if kind == "live" and not _served(best):
        notes = ("NOTE: the trials ran in-process (closed loop, one batch in flight, no server), not served behind "
                 "Triton: the RPS is batch / batch latency and the p99 a batch's latency; measure the recommendation "
                 "served before relying on the sizing",)
    cpus = next((k.values for k in state.spec.space.knobs if k.name == state.spec.space.roles.cpus), None)
    est = estimate_data(state)
    sizing_rps = robust_rps(state, best, est)
    return Recommendation(
        search_id=state.search_id, model=str(state.spec.model.get("name")), config=dict(best.config),
        backend_kind=kind, trial=best.index + 1, rps=best.rps, p99_ms=best.p99_ms, usd_per_hour=hourly,
        date=date or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), p50_ms=best.p50_ms,
        slo_p99_ms=state.spec.constraints.slo_p99_ms or details.get("slo_p99_ms"),
        sizing_rps=sizing_rps, estimate=est, estimate_unit=state.spec.objective.unit(state.rps_per_usd_unit),
        measured_at=(f"concurrency {peak['concurrency']} (requests of 1 sample)" if peak.get("concurrency")
                     else None),
        inputs=inputs, outputs=outputs, model_uri=state.spec.model.get("uri"),
        model_bytes=model.stat().st_size if model is not None else None,
        space_max_cpus=max(int(c) for c in cpus) if cpus else None, notes=notes, served=_served(best),
        deviation=details.get("output_deviation"), roles=state.spec.space.roles)


def robust_rps(state: SearchState, best: TrialResult, est: Mapping[str, Any] | None) -> float | None:
    """The search's noise-robust estimate of the recommended configuration's peak RPS (the sizing
    never goes above the measurement: :attr:`Recommendation.peak_for_sizing`). For RPS/$ (a fixed
    price per configuration) it is the measured peak scaled by the estimate over the measurement
    (the posterior mean shrinks a lucky draw); for another objective, the mean peak of the
    configuration's measurements."""
    if not best.rps or best.rps <= 0:
        return best.rps
    objective = state.spec.objective
    if objective.name == RPS_PER_USD and est and est.get("trial_id") == best.trial_id:
        measured = objective.natural(state.objective_value(best))
        value = est.get("value")
        return best.rps * value / measured if measured and measured > 0 and value and value > 0 else best.rps
    same = [t.rps for t in state.trials if t.ok and t.rps and dict(t.config) == dict(best.config)]
    return sum(same) / len(same) if same else best.rps


def local_model(state: SearchState, cache_dir: Path) -> Path | None:
    uri = state.spec.model.get("uri")
    if not uri or state.spec.backend.get("kind") != "live":
        return None
    try:
        return model_path(str(uri), cache_dir=cache_dir)
    except ModelFileError as exc:
        raise ExportRefused(f"the search's model file cannot be read: {exc}") from None


def precision_file(model: Path, precision: str, cache_dir: Path) -> Path:
    """The ONNX file in the recommended precision: the served trials' own conversion."""
    if precision == "fp32":
        return model
    from services.trial_runner.precision import prepare
    return prepare(model, precision, cache_dir)


def build(state: SearchState, fmt: str, cache_dir: Path, load_rps: float | None = None,
          headroom: float = DEFAULT_HEADROOM, max_replicas: int = DEFAULT_MAX_REPLICAS,
          storage_uri: str | None = None, date: str | None = None) -> tuple[Export, Path]:
    """The export of ``state``'s recommendation and the model file to ship with it (ExportRefused:
    why not, before anything is written)."""
    best = state.best
    kind = str(state.spec.backend.get("kind"))
    if state.status == "running" and best is not None:
        raise ExportRefused(f"search {state.search_id} is still running ({len(state.trials)} of "
                            f"{state.spec.stop.max_trials} trials): its recommendation may still change; export it "
                            f"when it has completed (falcon watch {state.search_id})")
    if best is None or kind != "live":
        # refused before the model is read: no recommendation, or a replay table's
        rec = None if best is None else Recommendation(state.search_id, "", dict(best.config), kind, 0, None, None,
                                                      None, "")
        why = refusal(rec, state.search_id, state.status, state.stop_reason)
        assert why is not None
        raise ExportRefused(why)
    model = local_model(state, cache_dir)
    assert model is not None
    rec = recommendation(state, model, date)
    assert rec is not None
    e = export(rec, fmt, MODEL_PY.read_text(), load_rps, headroom, max_replicas, storage_uri)
    return e, precision_file(model, serving(rec.applied).config.precision, cache_dir / "precision")


def write(e: Export, model: Path, out_dir: Path) -> list[Path]:
    """Write the export's files and the model under ``out_dir``; the paths written."""
    written = []
    for rel, text in e.files.items():
        p = out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)
    dest = out_dir / e.model_dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, dest)
    return [*written, dest]


def zipped(e: Export, model: Path, folder: str) -> bytes:
    """The export as a zip archive (the dashboard's download), everything under ``folder/``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, text in e.files.items():
            z.writestr(f"{folder}/{rel}", text)
        z.write(model, f"{folder}/{e.model_dest}")
    return buf.getvalue()
