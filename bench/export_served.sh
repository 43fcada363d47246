#!/usr/bin/env bash
# Serve an exported Triton model repository entry (falcon export --format triton) in the served
# trials' own tritonserver (nvidia-pytriton's, Python backend: --model-config-name=python-ort) on
# core 0 and load it with perf_analyzer from core 1: the throughput vs p99 curve of what was
# exported, to compare with the figures in its header.
#   bench/export_served.sh MODEL_REPOSITORY MODEL_NAME [CONCURRENCY_RANGE (default 1:16:3)]
# Run it under the shared lock on a shared machine: flock /work/brief/heavy.lock nice bench/export_served.sh ...
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$(realpath "$1"); MODEL=$2; RANGE=${3:-1:16:3}
VENV=${FALCON_SERVING_VENV:-$PWD/.venv-serving}
SITE=$(ls -d "$VENV"/lib/python3*/site-packages | head -1)
PYVER=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
LIBDIR=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")
WORK=$(mktemp -d)
# the bundled server with the Python backend stub for the serving venv's Python (as PyTriton lays it out)
cp -r "$SITE/pytriton/tritonserver" "$WORK/tritonserver"
rm -rf "$WORK/tritonserver/python_backend_stubs"
cp "$SITE/pytriton/tritonserver/python_backend_stubs/$PYVER/triton_python_backend_stub" "$WORK/tritonserver/backends/python/"
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PATH="$VENV/bin:$PATH" LD_LIBRARY_PATH="$SITE/nvidia_pytriton.libs:$LIBDIR" setsid taskset -c 0 \
  "$WORK/tritonserver/bin/tritonserver" --model-repository="$REPO_DIR" --model-config-name=python-ort \
  --backend-directory="$WORK/tritonserver/backends" --http-address=127.0.0.1 --grpc-address=127.0.0.1 \
  --http-port="$PORT" --allow-grpc=false --allow-metrics=false --exit-timeout-secs=5 > "$WORK/triton.log" 2>&1 &
SERVER=$!
# SIGTERM first (Triton unloads the model and its Python backend deletes its /tmp copy), then SIGKILL
trap 'kill -TERM -- -$SERVER 2>/dev/null; for _ in $(seq 50); do kill -0 $SERVER 2>/dev/null || break; sleep 0.2; done; kill -9 -- -$SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 90); do curl -sf "127.0.0.1:$PORT/v2/models/$MODEL/ready" && break; sleep 1; done
curl -sf "127.0.0.1:$PORT/v2/models/$MODEL/ready" || { tail -20 "$WORK/triton.log"; exit 1; }
LD_LIBRARY_PATH="$SITE/nvidia/cuda_runtime/lib" taskset -c 1 "$VENV/bin/perf_analyzer" -m "$MODEL" \
  -u "127.0.0.1:$PORT" -i http -b 1 --concurrency-range "$RANGE" --percentile=99 --measurement-interval 3000 \
  | sed -n '/Inferences\/Second vs. Client p99/,$p'
curl -s "127.0.0.1:$PORT/v2/models/$MODEL/stats" | "$VENV/bin/python" -c \
  "import json,sys; s=json.load(sys.stdin)['model_stats'][0]; print('Triton: inferences', s['inference_count'], 'executions', s['execution_count'])"
find "$REPO_DIR" -name __pycache__ -type d -prune -exec rm -rf {} +
