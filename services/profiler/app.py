"""Profiler service shell: model-submitted -> kops-identified (or search-failed with the reason).

The operator profile either comes with the submission (e.g. falcon-data operators.csv) or is
measured here with Apache TVM from the model file (ONNX, or a trusted torch.export archive); a
model that cannot be read, imported or compiled ends the search with search-failed and why."""

from __future__ import annotations

import asyncio
import logging

import faust

from schemas import Event
from services.common.bus import Publisher, create_app, run_worker, subscribe
from services.common.settings import Settings
from services.common.spec import SearchSpec
from services.profiler.intake import MODEL_FILE_FORMATS, check_model_file
from services.profiler.kops import ProfileError, aggregate, identify_kops
from services.profiler.tvm_profile import profile_model

SERVICE = "profiler"
PROFILE_FORMATS = ("falcon-profile",)     # model formats whose operators arrive with the submission
log = logging.getLogger("falcon.profiler")


def profile_submission(data: dict, settings: Settings) -> tuple[list[dict], list[str], float]:
    """(operator table, KOPs, threshold) for a submission, or ProfileError/ValueError with why.
    Blocking (TVM compiles and runs the model): the shell calls it in a worker thread."""
    spec = SearchSpec.from_dict(data["spec"])
    operators = data.get("operators")
    fmt = spec.model.get("format")
    path = None
    if fmt in MODEL_FILE_FORMATS:   # ModelFileError: not a model, too big
        path = check_model_file(spec.model.get("uri"), fmt, settings.max_model_bytes)
    if not operators:
        if fmt in PROFILE_FORMATS:
            raise ProfileError(f"model {spec.model['name']!r} of format {fmt!r} came without its operator profile")
        if path is not None:
            prof = profile_model(str(path), 1, settings.profile_target, budget_s=settings.profile_budget_s,
                                 trust_pickle=settings.trust_torch_archives, fmt=fmt)
            operators = prof.operators()
            log.info("profiled %s with TVM: compile %.1fs, %d runs, CV %s", path.name, prof.compile_s, prof.runs,
                     prof.run_cv)
        else:
            raise ProfileError(f"model format {fmt!r} cannot be profiled by this profiler "
                               f"(it reads {list(MODEL_FILE_FORMATS)} files and operator profiles that come "
                               f"with the submission: {list(PROFILE_FORMATS)})")
    table = [o.to_dict() for o in aggregate(operators)]
    return table, identify_kops(table, spec.kop_threshold), spec.kop_threshold


class ProfilerHandlers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_model_submitted(self, event: Event, publisher: Publisher) -> None:
        try:
            table, kops, threshold = await asyncio.to_thread(profile_submission, event.data, self.settings)
        except ValueError as exc:      # ProfileError, ProfilerError, ModelFileError, SpaceError, PricingError
            log.warning("search=%s profile failed: %s", event.search_id, exc)
            await publisher.publish(event.caused("search-failed", {"stage": "profile", "reason": str(exc)},
                                                 SERVICE))
            return
        log.info("search=%s kops=%s", event.search_id, kops)
        await publisher.publish(event.caused("kops-identified", {
            "spec": event.data["spec"], "operators": table, "kops": kops, "threshold": threshold}, SERVICE))


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    subscribe(app, settings, "model-submitted", ProfilerHandlers(settings).on_model_submitted)
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
