#!/usr/bin/env bash
# Set up, then train the lecture's two-layer net (64x1000 -> 100 -> 10) and print the loss falling.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/two_layer_net.py "$@"
