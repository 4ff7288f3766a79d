#!/usr/bin/env bash
# The first Quick-start command: install what ScaleGPT needs, build it, and train the default
# model (a ~0.85M-parameter GPT on synthetic English-like text, a few minutes on 2 CPU cores).
# Extra arguments go to scalegpt-train, e.g. scripts/quickstart.sh --steps 100
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset cpu
cmake --build build/cpu -j "$(nproc)" --target scalegpt-train
build/cpu/tools/train/scalegpt-train "$@"
