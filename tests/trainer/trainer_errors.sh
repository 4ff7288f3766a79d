#!/usr/bin/env bash
# Each bad input must fail with exit code 1 and a message that names the problem.
set -uo pipefail
train=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
expect() {  # expect "message" args...
  local want=$1
  shift
  out=$("$train" --steps 1 --sample-tokens 0 -q -o "$dir/out" "$@" 2>&1)
  code=$?
  if [ $code -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL: scalegpt-train $* -> exit $code, expected 1 and '$want'; got:"
    echo "$out" | tail -3
    fails=$((fails + 1))
  else
    echo "ok: $* -> $(grep -F -- "$want" <<<"$out" | head -1)"
  fi
}
expect "unknown model 'd13'" --model d13
expect "not a directory holding train.bin and val.bin" --data "$dir/nowhere"
expect "--seq-len 300 is longer than the context 128" --seq-len 300
printf 'garbage' > "$dir/garbage.safetensors"
expect "$dir/garbage.safetensors" --resume "$dir/garbage.safetensors"
mkdir -p "$dir/bad"
printf 'not a token file at all, just text' > "$dir/bad/train.bin"
cp "$dir/bad/train.bin" "$dir/bad/val.bin"
expect "$dir/bad/train.bin" --data "$dir/bad"
exit $fails
