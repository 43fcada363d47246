"""Model intake: refuse what is not a model, or too large, with a reason a person can act on,
before anything tries to compile it. Reads model files only with the format's own parser
(never pickle). A model may be a local path or a ``file://``, ``s3://`` or ``https://`` URI
(:mod:`services.platform.uris`: the size limit is checked before a remote file is downloaded)."""

from __future__ import annotations

from pathlib import Path

from services.platform.uris import UriError, fetch

MODEL_FILE_FORMATS = ("onnx", "torch-export")
DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3      # BERT-large in fp32 is ~1.3 GB
DEFAULT_CACHE_DIR = ".falcon/cache"


class ModelFileError(ValueError):
    pass


def model_path(uri: str, max_bytes: int = DEFAULT_MAX_MODEL_BYTES, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """A local copy of the model at ``uri`` (the file itself when it is local)."""
    try:
        return fetch(uri, cache_dir, max_bytes, what="model file")
    except UriError as exc:
        raise ModelFileError(f"{exc} (FALCON_MAX_MODEL_BYTES)" if "limit" in str(exc) else str(exc)) from None


def check_model_file(uri: str | None, fmt: str, max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
                     cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """The (local) path of the model file if it is a readable model of ``fmt`` within the size limit."""
    if fmt not in MODEL_FILE_FORMATS:
        raise ModelFileError(f"model format {fmt!r} is not one this service reads ({list(MODEL_FILE_FORMATS)})")
    if not uri:
        raise ModelFileError(f"a {fmt} submission needs model.uri (the model file)")
    path = model_path(uri, max_bytes, cache_dir)
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file {path} is empty")
    if fmt == "onnx":
        _check_onnx(path)
    else:
        _check_torch_archive(path)
    return path


def _check_torch_archive(path: Path) -> None:
    """A torch.export archive is a zip with an ``archive_format`` entry; checked without torch."""
    import zipfile
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a torch.export archive (.pt2): not a zip file")
    with zipfile.ZipFile(path) as z:
        if not any(n.endswith("archive_format") for n in z.namelist()):
            raise ModelFileError(f"{path} is a zip file but not a torch.export archive (no archive_format entry)")


def _check_onnx(path: Path) -> None:
    import onnx
    from google.protobuf.message import DecodeError
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path} is not an ONNX model: {str(exc)[:200] or type(exc).__name__}") from None
    if not len(model.graph.node):
        raise ModelFileError(f"{path} is not an ONNX model: it has no graph nodes")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
