"""Single-operator models: what ``falcon calibrate`` measures on the user's runners (the paper's
offline phase, per operator kind instead of per whole model).

Each entry is one operator kind of the profiler's vocabulary (:mod:`services.domain.operators`)
built as a small PyTorch module that applies that operator ``depth`` times to a tensor of one
*representative shape* (the kind's shapes are modelled on where it occurs in the zoo's models:
CIFAR/mobile-size convolutions, BERT-tiny/GRU-size matrix products, activations of those
sizes), with random weights, exported to ONNX with a dynamic batch dimension like a zoo model,
so the live backend runs it as it runs any submitted model. Its operator profile is known by
construction: one operator kind, all of the time.

Needs torch (CPU build); imported only when a calibration builds its models.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from services.domain.operators import normalise_op


class OperatorModelError(ValueError):
    """An operator kind or shape no single-operator model can be built for (one line)."""


@dataclass(frozen=True)
class Shape:
    name: str
    params: Mapping[str, int]
    note: str = ""


@dataclass(frozen=True)
class OperatorModel:
    op: str
    shapes: tuple[Shape, ...]
    build: Callable[[Mapping[str, int]], nn.Module]
    example: Callable[[Mapping[str, int], int], tuple[torch.Tensor, ...]]   # (params, batch) -> inputs

    def shape(self, name: str) -> Shape:
        for s in self.shapes:
            if s.name == name:
                return s
        raise OperatorModelError(f"operator {self.op} has no shape {name!r} (shapes: "
                                 f"{', '.join(s.name for s in self.shapes)})")

    def module(self, shape: str) -> nn.Module:
        torch.manual_seed(0)
        return self.build(self.shape(shape).params).eval()


# ---- modules: one operator kind, repeated -------------------------------------------------------
class _Repeat(nn.Module):
    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class _Elementwise(nn.Module):
    """``depth`` applications of an elementwise operator (a binary one with a constant operand
    of the input's shape, so the graph optimiser cannot fold the chain away)."""

    def __init__(self, fn: Callable[..., torch.Tensor], depth: int, shape: tuple[int, ...], binary: bool) -> None:
        super().__init__()
        self.fn, self.binary, self.depth = fn, binary, depth
        self.consts = nn.ParameterList([nn.Parameter(torch.rand(*shape) * 0.1 + 0.95, requires_grad=False)
                                        for _ in range(depth if binary else 0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.depth):
            x = self.fn(x, self.consts[i]) if self.binary else self.fn(x)
        return x


class _BatchMatmul(nn.Module):
    """Attention-style products of activations: (B, heads, seq, d) @ (B, heads, d, seq) and back."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.depth):
            scores = torch.matmul(x, x.transpose(-1, -2)) * 0.01
            x = torch.matmul(scores, x)
        return x


def _conv(p: Mapping[str, int]) -> nn.Module:
    groups = p["c"] if p.get("depthwise") else 1
    return _Repeat([nn.Conv2d(p["c"], p["c"], p["k"], 1, p["k"] // 2, groups=groups, bias=False)
                    for _ in range(p["depth"])])


def _conv_t(p: Mapping[str, int]) -> nn.Module:
    return _Repeat([nn.ConvTranspose2d(p["c"], p["c"], p["k"], 1, p["k"] // 2, bias=False)
                    for _ in range(p["depth"])])


def _dense(p: Mapping[str, int]) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(p["depth"] // 2):      # d -> hidden -> d, as a transformer's feed-forward block
        layers += [nn.Linear(p["d"], p["hidden"], bias=False), nn.Linear(p["hidden"], p["d"], bias=False)]
    return _Repeat(layers)


def _image(p: Mapping[str, int], b: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(b, p["c"], p["hw"], p["hw"]),)


def _tokens(p: Mapping[str, int], b: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(b, p["seq"], p["d"]),)


def _heads(p: Mapping[str, int], b: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(b, p["heads"], p["seq"], p["d"]),)


def _elementwise(fn: Callable[..., torch.Tensor], binary: bool = False) -> Callable[[Mapping[str, int]], nn.Module]:
    return lambda p: _Elementwise(fn, p["depth"], (p["c"], p["hw"], p["hw"]), binary)


# representative shapes (per request; the batch dimension is the knob)
_CONV = (Shape("c16-32px", {"c": 16, "hw": 32, "k": 3, "depth": 4},
               "CIFAR-size 3x3 convolutions (resnet8's first stage)"),
         Shape("c64-16px", {"c": 64, "hw": 16, "k": 3, "depth": 4}, "wider 3x3 convolutions on a smaller map"),
         Shape("dw96-16px", {"c": 96, "hw": 16, "k": 3, "depth": 4, "depthwise": 1},
               "depthwise 3x3 convolutions (mobilenet's blocks)"))
_ELEMENTWISE = (Shape("c16-32px", {"c": 16, "hw": 32, "depth": 8}, "16K elements"),
                Shape("c32-16px", {"c": 32, "hw": 16, "depth": 8}, "8K elements"))

OPERATOR_MODELS: dict[str, OperatorModel] = {m.op: m for m in [
    OperatorModel("conv2d", _CONV, _conv, _image),
    OperatorModel("conv2d_transpose", (
        Shape("c32-16px", {"c": 32, "hw": 16, "k": 3, "depth": 4}, "3x3 transposed convolutions (dcgan)"),
        Shape("c64-8px", {"c": 64, "hw": 8, "k": 3, "depth": 4})), _conv_t, _image),
    OperatorModel("dense", (
        Shape("seq32-d128", {"seq": 32, "d": 128, "hidden": 512, "depth": 4}, "bert-tiny's feed-forward size"),
        Shape("seq1-d256", {"seq": 1, "d": 256, "hidden": 768, "depth": 4}, "an RNN step's matrix-vector products")),
        _dense, _tokens),
    OperatorModel("batch_matmul", (
        Shape("h2-seq32-d64", {"heads": 2, "seq": 32, "d": 64, "depth": 4}, "bert-tiny's attention"),
        Shape("h4-seq64-d32", {"heads": 4, "seq": 64, "d": 32, "depth": 4})), lambda p: _BatchMatmul(p["depth"]),
        _heads),
    OperatorModel("add", _ELEMENTWISE, _elementwise(torch.add, binary=True), _image),
    OperatorModel("multiply", _ELEMENTWISE, _elementwise(torch.mul, binary=True), _image),
    OperatorModel("relu", _ELEMENTWISE, _elementwise(torch.relu), _image),
    OperatorModel("clip", _ELEMENTWISE, _elementwise(lambda x: torch.clamp(x, 0.0, 6.0)), _image),
    OperatorModel("sigmoid", _ELEMENTWISE, _elementwise(torch.sigmoid), _image),
    OperatorModel("tanh", _ELEMENTWISE, _elementwise(torch.tanh), _image),
    OperatorModel("max_pool2d", _ELEMENTWISE, _elementwise(lambda x: nn.functional.max_pool2d(x, 3, 1, 1)), _image),
]}

DEFAULT_SHAPES = 2          # the first shapes of each kind a calibration measures unless told otherwise


def operator_model(op: str) -> OperatorModel:
    kind = normalise_op(op)
    if kind not in OPERATOR_MODELS:
        raise OperatorModelError(f"no single-operator model can be built for operator {op!r} (buildable: "
                                 f"{', '.join(sorted(OPERATOR_MODELS))})")
    return OPERATOR_MODELS[kind]


def model_name(op: str, shape: str) -> str:
    return f"op-{op}-{shape}"


def export_onnx(op: str, shape: str, path: str | Path) -> Path:
    """Write the single-operator model as ONNX with a dynamic batch dimension (as
    :func:`tools.zoo.export_onnx` writes a zoo model); OperatorModelError if it cannot be built."""
    import warnings
    m = operator_model(op)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    params = m.shape(shape).params
    inputs = m.example(params, 1)
    names = [f"input{i}" for i in range(len(inputs))]
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(m.module(shape), inputs, str(p), input_names=names, output_names=["output"],
                              dynamic_axes={n: {0: "batch"} for n in names} | {"output": {0: "batch"}},
                              opset_version=17, dynamo=False)
    except Exception as exc:  # noqa: BLE001 - torch's exporter raises many kinds
        raise OperatorModelError(f"operator {op} shape {shape}: the ONNX export failed: "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    return p


def describe() -> list[dict[str, Any]]:
    """Every buildable operator kind and its shapes (for --help and the plan)."""
    return [{"op": m.op, "shapes": [{"name": s.name, **s.params, "note": s.note} for s in m.shapes]}
            for m in OPERATOR_MODELS.values()]
