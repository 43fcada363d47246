import faust
import pytest

from services.platform.connections import ConfigError, faust_credentials, kafka_kwargs, redis_client
from services.platform.settings import Settings


def test_plaintext_by_default():
    assert kafka_kwargs(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_ssl_reaches_both_clients(tmp_path):
    s = Settings(broker_security_protocol="SASL_SSL", broker_sasl_mechanism="SCRAM-SHA-512",
                 broker_sasl_username="falcon", broker_sasl_password="s3cret")
    kw = kafka_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "falcon" and kw["ssl_context"] is not None
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "falcon"


def test_bad_security_settings_are_refused():
    with pytest.raises(ConfigError, match="one of"):
        kafka_kwargs(Settings(broker_security_protocol="TLS"))
    with pytest.raises(ConfigError, match="USERNAME"):
        kafka_kwargs(Settings(broker_security_protocol="SASL_PLAINTEXT"))
    with pytest.raises(ConfigError, match="rediss"):
        redis_client(Settings(redis_ca_file="/etc/ssl/ca.pem"))


def test_secrets_stay_out_of_logs_and_env_round_trips():
    s = Settings(broker_sasl_password="s3cret", redis_password="hunter2", partitions=8, retry_backoff_s=0.5)
    assert "s3cret" not in repr(s) and "hunter2" not in repr(s)
    assert Settings.from_env(s.as_env()) == s
