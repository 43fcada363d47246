"""Connection and tuning settings, read from the environment (12-factor) so the same code runs
on the local stack, in tests and in the deploy manifests."""

from __future__ import annotations

import os
from dataclasses import dataclass

from schemas import DEFAULT_MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Settings:
    broker: str = "127.0.0.1:9092"           # Kafka bootstrap servers, comma separated
    redis_url: str = "redis://127.0.0.1:6379/0"
    partitions: int = 4                      # per topic; the unit of scale-out of each service
    session_timeout_s: float = 10.0
    heartbeat_s: float = 1.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    trial_time_scale: float = 0.0            # replay: real seconds slept per simulated second
    trial_lease_s: float = 120.0             # a claimed trial whose runner vanished is free again after this
    trial_max_attempts: int = 3              # runs of one trial (runner deaths) before it is reported failed
    handler_retries: int = 5                 # failures of a handler (not of the infrastructure) before dead-lettering
    retry_backoff_s: float = 0.2             # first wait between handler retries (doubles, capped at 5 s)
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env
        d = cls()
        return cls(
            broker=e.get("FALCON_BROKER", d.broker),
            redis_url=e.get("FALCON_REDIS_URL", d.redis_url),
            partitions=int(e.get("FALCON_PARTITIONS", d.partitions)),
            session_timeout_s=float(e.get("FALCON_SESSION_TIMEOUT_S", d.session_timeout_s)),
            heartbeat_s=float(e.get("FALCON_HEARTBEAT_S", d.heartbeat_s)),
            max_message_bytes=int(e.get("FALCON_MAX_MESSAGE_BYTES", d.max_message_bytes)),
            trial_time_scale=float(e.get("FALCON_TRIAL_TIME_SCALE", d.trial_time_scale)),
            trial_lease_s=float(e.get("FALCON_TRIAL_LEASE_S", d.trial_lease_s)),
            trial_max_attempts=int(e.get("FALCON_TRIAL_MAX_ATTEMPTS", d.trial_max_attempts)),
            handler_retries=int(e.get("FALCON_HANDLER_RETRIES", d.handler_retries)),
            retry_backoff_s=float(e.get("FALCON_RETRY_BACKOFF_S", d.retry_backoff_s)),
            log_level=e.get("FALCON_LOG_LEVEL", d.log_level),
        )

    def as_env(self) -> dict[str, str]:
        return {
            "FALCON_BROKER": self.broker, "FALCON_REDIS_URL": self.redis_url,
            "FALCON_PARTITIONS": str(self.partitions),
            "FALCON_SESSION_TIMEOUT_S": str(self.session_timeout_s),
            "FALCON_HEARTBEAT_S": str(self.heartbeat_s),
            "FALCON_MAX_MESSAGE_BYTES": str(self.max_message_bytes),
            "FALCON_TRIAL_TIME_SCALE": str(self.trial_time_scale),
            "FALCON_TRIAL_LEASE_S": str(self.trial_lease_s),
            "FALCON_TRIAL_MAX_ATTEMPTS": str(self.trial_max_attempts),
            "FALCON_HANDLER_RETRIES": str(self.handler_retries),
            "FALCON_RETRY_BACKOFF_S": str(self.retry_backoff_s),
            "FALCON_LOG_LEVEL": self.log_level,
        }
