#!/usr/bin/env bash
# All tests: unit, integration (real tansu broker + redis-server, started by the tests), e2e.
# Extra arguments go to pytest (e.g. tests/unit -k space).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=20 "$@"
