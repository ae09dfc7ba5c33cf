#!/usr/bin/env bash
# The long differential-fuzz run: N random graphs (default 10,000) on every backend, forward and
# every gradient, with fresh randomness (CI runs 200 fixed ones). Counts print at the end under
# "graphc reliability"; a failure prints the shrunk GraphSpec to paste into tests/test_regressions.py.
#   scripts/fuzz.sh [N] [SEED]       e.g. scripts/fuzz.sh 10000
#   GRAPHC_FUZZ_TRITON_EVERY=k       run Triton on every k-th graph only (default: every graph)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"
seed="${2:-$RANDOM$RANDOM}"
echo "fuzzing $n graphs, hypothesis seed $seed (rerun: scripts/fuzz.sh $n $seed)"
GRAPHC_FUZZ_EXAMPLES="$n" exec .venv/bin/python -m pytest -q -p no:cacheprovider -p no:xdist \
    --hypothesis-seed="$seed" "tests/test_fuzz.py::test_random_graphs_agree_on_every_backend"
