"""Profiler service shell: model-submitted -> kops-identified (or search-failed with the reason).

The operator profile either comes with the submission (e.g. falcon-data operators.csv) or is
measured here with Apache TVM from the model file (ONNX, or a trusted torch.export archive); a
file that is not a usable model ends the search with search-failed and why. A valid model that
TVM itself cannot import, compile or run (an operator its frontend lacks, e.g. ONNX GRU) is still
searched: kops-identified with no operators and no KOPs, and a notice that says why."""

from __future__ import annotations

import asyncio
import logging

import faust

from schemas import Event
from schemas.events import KopsIdentified, ModelSubmitted, SearchFailed
from services.platform.bus import Publisher, create_app, run_worker, subscribe
from services.platform.model_files import MODEL_FILE_FORMATS, check_model_file
from services.platform.settings import Settings
from services.profiler.kops import ProfileError, aggregate, identify_kops
from services.profiler.tvm_profile import TvmCannotProfile, profile_model

SERVICE = "profiler"
PROFILE_FORMATS = ("falcon-profile",)     # model formats whose operators arrive with the submission
log = logging.getLogger("falcon.profiler")


def profile_submission(submitted: ModelSubmitted, settings: Settings) -> KopsIdentified:
    """The operator table and KOPs of a submission, or ProfileError/ValueError with why.
    Blocking (TVM compiles and runs the model): the shell calls it in a worker thread."""
    spec = submitted.spec
    operators = submitted.operators
    fmt = spec.model.get("format")
    path = None
    if fmt in MODEL_FILE_FORMATS:   # ModelFileError: not a model, too big
        path = check_model_file(spec.model.get("uri"), fmt, settings.max_model_bytes, settings.cache_dir)
    if not operators:
        if fmt in PROFILE_FORMATS:
            raise ProfileError(f"model {spec.model['name']!r} of format {fmt!r} came without its operator profile")
        if path is not None:
            try:
                prof = profile_model(str(path), 1, settings.profile_target, budget_s=settings.profile_budget_s,
                                     trust_pickle=settings.trust_torch_archives, fmt=fmt)
            except TvmCannotProfile as exc:   # its format's parser read it: servable, only not profilable
                log.warning("%s", exc)
                return KopsIdentified(spec, [], [], spec.kop_threshold, [exc.notice()])
            operators = prof.operators()
            log.info("profiled %s with TVM: compile %.1fs, %d runs, CV %s", path.name, prof.compile_s, prof.runs,
                     prof.run_cv)
        else:
            raise ProfileError(f"model format {fmt!r} cannot be profiled by this profiler "
                               f"(it reads {list(MODEL_FILE_FORMATS)} files and operator profiles that come "
                               f"with the submission: {list(PROFILE_FORMATS)})")
    table = [o.to_dict() for o in aggregate(operators)]
    return KopsIdentified(spec, table, identify_kops(table, spec.kop_threshold), spec.kop_threshold)


class ProfilerHandlers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def on_model_submitted(self, event: Event[ModelSubmitted], publisher: Publisher) -> None:
        submitted = event.payload
        try:
            identified = await asyncio.to_thread(profile_submission, submitted, self.settings)
        except ValueError as exc:      # ProfileError, ProfilerError, ModelFileError
            await self.on_unusable(event, exc, publisher)
            return
        log.info("search=%s kops=%s", event.search_id, identified.kops)
        await publisher.publish(event.caused(identified, SERVICE))

    async def on_unusable(self, event: Event, error: ValueError, publisher: Publisher) -> None:
        """A submission that cannot be searched (its model, profile, space or prices): the search
        fails at once with the reason."""
        log.warning("search=%s profile failed: %s", event.search_id, error)
        await publisher.publish(event.caused(SearchFailed("profile", str(error)), SERVICE))


def build(settings: Settings) -> faust.App:
    app = create_app(SERVICE, settings)
    handlers = ProfilerHandlers(settings)
    subscribe(app, settings, "model-submitted", handlers.on_model_submitted, on_unusable=handlers.on_unusable)
    return app


def main() -> None:
    settings = Settings.from_env()
    run_worker(build(settings), settings)
