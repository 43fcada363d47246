"""The profiler's decision on a submitted model file: a valid model that TVM cannot import (an
operator its ONNX frontend lacks, e.g. GRU) is still searched, with no operators, no KOPs and a
one-line notice saying why; a file that is not a usable model still fails the search."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import schemas
from schemas import Event
from schemas.events import KopsIdentified, ModelSubmitted
from services.platform.settings import Settings
from services.profiler.app import ProfilerHandlers, profile_submission
from services.profiler.tvm_profile import TvmCannotProfile, profile_model, tvm_version
from tests.helpers import FEATURES, HIDDEN, SEQ, gru_onnx, spec


def submission(path: Path, name: str = "gru") -> ModelSubmitted:
    return ModelSubmitted(replace(spec("gru", strategy="falcon"), model={"name": name, "format": "onnx",
                                                                           "uri": str(path)}), None)


def settings(tmp_path: Path) -> Settings:
    return Settings(cache_dir=str(tmp_path / "cache"), profile_budget_s=10.0)


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event, partition: int | None = None) -> None:
        self.events.append(event)


def handled(sub: ModelSubmitted, tmp_path: Path) -> Event:
    """The one event the profiler service publishes for ``sub``, checked against the schemas."""
    out = Collect()
    event = Event.new(sub, "s-gru", "test")
    asyncio.run(ProfilerHandlers(settings(tmp_path)).on_model_submitted(event, out))
    assert len(out.events) == 1
    published = out.events[0]
    schemas.validate(published)
    assert schemas.decode(schemas.encode(published)).payload == published.payload   # it survives the wire
    return published


def test_the_gru_model_is_valid_and_servable_but_tvm_cannot_import_it(tmp_path):
    import onnxruntime as ort
    path = gru_onnx(tmp_path / "gru.onnx")
    (y_h,) = ort.InferenceSession(str(path)).run(None, {"X": np.ones((2, SEQ, FEATURES), np.float32)})
    assert y_h.shape == (1, 2, HIDDEN) and np.isfinite(y_h).all()
    with pytest.raises(TvmCannotProfile) as err:
        profile_model(str(path))
    assert err.value.stage == "import" and "GRU" in err.value.why


def test_a_valid_model_tvm_cannot_import_is_searched_without_kops_and_says_why(tmp_path):
    path = gru_onnx(tmp_path / "gru.onnx")
    identified = profile_submission(submission(path), settings(tmp_path))
    assert identified.kops == [] and identified.operators == []
    assert identified.notices is not None and len(identified.notices) == 1
    notice = identified.notices[0]
    assert "\n" not in notice and len(notice) < 400
    assert notice.startswith(f"TVM {tvm_version()} cannot import gru.onnx (OpNotImplemented")
    assert "GRU" in notice and "searching without operator knowledge" in notice
    assert tvm_version().count(".") == 1 and tvm_version()[0].isdigit()     # '0.27', not 'unknown'


def test_the_profiler_service_publishes_kops_identified_with_the_notice(tmp_path):
    published = handled(submission(gru_onnx(tmp_path / "gru.onnx")), tmp_path)
    assert published.type == "kops-identified"
    payload = published.payload
    assert isinstance(payload, KopsIdentified) and payload.kops == [] and "GRU" in payload.notices[0]


def test_a_file_that_is_not_a_model_still_fails_the_search(tmp_path):
    bad = tmp_path / "gru.onnx"
    bad.write_bytes(b"definitely not a protobuf \xff\xfe")
    published = handled(submission(bad), tmp_path)
    assert published.type == "search-failed" and "not an ONNX model" in published.payload.reason


def test_a_model_whose_shapes_the_profiler_needs_static_still_fails_with_what_to_do(tmp_path):
    path = gru_onnx(tmp_path / "gru.onnx", symbolic_features=True)
    published = handled(submission(path), tmp_path)
    assert published.type == "search-failed" and "static shapes" in published.payload.reason


def test_a_profile_format_without_its_profile_still_fails(tmp_path):
    published = handled(ModelSubmitted(spec("gru"), None), tmp_path)
    assert published.type == "search-failed" and "operator profile" in published.payload.reason


def test_kops_identified_without_notices_is_written_as_before():
    plain = KopsIdentified(spec("gru"), [], ["dense"], 0.05)
    assert "notices" not in plain.to_data()
    noted = replace(plain, notices=["TVM cannot import it"])
    assert KopsIdentified.from_data(noted.to_data()) == noted
