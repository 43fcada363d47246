"""Built-in model zoo: the paper's model families as PyTorch definitions with random weights.

Serving performance does not depend on weight values, so demos, tests and the live-measured
tables get real models without downloading anything. Each entry builds the module and an
example input for a batch size; ``tiny`` members (small inputs and widths) are the ones tests
use. Needs torch (CPU build); nothing here is imported unless a zoo model is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ZooModel:
    name: str
    family: str          # cnn | bert | transformer | rnn | gan
    build: Callable[[], nn.Module]
    example: Callable[[int], tuple[torch.Tensor, ...]]   # batch size -> inputs
    tiny: bool = False
    note: str = ""

    def module(self) -> nn.Module:
        torch.manual_seed(0)
        return self.build().eval()


# ---- CNNs ----------------------------------------------------------------------------------
class _Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(width)
        self.down = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                     if stride != 1 or cin != width else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.down(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.down = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                     if stride != 1 or cin != out else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.down(x))


class ResNet(nn.Module):
    def __init__(self, block: type, layers: list[int], widths: tuple[int, ...] = (64, 128, 256, 512),
                 stem: int = 64, classes: int = 1000, small_input: bool = False) -> None:
        super().__init__()
        if small_input:   # CIFAR-style stem for 32x32 images
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem), nn.ReLU(),
                                      nn.MaxPool2d(3, 2, 1))
        blocks, cin = [], stem
        for i, (n, w) in enumerate(zip(layers, widths)):
            for j in range(n):
                blocks.append(block(cin, w, 2 if j == 0 and i > 0 else 1))
                cin = w * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def _vgg(cfg: list[int | str]) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
            cin = int(v)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU6()]
        layers += [nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid), nn.ReLU6(),
                   nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]

    def __init__(self, width: float = 1.0, classes: int = 1000) -> None:
        super().__init__()
        c = int(32 * width)
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU6()]
        for t, ch, n, s in self.SETTINGS:
            out = max(8, int(ch * width))
            for i in range(n):
                layers.append(_InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        last = int(1280 * max(1.0, width))
        layers += [nn.Conv2d(c, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    def __init__(self, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32, classes: int = 1000) -> None:
        super().__init__()
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(3, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                                   nn.MaxPool2d(3, 2, 1)]
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(_DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2)]
                c //= 2
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(c), nn.ReLU())
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class _InceptionBlock(nn.Module):
    def __init__(self, cin: int, b1: int, b3: tuple[int, int], b5: tuple[int, int], pool: int) -> None:
        super().__init__()

        def cbr(i: int, o: int, k: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU())
        self.b1 = cbr(cin, b1, 1)
        self.b3 = nn.Sequential(cbr(cin, b3[0], 1), cbr(b3[0], b3[1], 3))
        self.b5 = nn.Sequential(cbr(cin, b5[0], 1), cbr(b5[0], b5[1], 3), cbr(b5[1], b5[1], 3))
        self.bp = nn.Sequential(nn.AvgPool2d(3, 1, 1), cbr(cin, pool, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionLike(nn.Module):
    """GoogLeNet/Inception-v3-style: a conv stem, then blocks of parallel 1x1/3x3/5x5/pool branches."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1), nn.Conv2d(64, 192, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(192), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.blocks = nn.Sequential(
            _InceptionBlock(192, 64, (96, 128), (16, 32), 32), _InceptionBlock(256, 128, (128, 192), (32, 96), 64),
            nn.MaxPool2d(3, 2, 1),
            _InceptionBlock(480, 192, (96, 208), (16, 48), 64), _InceptionBlock(512, 160, (112, 224), (24, 64), 64),
            _InceptionBlock(512, 128, (128, 256), (24, 64), 64), nn.MaxPool2d(3, 2, 1),
            _InceptionBlock(512, 256, (160, 320), (32, 128), 128))
        self.fc = nn.Linear(832, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


# ---- attention models ----------------------------------------------------------------------
class _Attention(nn.Module):
    """Multi-head attention. Reshapes use the static sequence length and -1 for the batch, so
    the ONNX export has constant shapes (TVM's ONNX frontend cannot import Shape->Gather chains)."""

    def __init__(self, d: int, heads: int, seq: int) -> None:
        super().__init__()
        self.h, self.dk, self.seq = heads, d // heads, seq
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.seq, self.h, self.dk).transpose(1, 2)

    def forward(self, x: torch.Tensor, mem: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if mem is None else mem
        q, k, v = self.split(self.q(x)), self.split(self.k(kv)), self.split(self.v(kv))
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / self.dk ** 0.5, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2)
        return self.o(y.reshape(-1, self.seq, self.h * self.dk))


