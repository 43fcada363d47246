"""Connection and tuning settings, read from the environment (12-factor) so the same code runs
on the local stack, in tests and in the deploy manifests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from schemas import DEFAULT_MAX_MESSAGE_BYTES
from services.domain.space import MAX_SPACE_SIZE


@dataclass(frozen=True)
class Settings:
    broker: str = "127.0.0.1:9092"           # Kafka bootstrap servers, comma separated
    redis_url: str = "redis://127.0.0.1:6379/0"
    partitions: int = 4                      # per topic; the unit of scale-out of each service
    session_timeout_s: float = 10.0
    heartbeat_s: float = 1.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_model_bytes: int = 2 * 1024**3       # model files larger than this are refused
    max_space_size: int = MAX_SPACE_SIZE     # spaces of more configurations are refused (Space.from_dict max_size)
    trial_time_scale: float = 0.0            # replay: real seconds slept per simulated second
    trial_lease_s: float = 120.0             # a claimed trial whose runner vanished is free again after this
    trial_max_attempts: int = 3              # runs of one trial (runner deaths) before it is reported failed
    handler_retries: int = 5                 # failures of a handler (not of the infrastructure) before dead-lettering
    retry_backoff_s: float = 0.2             # first wait between handler retries (doubles, capped at 5 s)
    knowledge_wait_s: float = 60.0           # a search in a space without knowledge waits this long for the treebuilder
    log_level: str = "info"
    log_format: str = "text"                 # text | json (one object per line, with search/trial ids)
    metrics_port: int = 0                    # /metrics (Prometheus) and /healthz on this port; 0 = off
    # security (see README): Kafka TLS/SASL and Redis password/TLS; secrets never appear in repr
    broker_security_protocol: str = "PLAINTEXT"   # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    broker_sasl_mechanism: str = "PLAIN"          # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    broker_sasl_username: str = ""
    broker_sasl_password: str = field(default="", repr=False)
    broker_ca_file: str = ""                      # CA bundle that signed the broker's certificate
    broker_cert_file: str = ""                    # client certificate (mutual TLS)
    broker_key_file: str = ""
    redis_password: str = field(default="", repr=False)
    redis_ca_file: str = ""                       # for rediss:// URLs
    # profiler (TVM) and live trials
    profile_target: str = "llvm"                  # llvm | cuda: where operators are timed
    profile_budget_s: float = 120.0               # time limit for the timed profile runs
    trust_torch_archives: bool = False            # .pt2 loading may unpickle: trusted submitters only
    runner_classes: str = "replay"                # comma list of trial classes this runner serves (see topics)
    compiled_cache_dir: str = ".falcon/compiled"  # live backend: optimised models per (model, level)
    cache_dir: str = ".falcon/cache"              # model files and tables downloaded from s3:// or https:// URIs

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Every field reads FALCON_<FIELD NAME IN CAPITALS>, e.g. FALCON_REDIS_URL."""
        e = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            name = "FALCON_" + f.name.upper()
            if name in e:
                kind = type(getattr(cls(), f.name))
                values[f.name] = (e[name].strip().lower() in ("1", "true", "yes", "on")) if kind is bool \
                    else kind(e[name])
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        return {"FALCON_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
