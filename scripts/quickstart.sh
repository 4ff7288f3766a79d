#!/usr/bin/env bash
# The first Quick-start command: install what ScaleGPT needs, build it, and train the default
# model (a ~0.85M-parameter GPT on synthetic English-like text). On 2 CPU cores the first build
# takes several minutes and the training about 1.5 minutes more; the script prints both times.
# The run writes runs/micro/. Extra arguments go to scalegpt-train, e.g.
#   scripts/quickstart.sh --steps 100 -o runs/quick
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
t0=$SECONDS
cmake --preset cpu
cmake --build build/cpu -j "$(nproc)" --target scalegpt-train
t1=$SECONDS
build/cpu/tools/train/scalegpt-train "$@"
echo "quickstart: build $((t1 - t0)) s, training $((SECONDS - t1)) s"
