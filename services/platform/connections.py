"""Every Redis and Kafka client of the project is built here from :class:`Settings`, so TLS,
SASL and passwords apply to all of them the same way."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context
from redis.asyncio import Redis

from services.platform.settings import Settings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class ConfigError(ValueError):
    pass


def redis_client(s: Settings) -> Redis:
    """redis:// or rediss:// (TLS, verified against FALCON_REDIS_CA_FILE when given)."""
    kwargs: dict[str, Any] = {}
    if s.redis_password:
        kwargs["password"] = s.redis_password
    if s.redis_url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        if s.redis_ca_file:
            kwargs["ssl_ca_certs"] = s.redis_ca_file
    elif s.redis_ca_file:
        raise ConfigError("FALCON_REDIS_CA_FILE is set but FALCON_REDIS_URL is not rediss://")
    return Redis.from_url(s.redis_url, **kwargs)


def _ssl_context(s: Settings) -> ssl.SSLContext:
    return create_ssl_context(cafile=s.broker_ca_file or None, certfile=s.broker_cert_file or None,
                              keyfile=s.broker_key_file or None)


def kafka_kwargs(s: Settings) -> dict[str, Any]:
    """Security keyword arguments for aiokafka producers, consumers and admin clients."""
    proto = s.broker_security_protocol.upper()
    if proto not in PROTOCOLS:
        raise ConfigError(f"FALCON_BROKER_SECURITY_PROTOCOL={proto!r}: one of {PROTOCOLS}")
    kw: dict[str, Any] = {"security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = _ssl_context(s)
    if proto.startswith("SASL"):
        if not s.broker_sasl_username:
            raise ConfigError(f"{proto} needs FALCON_BROKER_SASL_USERNAME and FALCON_BROKER_SASL_PASSWORD")
        kw.update(sasl_mechanism=s.broker_sasl_mechanism, sasl_plain_username=s.broker_sasl_username,
                  sasl_plain_password=s.broker_sasl_password)
    return kw


def faust_credentials(s: Settings) -> faust.types.auth.CredentialsT | None:
    """The same security settings for the faust workers."""
    kw = kafka_kwargs(s)
    proto = kw["security_protocol"]
    if proto == "PLAINTEXT":
        return None
    if proto == "SSL":
        return faust.SSLCredentials(kw["ssl_context"])
    return faust.SASLCredentials(username=s.broker_sasl_username, password=s.broker_sasl_password,
                                 ssl_context=kw.get("ssl_context"), mechanism=s.broker_sasl_mechanism)