class _EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, seq: int) -> None:
        super().__init__()
        self.att, self.n1, self.n2 = _Attention(d, heads, seq), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.n1(x + self.att(x))
        return self.n2(x + self.ff(x))


class _DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, seq: int) -> None:
        super().__init__()
        self.self_att, self.cross = _Attention(d, heads, seq), _Attention(d, heads, seq)
        self.n1, self.n2, self.n3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Linear(ff, d))

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        x = self.n1(x + self.self_att(x))
        x = self.n2(x + self.cross(x, mem))
        return self.n3(x + self.ff(x))


class BertLike(nn.Module):
    """BERT encoder: token + position embeddings, N encoder layers, a pooler on the first token."""

    def __init__(self, layers: int, d: int, heads: int, ff: int, seq: int, vocab: int = 30522,
                 max_len: int = 512) -> None:
        super().__init__()
        self.seq = seq
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(_EncoderLayer(d, heads, ff, seq) for _ in range(layers))
        self.pool = nn.Linear(d, d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.tok(ids) + self.pos.weight[: self.seq].unsqueeze(0))
        for layer in self.layers:
            x = layer(x)
        return torch.tanh(self.pool(x[:, 0]))


class Transformer(nn.Module):
    """Encoder-decoder Transformer (the 'base' of Vaswani et al.), source and target token ids in."""

    def __init__(self, layers: int = 6, d: int = 512, heads: int = 8, ff: int = 2048, vocab: int = 32000,
                 seq: int = 64) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.enc = nn.ModuleList(_EncoderLayer(d, heads, ff, seq) for _ in range(layers))
        self.dec = nn.ModuleList(_DecoderLayer(d, heads, ff, seq) for _ in range(layers))
        self.out = nn.Linear(d, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        mem = self.emb(src)
        for layer in self.enc:
            mem = layer(mem)
        y = self.emb(tgt)
        for layer in self.dec:
            y = layer(y, mem)
        return self.out(y)


# ---- recurrent and generative models ------------------------------------------------------
class Recurrent(nn.Module):
    """Sequence classifier on a GRU or LSTM (the last step is taken with a positive index: TVM
    0.27 mis-compiles negative indices)."""

    def __init__(self, cell: str, features: int, hidden: int, layers: int, seq: int, classes: int = 10) -> None:
        super().__init__()
        self.seq = seq
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(features, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(x)
        return self.fc(y[:, self.seq - 1])


class DCGANGenerator(nn.Module):
    def __init__(self, z: int = 100, width: int = 64, size: int = 64) -> None:
        super().__init__()
        self.z = z
        layers: list[nn.Module] = []
        c, s = width * (size // 8), 4
        layers += [nn.ConvTranspose2d(z, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        while s < size // 2:
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c, s = c // 2, s * 2
        layers += [nn.ConvTranspose2d(c, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def _image(size: int) -> Callable[[int], tuple[torch.Tensor, ...]]:
    return lambda b: (torch.randn(b, 3, size, size),)


def _tokens(seq: int, vocab: int = 30522) -> Callable[[int], tuple[torch.Tensor, ...]]:
    return lambda b: (torch.randint(0, vocab, (b, seq)),)


def _sequence(seq: int, features: int) -> Callable[[int], tuple[torch.Tensor, ...]]:
    return lambda b: (torch.randn(b, seq, features),)


_B, _K = _Basic, _Bottleneck
ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("resnet8", "cnn", lambda: ResNet(_B, [1, 1, 1], (16, 32, 64), 16, 10, small_input=True), _image(32),
             tiny=True, note="CIFAR-size ResNet, 32x32 input"),
    ZooModel("resnet18", "cnn", lambda: ResNet(_B, [2, 2, 2, 2]), _image(224)),
    ZooModel("resnet50", "cnn", lambda: ResNet(_K, [3, 4, 6, 3]), _image(224)),
    ZooModel("resnet101", "cnn", lambda: ResNet(_K, [3, 4, 23, 3]), _image(224)),
    ZooModel("resnet152", "cnn", lambda: ResNet(_K, [3, 8, 36, 3]), _image(224)),
    ZooModel("vgg16", "cnn", lambda: _vgg(_VGG16), _image(224)),
    ZooModel("vgg19", "cnn", lambda: _vgg(_VGG19), _image(224)),
    ZooModel("mobilenet-v2", "cnn", lambda: MobileNetV2(), _image(224)),
    ZooModel("mobilenet-v2-tiny", "cnn", lambda: MobileNetV2(width=0.35, classes=10), _image(64), tiny=True,
             note="width 0.35, 64x64 input"),
    ZooModel("densenet121", "cnn", lambda: DenseNet(), _image(224)),
    ZooModel("inception", "cnn", lambda: InceptionLike(), _image(224), note="GoogLeNet-style Inception blocks"),
    ZooModel("bert-tiny", "bert", lambda: BertLike(2, 128, 2, 512, 32), _tokens(32), tiny=True,
             note="2 layers, hidden 128, sequence 32"),
    ZooModel("bert-base", "bert", lambda: BertLike(12, 768, 12, 3072, 128), _tokens(128), note="sequence 128"),
    ZooModel("bert-large", "bert", lambda: BertLike(24, 1024, 16, 4096, 128), _tokens(128), note="sequence 128"),
    ZooModel("transformer", "transformer", lambda: Transformer(), lambda b: (
        torch.randint(0, 32000, (b, 64)), torch.randint(0, 32000, (b, 64))), note="6+6 layers, d=512, seq 64"),
    ZooModel("gru", "rnn", lambda: Recurrent("gru", 64, 256, 2, 32), _sequence(32, 64), tiny=True,
             note="2-layer GRU, hidden 256, 32 steps"),
    ZooModel("lstm", "rnn", lambda: Recurrent("lstm", 64, 256, 2, 32), _sequence(32, 64), tiny=True,
             note="2-layer LSTM, hidden 256, 32 steps"),
    ZooModel("dcgan", "gan", lambda: DCGANGenerator(), lambda b: (torch.randn(b, 100, 1, 1),),
             note="DCGAN generator, 64x64 images"),
]}


class ZooError(ValueError):
    pass


def get(name: str) -> ZooModel:
    if name not in ZOO:
        raise ZooError(f"no zoo model {name!r}; the zoo has {sorted(ZOO)}")
    return ZOO[name]


def export_program(name: str, batch: int = 1) -> Any:
    """torch.export of a zoo model at a static batch size (TVM compiles per batch size)."""
    m = get(name)
    with torch.no_grad():
        return torch.export.export(m.module(), m.example(batch))


def export_onnx(name: str, path: str | Path, batch: int = 1) -> Path:
    """Write a zoo model as an ONNX file (what a user would submit)."""
    import warnings
    m = get(name)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    inputs = m.example(batch)
    names = [f"input{i}" for i in range(len(inputs))]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(m.module(), inputs, str(p), input_names=names, output_names=["output"],
                          dynamic_axes={n: {0: "batch"} for n in names} | {"output": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return p
