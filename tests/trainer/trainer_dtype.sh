#!/usr/bin/env bash
# scalegpt-train --dtype: bf16 (lesson 05's recipe, fp32 master) resumes bit for bit, follows the
# f32 run, and an unknown dtype is a clear error. --recompute gelu trains the same bits in fewer
# activations; on anything but one device it is a clear error.
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
# --recompute gelu: the same checkpoint bytes, and the tracker's activation peak is lower.
"$train" "${common[@]}" --dtype bf16 --recompute gelu -o "$dir/gelu" > "$dir/gelu.log" 2>&1
cmp "$dir/once/checkpoint.safetensors" "$dir/gelu/checkpoint.safetensors" ||
  { echo "FAIL: --recompute gelu changed the trained bits"; exit 1; }
act() { awk '$1 == "activations" { print $3 }' "$1" | tail -1; }
a=$(act "$dir/once.log") g=$(act "$dir/gelu.log")
awk -v a="$a" -v g="$g" 'BEGIN { exit !(g > 0 && g < a) }' ||
  { echo "FAIL: activation peak with --recompute gelu ($g MiB) is not below the plain run's ($a MiB)"; exit 1; }
echo "--recompute gelu: the same checkpoint, activation peak $a -> $g MiB"
if out=$("$train" "${common[@]}" --recompute gelu --zero 1 -o "$dir/bad" 2>&1); then
  echo "FAIL: --recompute gelu --zero 1 was accepted"
  exit 1
fi
grep -qF -- "--recompute gelu applies to one process on one device" <<<"$out" || { echo "FAIL: unclear error: $out"; exit 1; }
if out=$("$train" "${common[@]}" --recompute all -o "$dir/bad" 2>&1); then
  echo "FAIL: --recompute all was accepted"
  exit 1
fi
grep -qF -- "--recompute must be none or gelu, got 'all'" <<<"$out" || { echo "FAIL: unclear error: $out"; exit 1; }
echo "ok: bad --recompute uses give clear errors"
