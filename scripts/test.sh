#!/usr/bin/env bash
# Set up .venv (scripts/setup.sh) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The benchmark data sits beside the checkout in ../shared/data; tests that need it skip without it.
export TEXTCNN_SHARED_DATA="${TEXTCNN_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
