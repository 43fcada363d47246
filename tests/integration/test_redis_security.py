"""Redis with a password and Redis over TLS, both real redis-server processes."""

import subprocess

import pytest
from redis.exceptions import AuthenticationError, ResponseError

from services.platform.connections import redis_client
from services.platform.settings import Settings
from services.searcher.store import SearchStore
from services.trial_runner.backends import ReplayBackend
from tests.helpers import spec
from tools import localstack
from tools.harness import run_search

pytestmark = pytest.mark.integration


def a_state():
    return run_search("sec-1", spec(max_trials=2), ["conv2d"], [], ReplayBackend())


async def test_password_protected_redis(tmp_path):
    port = localstack.free_port()
    proc = localstack.start_redis(port, tmp_path / "redis.log", password="hunter2")
    try:
        good = Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_password="hunter2")
        store = SearchStore(redis_client(good))
        await store.put(a_state())
        assert (await store.get("sec-1")) == a_state()
        with pytest.raises((AuthenticationError, ResponseError)):
            await SearchStore(redis_client(Settings(redis_url=f"redis://127.0.0.1:{port}/0"))).get("sec-1")
    finally:
        proc.terminate()
        proc.wait(10)


async def test_redis_over_tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    port = localstack.free_port()
    proc = subprocess.Popen([localstack.redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                             "--tls-auth-clients", "no", "--save", ""], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        localstack.wait_port(port, proc=proc)
        s = Settings(redis_url=f"rediss://127.0.0.1:{port}/0", redis_ca_file=str(cert))
        store = SearchStore(redis_client(s))
        await store.put(a_state())
        assert (await store.get("sec-1")) == a_state()
    finally:
        proc.terminate()
        proc.wait(10)
