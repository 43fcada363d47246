"""One vocabulary of operator kinds across TVM profiles, Falcon's tables and KOP curves."""

from __future__ import annotations

# TVM / Relay / Relax spellings -> the kind names used by the KOP curves (falcon-data/kop-curves).
_ALIASES = {
    "concatenate": "concat",
    "matmul": "dense",
    "linear": "dense",
    "bias_add": "add",
    "permute_dims": "transpose",
}


def normalise_op(name: str) -> str:
    """'nn.conv2d' -> 'conv2d', 'concatenate' -> 'concat', 'fused_nn.dense_add' stays explicit."""
    kind = name.strip().lower()
    for prefix in ("relax.", "relay.", "nn."):
        if kind.startswith(prefix):
            kind = kind[len(prefix):]
    return _ALIASES.get(kind, kind)
