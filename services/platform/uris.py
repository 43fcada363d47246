"""Model files and measurement tables by URI: a local path, ``file://``, ``s3://`` or
``https://`` (``http://`` too, for a server on the same network), read through fsspec (s3fs for
S3, aiohttp for HTTP), so upstream CI does not have to share a filesystem with the profiler and
the runners.

A remote object's size is asked for first and checked against the limit *before* anything is
downloaded; what is downloaded goes to a cache folder (one file per URI and object version, so a
model submitted once is fetched once per machine). Credentials come from the usual places of
each library (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
``AWS_ENDPOINT_URL`` for an S3-API server other than AWS, ``~/.aws``); they are never put in a
message: errors name the URI with any ``user:password@`` part removed, and the library's error
type and short text."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REMOTE_SCHEMES = ("s3", "https", "http")
LOCAL_SCHEMES = ("", "file")


class UriError(ValueError):
    pass


def redact(uri: str) -> str:
    """The URI without credentials (``https://user:secret@host/x`` -> ``https://host/x``) and
    without a query string (pre-signed URLs carry their signature there)."""
    try:
        p = urlsplit(uri)
    except ValueError:
        return "<unparseable uri>"
    if p.scheme in LOCAL_SCHEMES:
        return uri
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def scheme(uri: str) -> str:
    s = urlsplit(uri).scheme.lower()
    return "" if len(s) == 1 else s      # "C:\\..." is a path, not a scheme


def is_remote(uri: str) -> bool:
    return scheme(uri) in REMOTE_SCHEMES


def local_path(uri: str) -> Path:
    """The path of a local URI (a plain path or file://); UriError for any other scheme."""
    s = scheme(uri)
    if s == "file":
        return Path(urlsplit(uri).path)
    if s == "":
        return Path(uri)
    raise UriError(f"{redact(uri)}: {s}:// is not a local file (use fetch)")


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def remote_size(uri: str) -> tuple[int | None, str]:
    """(size in bytes or None when the server does not say, a version tag) of a remote object."""
    import fsspec
    try:
        fs, path = fsspec.core.url_to_fs(uri, skip_instance_cache=True)   # credentials as they are now
        info = fs.info(path)
    except FileNotFoundError:
        raise UriError(f"{redact(uri)} does not exist") from None
    except PermissionError as exc:
        raise UriError(f"{redact(uri)}: access denied ({_describe(exc)}); check the credentials in the "
                       f"environment") from None
    except Exception as exc:  # noqa: BLE001 - botocore, aiohttp and fsspec raise many unrelated types
        raise UriError(f"{redact(uri)} cannot be read: {_describe(exc)}") from None
    if info.get("type") == "directory":
        raise UriError(f"{redact(uri)} is a folder, not a file")
    size = info.get("size")
    version = str(info.get("ETag") or info.get("etag") or info.get("VersionId") or info.get("LastModified")
                  or info.get("mtime") or "")
    return (int(size) if size is not None else None), version


def fetch(uri: str, cache_dir: str | Path, max_bytes: int, what: str = "file") -> Path:
    """A local path holding the object at ``uri``: local URIs as they are (checked to exist and
    to be within ``max_bytes``), remote ones downloaded into ``cache_dir`` once per version.
    UriError (a ValueError) says why not, in one line without credentials."""
    if not is_remote(uri):
        s = scheme(uri)
        if s not in LOCAL_SCHEMES:
            raise UriError(f"{what} {redact(uri)}: scheme {s}:// is not supported "
                           f"(a path, file://, s3:// or https://)")
        path = local_path(uri)
        if not path.is_file():
            raise UriError(f"{what} {path} does not exist")
        size = path.stat().st_size
        if size > max_bytes:
            raise UriError(f"{what} {path} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB limit")
        return path
    size, version = remote_size(uri)
    if size is not None and size > max_bytes:
        raise UriError(f"{what} {redact(uri)} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.1f} MiB "
                       "limit (checked before downloading)")
    key = hashlib.sha256(f"{redact(uri)}\0{size}\0{version}".encode()).hexdigest()[:24]
    name = Path(urlsplit(uri).path).name or "object"
    dest = Path(cache_dir) / key / name
    if dest.is_file() and (size is None or dest.stat().st_size == size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{name}.{os.getpid()}.part")
    import fsspec
    try:
        fs, path = fsspec.core.url_to_fs(uri, skip_instance_cache=True)   # credentials as they are now
        with fs.open(path, "rb") as src, tmp.open("wb") as out:
            got = 0
            while chunk := src.read(1 << 20):
                got += len(chunk)
                if got > max_bytes:      # the server did not say the size, or lied about it
                    raise UriError(f"{what} {redact(uri)} is over the {max_bytes / 2**20:.1f} MiB limit")
                out.write(chunk)
    except UriError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001
        tmp.unlink(missing_ok=True)
        raise UriError(f"{what} {redact(uri)} could not be downloaded: {_describe(exc)}") from None
    tmp.replace(dest)
    return dest


__all__ = ["REMOTE_SCHEMES", "UriError", "fetch", "is_remote", "local_path", "redact", "remote_size"]
