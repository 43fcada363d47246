"""Trial backends: something that deploys a configuration and measures it.

A backend gets a :class:`TrialSpec` and returns a :class:`TrialOutcome`; a failure to measure
is an outcome with status 'failed' and a reason (the search goes on), never an exception that
would stall the consumer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping

from services.common.space import Config


@dataclass(frozen=True)
class TrialSpec:
    trial_id: str
    config: Config
    model: Mapping[str, Any]
    backend: Mapping[str, Any]
    price_per_hour: float


@dataclass(frozen=True)
class TrialOutcome:
    status: Literal["ok", "failed"]
    value: float | None
    duration_s: float
    cost_usd: float
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class TrialBackend(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def run(self, trial: TrialSpec) -> TrialOutcome:
        """Blocking: the shell calls it in a worker thread."""

    def capabilities(self) -> dict[str, Any]:
        """Knob -> values this backend can apply here (advertised by the runner)."""
        return {}
