"""Models and replay tables by URI against real servers started here: an S3-API server (moto's
standalone server) and a plain HTTP server on loopback. Credentials come from the usual AWS_*
variables and never appear in an error or a log line; the size limit is checked before a byte
is downloaded."""

import functools
import http.server
import logging
import shutil
import threading

import pytest

from schemas.events import TrialRequested
from services.domain.falcon_data import DataError
from services.platform.tables import read_model_table
from services.platform.model_files import ModelFileError, check_model_file
from services.platform.uris import UriError, fetch, redact
from services.trial_runner.backends import ReplayBackend
from tests.helpers import PROFILES, TARGETS
from tests.unit.services.platform.test_model_files import tiny_onnx
from tools import localstack
from tools.app.submit import SubmitOptions, build_submission

pytestmark = pytest.mark.integration

SECRET = "sEcReT-never-logged-42"
BUCKET = "falcon-models"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3-API server on a free loopback port, a bucket with a model and a table in it, and
    the AWS_* environment pointing at it (as a CI job would set it)."""
    from moto.server import ThreadedMotoServer
    port = localstack.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "falcon-ci", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    import boto3
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    model = tiny_onnx(tmp_path_factory.mktemp("s3src") / "m.onnx")
    client.upload_file(str(model), BUCKET, "models/m.onnx")
    client.upload_file(str(TARGETS / "reg-gru.csv"), BUCKET, "tables/reg-gru.csv")
    yield f"s3://{BUCKET}"
    mp.undo()
    server.stop()


def test_a_model_on_s3_is_fetched_once_checked_and_cached(s3, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    path = check_model_file(f"{s3}/models/m.onnx", "onnx", cache_dir=tmp_path / "cache")
    assert path.is_file() and path.is_relative_to(tmp_path / "cache") and path.name == "m.onnx"
    again = check_model_file(f"{s3}/models/m.onnx", "onnx", cache_dir=tmp_path / "cache")
    assert again == path and len(list((tmp_path / "cache").rglob("*.onnx"))) == 1
    assert SECRET not in caplog.text


def test_the_size_limit_is_checked_before_downloading(s3, tmp_path):
    with pytest.raises(ModelFileError, match="over the .* limit \\(checked before downloading\\)"):
        check_model_file(f"{s3}/models/m.onnx", "onnx", max_bytes=10, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


def test_missing_objects_and_wrong_credentials_say_why_without_the_secret(s3, tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match=f"{s3}/models/nope.onnx does not exist"):
        check_model_file(f"{s3}/models/nope.onnx", "onnx", cache_dir=tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_model_table(f"{s3}/tables/nope.csv", tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")    # nothing listens there
    with pytest.raises(UriError) as err:
        fetch(f"{s3}/models/m.onnx", tmp_path, 10**6)
    assert "cannot be read" in str(err.value) and SECRET not in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_credentials_in_a_uri_are_never_repeated():
    assert redact("https://user:pa55@host.example:8443/m.onnx?X-Amz-Signature=abc") == "https://host.example:8443/m.onnx"
    with pytest.raises(UriError) as err:
        fetch("ftp://user:pa55@host/m.onnx", "/tmp", 10)
    assert "pa55" not in str(err.value) and "not supported" in str(err.value)


def test_the_replay_backend_answers_from_a_table_on_s3(s3, tmp_path):
    backend = ReplayBackend(cache_dir=tmp_path)
    cfg = {"batchsize": 8, "cpus": 2, "gpumem": 1.2, "gpupower": 100, "gputype": "T4"}
    t = TrialRequested("s/t0", 0, cfg, {"name": "gru"}, {"kind": "replay", "table": f"{s3}/tables/reg-gru.csv",
                                                           "trial_seconds": 900.0}, 0.3)
    r = backend.run(t)
    local = read_model_table(str(TARGETS / "reg-gru.csv"))
    assert r.status == "ok" and r.rps_per_usd == pytest.approx(local.lookup(cfg)["value"])


def test_submit_accepts_s3_uris_and_checks_the_space_against_the_remote_table(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("FALCON_HOME", str(tmp_path))
    sid, sub = build_submission(SubmitOptions(model="gru", profile=str(PROFILES / "gru" / "operators.csv"),
                                              model_file=f"{s3}/models/m.onnx",
                                              replay_table=f"{s3}/tables/reg-gru.csv", backend="replay"))
    assert sub.spec.backend["table"] == f"{s3}/tables/reg-gru.csv" and sub.spec.model["uri"] == f"{s3}/models/m.onnx"
    space = tmp_path / "space.yaml"
    space.write_text("knobs:\n  batchsize: [8]\n  cpu: [1]\n  gpumem: [1.2]\n  gpupower: [100]\n  gputype: [T4]\n")
    with pytest.raises(ValueError, match="knob\\(s\\) cpu of the space are not in replay table gru"):
        build_submission(SubmitOptions(model="gru", profile=str(PROFILES / "gru" / "operators.csv"),
                                       replay_table=f"{s3}/tables/reg-gru.csv", space=str(space)))
    with pytest.raises(ValueError, match="does not exist"):
        build_submission(SubmitOptions(model="gru", profile=str(PROFILES / "gru" / "operators.csv"),
                                       replay_table=f"{s3}/tables/missing.csv"))


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(TARGETS / "reg-gru.csv", root / "reg-gru.csv")
    tiny_onnx(root / "m.onnx")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None          # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_models_and_tables_over_http(http_server, tmp_path):
    path = check_model_file(f"{http_server}/m.onnx", "onnx", cache_dir=tmp_path)
    assert path.is_file()
    table = read_model_table(f"{http_server}/reg-gru.csv", tmp_path)
    assert table.name == "gru" and len(table.rows) == 1440
    with pytest.raises(DataError, match="does not exist"):
        read_model_table(f"{http_server}/nope.csv", tmp_path)
