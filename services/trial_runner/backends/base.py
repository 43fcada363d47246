"""Trial backends: something that deploys a configuration and measures it.

A backend gets the :class:`TrialRequested` the searcher published and returns the
:class:`TrialResult` (the project's one trial-result type, ``schemas/events.py``); a failure to
measure is a result with status 'failed' and a reason (the search goes on), never an exception
that would stall the consumer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from schemas.events import TrialRequested, TrialResult


class TrialBackend(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def run(self, trial: TrialRequested) -> TrialResult:
        """Blocking: the shell calls it in a worker thread."""

    def capabilities(self) -> dict[str, Any]:
        """Knob -> values this backend can apply here (advertised by the runner)."""
        return {}

    def measures(self) -> list[str]:
        """The figures of a trial result this backend measures (rps, p50_ms, p99_ms, stability_cv),
        advertised so a constraint no runner can check is refused at submission."""
        return []
