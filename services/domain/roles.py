"""Knob roles: which knob of a space is the batch, the cores, the GPU type, its memory, its power
cap, the precision, the replicas, the graph optimisation level, the batching delay. Declared
once, in the space file (``roles: {batch: bs, gpu: device}``), with defaults for the usual names
(a role whose knob the space lacks is simply not in play). Read by pricing (through the spec),
the cost model, the KOP curves, the strategies, the routing of trials, the live backend and the
hardware check.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from services.domain.space_rules import SpaceError


@dataclass(frozen=True)
class KnobRoles:
    batch: str = "batchsize"          # requests per inference
    cpus: str = "cpus"                # serving cores (priced per vCPU)
    gpu: str = "gputype"              # the GPU type (priced per instance; routes trials to runners)
    gpu_mem: str = "gpumem"           # GB of GPU memory reserved (priced as a share of the GPU)
    gpu_power: str = "gpupower"       # power cap, % of TDP
    precision: str = "precision"      # fp32, fp16, int8
    replicas: str = "replicas"        # model instances
    graph_opt: str = "graph_opt"      # ONNX Runtime graph optimisation level
    queue_delay: str = "queue_delay_us"   # the dynamic batcher's max queue delay, microseconds

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "KnobRoles":
        """``{role: knob name}``; roles not named keep their default (SpaceError: an unknown role)."""
        if not d:
            return DEFAULT_ROLES
        if not isinstance(d, Mapping):
            raise SpaceError("'roles' must map a role to a knob name, e.g. {batch: bs}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpaceError(f"unknown knob role(s) {unknown} (known: {', '.join(sorted(known))})")
        if not all(isinstance(v, str) and v for v in d.values()):
            raise SpaceError("a knob role names a knob: a non-empty string")
        return replace(DEFAULT_ROLES, **{str(k): str(v) for k, v in d.items()})

    def to_dict(self) -> dict[str, str]:
        """The roles that differ from the defaults (what a space file must say)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(DEFAULT_ROLES, f.name)}


DEFAULT_ROLES = KnobRoles()
