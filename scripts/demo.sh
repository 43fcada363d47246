#!/usr/bin/env bash
# The main job: start the local stack (tansu + redis-server + the four services), run a demo
# search on a falcon-data target model, print the recommendation, stop the stack.
# Extra arguments go to `falcon demo` (e.g. --target gru --max-trials 10 --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/falcon demo "$@"
