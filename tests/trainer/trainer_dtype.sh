#!/usr/bin/env bash
# scalegpt-train --dtype: bf16 (lesson 05's recipe, fp32 master) resumes bit for bit, follows the
# f32 run, and an unknown dtype is a clear error.
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
common=(--model nano --batch 4 --seq-len 32 --steps 8 --eval-every 8 --eval-batches 2 --sample-tokens 0 -q
        --synthetic-bytes 50000)
"$train" "${common[@]}" --dtype bf16 -o "$dir/once" > "$dir/once.log" 2>&1
"$train" "${common[@]}" --dtype bf16 -o "$dir/split" --stop-at 5 > "$dir/split1.log" 2>&1
"$train" "${common[@]}" --dtype bf16 -o "$dir/split" --resume "$dir/split/checkpoint.safetensors" > "$dir/split2.log" 2>&1
if ! cmp "$dir/once/checkpoint.safetensors" "$dir/split/checkpoint.safetensors"; then
  echo "FAIL: the resumed bf16 run's checkpoint (fp32 master + moments) differs from the uninterrupted run's"
  exit 1
fi
echo "bf16 resume is bit for bit"
"$train" "${common[@]}" --dtype f32 -o "$dir/f32" > "$dir/f32.log" 2>&1
val() { grep -o 'final val loss [0-9.]*' "$1" | awk '{print $4}'; }
b=$(val "$dir/once.log") f=$(val "$dir/f32.log")
echo "final val loss: f32 $f, bf16 $b"
awk -v b="$b" -v f="$f" 'BEGIN { d = b - f; if (d < 0) d = -d; exit !(d <= 0.02) }' ||
  { echo "FAIL: bf16 and f32 differ by more than 0.02"; exit 1; }
if out=$("$train" "${common[@]}" --dtype f8 -o "$dir/bad" 2>&1); then
  echo "FAIL: --dtype f8 was accepted"
  exit 1
fi
grep -qF -- "--dtype must be f32, bf16 or fp16, got 'f8'" <<<"$out" || { echo "FAIL: unclear error: $out"; exit 1; }
echo "ok: --dtype f8 -> $(grep -F -- '--dtype must' <<<"$out" | head -1)"
