"""Pluggable trial backends, chosen per trial by ``backend.kind`` in the request."""

from __future__ import annotations

from services.trial_runner.backends.base import TrialBackend
from services.trial_runner.backends.live_backend import LiveBackend
from services.trial_runner.backends.replay_backend import ReplayBackend

__all__ = ["LiveBackend", "ReplayBackend", "TrialBackend"]
