#!/usr/bin/env bash
# Set up, then run the whole test suite (Triton kernels run under the interpreter without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 -q "$@"
