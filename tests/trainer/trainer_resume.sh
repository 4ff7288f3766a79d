#!/usr/bin/env bash
# Train 8 steps in one go; train the same 8 steps as 5 + resume 3. The final checkpoints must be
# byte-identical (same parameters, optimizer moments, step and data position).
set -euo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
common=(--model nano --batch 4 --seq-len 32 --steps 8 --eval-every 4 --eval-batches 2 --sample-tokens 0 -q
        --synthetic-bytes 50000)
"$train" "${common[@]}" -o "$dir/once" > "$dir/once.log" 2>&1
"$train" "${common[@]}" -o "$dir/split" --stop-at 5 > "$dir/split1.log" 2>&1
grep -q "stopped at step 5" "$dir/split1.log"
"$train" "${common[@]}" -o "$dir/split" --resume "$dir/split/checkpoint.safetensors" > "$dir/split2.log" 2>&1
grep -q "resumed from .* at step 5" "$dir/split2.log"
if cmp "$dir/once/checkpoint.safetensors" "$dir/split/checkpoint.safetensors"; then
  echo "resume is bit for bit"
else
  echo "FAIL: the resumed run's checkpoint differs from the uninterrupted run's"
  exit 1
fi
