"""Price catalogue: what a configuration costs per hour, hence what a trial costs and the
objective's denominator (RPS per $).

Model: a GPU instance's on-demand price is split into its vCPUs (priced like a CPU-only
instance's vCPU) and its GPUs (the rest, shared equally by the ``gpus`` it carries: an 8-GPU
p4d.24xlarge prices one A100 at an eighth of its GPU part). A configuration pays for the share of
one GPU's memory it reserves and for its CPU cores. The power cap does not change the bill
(clouds do not bill power). ``no_gpu_value`` (e.g. "none") names the GPU-knob value of CPU-only
configurations, which pay for their cores alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from services.domain.roles import DEFAULT_ROLES


class PricingError(ValueError):
    pass


@dataclass(frozen=True)
class InstanceType:
    instance: str
    usd_per_hour: float
    vcpus: int
    gpu_mem_gb: float        # of one GPU
    gpus: int = 1            # GPUs the instance carries


@dataclass(frozen=True)
class PriceCatalogue:
    usd_per_vcpu_hour: float
    instances: Mapping[str, InstanceType]   # GPU type -> the instance that carries it
    # which knobs are priced: the space's roles (SearchSpec aligns them); a price file may still
    # name them (gpu_knob, ...), as older files did
    gpu_knob: str = DEFAULT_ROLES.gpu
    gpu_mem_knob: str = DEFAULT_ROLES.gpu_mem
    cpu_knob: str = DEFAULT_ROLES.cpus
    no_gpu_value: str | None = None         # GPU-knob value meaning "no GPU" (CPU-only configurations)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PriceCatalogue":
        try:
            instances = {gpu: InstanceType(str(i["instance"]), float(i["usd_per_hour"]), int(i["vcpus"]),
                                           float(i["gpu_mem_gb"]), int(i.get("gpus", 1)))
                         for gpu, i in d["instances"].items()}
            no_gpu = d.get("no_gpu_value")
            cat = cls(float(d["usd_per_vcpu_hour"]), instances, d.get("gpu_knob", DEFAULT_ROLES.gpu),
                      d.get("gpu_mem_knob", DEFAULT_ROLES.gpu_mem), d.get("cpu_knob", DEFAULT_ROLES.cpus),
                      None if no_gpu is None else str(no_gpu))
        except (KeyError, TypeError, ValueError) as exc:
            raise PricingError(f"bad price catalogue: {exc!r}") from None
        for gpu, inst in cat.instances.items():
            if inst.gpus < 1:
                raise PricingError(f"{gpu} ({inst.instance}): gpus must be at least 1, not {inst.gpus}")
            if gpu == cat.no_gpu_value:
                raise PricingError(f"{gpu!r} is the no-GPU value; it cannot also be priced as an instance")
            if inst.usd_per_hour - inst.vcpus * cat.usd_per_vcpu_hour <= 0:
                raise PricingError(f"{gpu} ({inst.instance}): its vCPUs alone cost more than the instance")
        return cat

    @classmethod
    def from_file(cls, path: str | Path) -> "PriceCatalogue":
        from services.domain.space import read_config_file
        p = Path(path)
        data = read_config_file(p, "price file", PricingError)
        if not isinstance(data, Mapping):
            raise PricingError(f"price file {p}: expected a mapping at the top level")
        return cls.from_dict(data.get("prices", data))

    def to_dict(self) -> dict[str, Any]:
        """The catalogue as written; ``gpus`` and ``no_gpu_value`` only where they are not the
        defaults, so older catalogues keep their exact form on the wire."""
        d: dict[str, Any] = {
            "usd_per_vcpu_hour": self.usd_per_vcpu_hour, "gpu_knob": self.gpu_knob,
            "gpu_mem_knob": self.gpu_mem_knob, "cpu_knob": self.cpu_knob,
            "instances": {g: {"instance": i.instance, "usd_per_hour": i.usd_per_hour, "vcpus": i.vcpus,
                              "gpu_mem_gb": i.gpu_mem_gb, **({"gpus": i.gpus} if i.gpus != 1 else {})}
                          for g, i in self.instances.items()}}
        if self.no_gpu_value is not None:
            d["no_gpu_value"] = self.no_gpu_value
        return d

    def hourly(self, config: Mapping[str, Any]) -> float:
        """$ per hour of serving with this configuration."""
        cpus = float(config.get(self.cpu_knob, 1))
        price = cpus * self.usd_per_vcpu_hour
        if self.gpu_knob in config and str(config[self.gpu_knob]) != self.no_gpu_value:
            gpu = str(config[self.gpu_knob])
            if gpu not in self.instances:
                raise PricingError(f"no price for GPU type {gpu!r} (catalogue has {sorted(self.instances)})")
            inst = self.instances[gpu]
            gpu_part = (inst.usd_per_hour - inst.vcpus * self.usd_per_vcpu_hour) / inst.gpus
            share = 1.0
            if self.gpu_mem_knob in config:
                share = min(1.0, float(config[self.gpu_mem_knob]) / inst.gpu_mem_gb)
            price += gpu_part * share
        return price

    def trial_cost(self, config: Mapping[str, Any], duration_s: float) -> float:
        return self.hourly(config) * duration_s / 3600.0

    def requests_per_usd(self, rps: float, config: Mapping[str, Any]) -> float:
        """The objective: requests served per dollar = RPS / ($/s)."""
        return rps * 3600.0 / self.hourly(config)


# Public EC2 on-demand prices (us-east-1, Linux). vCPU price from c5.large ($0.085/h, 2 vCPU).
DEFAULT_PRICES = PriceCatalogue.from_dict({
    "usd_per_vcpu_hour": 0.0425,
    "instances": {
        "V100": {"instance": "p3.2xlarge", "usd_per_hour": 3.06, "vcpus": 8, "gpu_mem_gb": 16},
        "T4": {"instance": "g4dn.xlarge", "usd_per_hour": 0.526, "vcpus": 4, "gpu_mem_gb": 16},
        "K80": {"instance": "p2.xlarge", "usd_per_hour": 0.90, "vcpus": 4, "gpu_mem_gb": 12},
        "M60": {"instance": "g3s.xlarge", "usd_per_hour": 0.75, "vcpus": 4, "gpu_mem_gb": 8},
    },
})
