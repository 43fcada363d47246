"""A served configuration as a Triton model repository entry: the model configuration that a
served trial deploys and that ``falcon export`` ships, written once. Pure (no I/O).

The trial runner writes it beside the model and the Python-backend ``model.py``
(``services/trial_runner/triton_model.py``) and starts Triton on it; the export writes the same
configuration, for Triton's ONNX Runtime backend (``config.pbtxt``) and for the Python backend
(``configs/python-ort.pbtxt``: what the trials ran), with a header of the figures it rests on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from services.domain.serving import ServingConfig

MODEL_FILE = "model.onnx"       # the ONNX Runtime backend's default file name; model.py reads it too
PYTHON_CONFIG = "python-ort"    # configs/<this>.pbtxt: the Python-backend variant of an exported entry


@dataclass(frozen=True)
class Tensor:
    """A model input or output as Triton declares it: dims without the batch dimension."""
    name: str
    data_type: str               # TYPE_FP32, TYPE_INT64, ...
    dims: tuple[int, ...]


class Enum(str):
    """A protobuf enum value (written bare: KIND_CPU, TYPE_FP32)."""


def model_config(name: str, config: ServingConfig, inputs: Sequence[Tensor], outputs: Sequence[Tensor],
                 backend: str, gpu_mem_bytes: int | None = None) -> dict[str, Any]:
    """Triton's model configuration for ``backend`` (onnxruntime or python): the serving mapping
    (``ServingConfig.triton_model_config``, with its ONNX Runtime settings on either backend)
    plus what a repository entry needs beside it: the inputs and outputs, the GPU of a GPU
    instance group, ONNX Runtime's GPU memory limit, and the knob values it was made from."""
    cfg = config.triton_model_config(name, "onnxruntime")
    cfg["backend"] = backend
    if backend == "onnxruntime":
        cfg["default_model_filename"] = MODEL_FILE
    cfg["input"] = [{"name": t.name, "data_type": Enum(t.data_type), "dims": list(t.dims)} for t in inputs]
    cfg["output"] = [{"name": t.name, "data_type": Enum(t.data_type), "dims": list(t.dims)} for t in outputs]
    gpu = config.device == "gpu"
    groups = [{**g, "kind": Enum(g["kind"]), **({"gpus": [0]} if gpu else {})} for g in cfg["instance_group"]]
    params = {**cfg.pop("parameters", {}), "graph_opt": {"string_value": config.graph_opt},
              "precision": {"string_value": config.precision}}
    if gpu_mem_bytes:
        params["gpu_mem_limit"] = {"string_value": str(gpu_mem_bytes)}
    order = ["name", "backend", "default_model_filename", "max_batch_size", "input", "output", "dynamic_batching"]
    out = {k: cfg[k] for k in order if k in cfg}
    out["instance_group"] = groups
    out.update({k: v for k, v in cfg.items() if k not in out})
    out["parameters"] = params
    return out


def _scalar(v: Any) -> str:
    if isinstance(v, Enum):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def pbtxt(fields: Mapping[str, Any], indent: str = "") -> str:
    """Protobuf text format of a model configuration given as a dict (maps such as
    ``parameters`` are written as repeated key/value entries, as protobuf wants them)."""
    out = []
    for key, v in fields.items():
        if key == "parameters":
            out += [f'{indent}parameters {{ key: {json.dumps(k)} value {{ string_value: '
                    f'{json.dumps(str(p["string_value"]))} }} }}' for k, p in v.items()]
        elif isinstance(v, Mapping):
            out.append(f"{indent}{key} {{\n{pbtxt(v, indent + '  ')}{indent}}}")
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], Mapping):
            items = [f"{indent}  {{\n{pbtxt(x, indent + '    ')}{indent}  }}" for x in v]
            out.append(f"{indent}{key} [\n" + ",\n".join(items) + f"\n{indent}]")
        elif isinstance(v, (list, tuple)):
            out.append(f"{indent}{key}: [ {', '.join(_scalar(x) for x in v)} ]")
        else:
            out.append(f"{indent}{key}: {_scalar(v)}")
    return "".join(line + "\n" for line in out)


def config_pbtxt(name: str, config: ServingConfig, inputs: Sequence[Tensor], outputs: Sequence[Tensor],
                 backend: str, gpu_mem_bytes: int | None = None) -> str:
    return pbtxt(model_config(name, config, inputs, outputs, backend, gpu_mem_bytes))
