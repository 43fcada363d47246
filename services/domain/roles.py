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

    def by_role(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with every knob that plays a role under the role's default name (what the
        code that applies a role reads: the serving mapping, the live backend, runner adverts),
        the other knobs as they are named: ``{bs: 8, cpus: 2}`` with ``batch: bs`` ->
        ``{batchsize: 8, cpus: 2}``. A knob named like another role's default that plays no role
        here keeps its name only where no role knob takes that name."""
        renamed = {getattr(self, f.name): getattr(DEFAULT_ROLES, f.name) for f in fields(self)
                   if getattr(self, f.name) != getattr(DEFAULT_ROLES, f.name)}
        if not renamed:
            return dict(config)
        out = {k: v for k, v in config.items() if k not in renamed}
        out.update({renamed[k]: v for k, v in config.items() if k in renamed})
        return out

    def default_name(self, knob: str) -> str:
        """The default name of the role ``knob`` plays (``bs`` -> ``batchsize`` with ``batch: bs``);
        a knob that plays no role: its own name."""
        for f in fields(self):
            if getattr(self, f.name) == knob:
                return str(getattr(DEFAULT_ROLES, f.name))
        return knob

    def space_name(self, default_name: str) -> str:
        """The space's name for the knob whose role's default name is ``default_name`` (the name
        itself for a knob that plays no role): what messages about ``by_role`` configs say."""
        for f in fields(self):
            if getattr(DEFAULT_ROLES, f.name) == default_name:
                return str(getattr(self, f.name))
        return default_name


DEFAULT_ROLES = KnobRoles()
