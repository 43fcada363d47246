"""Where the serving stack of served trials is (one place): the serving virtualenv with PyTriton's
bundled Triton Inference Server and perf_analyzer, and the library path both need.

``.venv-serving`` at the repository root (``scripts/setup.sh`` installs it from
``deploy/requirements-serving.txt``), or ``$FALCON_SERVING_VENV``. It is a virtualenv of its own
because PyTriton and tritonclient need numpy < 2 and protobuf < 5 (the project has numpy 2)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRITON_VERSION = "2.51.0"      # the bundled server of nvidia-pytriton 0.7.0 and the perf_analyzer pinned with it


class ServingStackMissing(RuntimeError):
    """The serving stack is not installed (the message says what is missing and how to install it)."""


@dataclass(frozen=True)
class ServingEnv:
    venv: Path
    python: Path
    perf_analyzer: Path
    tritonserver: Path
    libdirs: tuple[str, ...]           # LD_LIBRARY_PATH entries: libcudart.so.12, the interpreter's libpython
    site: Path                         # the serving venv's site-packages
    python_version: str                # X.Y of the serving interpreter (the Python backend stub's)

    @classmethod
    def find(cls, venv: str | Path | None = None) -> "ServingEnv":
        root = Path(venv or os.environ.get("FALCON_SERVING_VENV") or REPO / ".venv-serving")
        python = root / "bin" / "python"
        hint = "run scripts/setup.sh (it installs deploy/requirements-serving.txt into .venv-serving)"
        if not python.exists():
            raise ServingStackMissing(f"no serving virtualenv at {root}: {hint}")
        site = next(iter(sorted((root / "lib").glob("python3*/site-packages"))), None)
        if site is None:
            raise ServingStackMissing(f"{root} has no site-packages: {hint}")
        server = site / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        perf = root / "bin" / "perf_analyzer"
        cudart = site / "nvidia" / "cuda_runtime" / "lib"
        for need, what in ((server, "Triton (nvidia-pytriton)"), (perf, "perf_analyzer (tritonclient[all])"),
                           (cudart / "libcudart.so.12", "libcudart.so.12 (nvidia-cuda-runtime-cu12)")):
            if not need.exists():
                raise ServingStackMissing(f"{what} is missing from {root}: {hint}")
        try:
            libdir, version = subprocess.run(
                [str(python), "-c", "import sys, sysconfig; print(sysconfig.get_config_var('LIBDIR')); "
                 "print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                capture_output=True, text=True, timeout=30, check=True).stdout.split()
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise ServingStackMissing(f"the serving interpreter {python} does not run ({exc}): {hint}") from None
        return cls(root, python, perf, server, (str(cudart), libdir), site, version)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for tritonserver and perf_analyzer: the library path (libcudart for
        perf_analyzer; the server's own libraries, nvidia_pytriton.libs; the interpreter's own
        libpython, else Triton's Python backend stub loads Debian's and fails with
        "'_thread.RLock' object has no attribute '_recursion_count'") and the serving venv first
        on PATH (the stub's embedded Python then finds the venv's numpy and onnxruntime)."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
        old = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = ":".join([str(self.site / "nvidia_pytriton.libs"), *self.libdirs,
                                           *([old] if old else [])])
        env["PATH"] = ":".join([str(self.venv / "bin"), env.get("PATH", "/usr/bin:/bin")])
        env.update(extra)
        return env
