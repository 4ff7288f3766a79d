#!/usr/bin/env bash
# Each bad input must fail with exit code 1 and a message that names the problem, before any
# training step; and a write that fails must be an error naming the file, never "wrote ...".
set -uo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
fails=0
out_dir="$dir/out"
expect() {  # expect "message" args...   (runs with -o $out_dir)
  local want=$1
  shift
  local defaults=()  # --steps 1 --sample-tokens 0, unless the case sets them itself
  [[ " $* " == *" --steps "* ]] || defaults+=(--steps 1)
  [[ " $* " == *" --sample-tokens "* ]] || defaults+=(--sample-tokens 0)
  out=$("$train" "${defaults[@]}" -q -o "$out_dir" "$@" 2>&1)
  code=$?
  if [ $code -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL: scalegpt-train $* -> exit $code, expected 1 and '$want'; got:"
    echo "$out" | tail -3
    fails=$((fails + 1))
  elif grep -q "^step " <<<"$out"; then
    echo "FAIL: scalegpt-train $* trained before reporting '$want':"
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

# Values that cannot mean anything.
for lr in nan inf -inf -0.001 0; do expect "--lr must be a finite learning rate > 0" --lr "$lr"; done
expect "--batch must be at least 1" --batch 0
expect "--batch must be at least 1" --batch -4
expect "--seq-len must be at least 1 token" --seq-len -1
expect "--steps must be at least 1" --steps 0
expect "--steps must be at least 1" --steps -5
expect "--loss-scale and --loss-scale-window apply to --dtype fp16 only, but --dtype is bf16" --dtype bf16 --loss-scale 1024
expect "--loss-scale and --loss-scale-window apply to --dtype fp16 only, but --dtype is f32" --loss-scale-window 4
for s in nan inf 0 -2; do expect "--loss-scale must be a finite number > 0" --dtype fp16 --loss-scale "$s"; done
expect "--loss-scale-window must be at least 1 step" --dtype fp16 --loss-scale-window 0
expect "--stop-at 1 must be a step between 1 and --steps - 1 = 0" --stop-at 1
expect "--stop-at 0 must be a step between" --steps 5 --stop-at 0
expect "--min-lr-frac must be in [0, 1]" --min-lr-frac 1.5
expect "--weight-decay must be a finite number >= 0" --weight-decay nan
expect "--clip must be a finite norm >= 0" --clip -1
expect "--warmup must be >= 0" --warmup -1
expect "--eval-batches must be at least 1" --eval-batches 0
expect "--eval-every must be >= 0" --eval-every -2
expect "--temperature must be a finite number > 0" --sample-tokens 5 --temperature 0
expect "--comm-timeout must be a finite number of seconds >= 0" --comm-timeout -1
expect "--device must be cpu or cuda" --device tpu
expect "holds 5 tokens" --synthetic-bytes 5 --batch 2 --seq-len 8
expect "--synthetic-bytes applies to --data synthetic only" --data "$dir/bad" --synthetic-bytes 1000
# --out must be writable, and that is known before the first step (/proc: not even root writes there).
out_dir=/proc expect "--out /proc is not writable"
touch "$dir/afile"
out_dir="$dir/afile" expect "--out $dir/afile"
out_dir="$dir/out"

# Resuming: the checkpoint's model, a --steps beyond its step, the same run-defining flags.
small=(--model nano --seq-len 16 --synthetic-bytes 20000 --eval-every 0)
"$train" "${small[@]}" --batch 2 --steps 3 --sample-tokens 0 -q -o "$dir/ck" > "$dir/ck.log" 2>&1 || { cat "$dir/ck.log"; exit 1; }
ck="$dir/ck/checkpoint.safetensors"
same=("${small[@]:2}" --batch 2)  # the checkpoint's flags, without --model (it comes from the checkpoint)
expect "--steps 3 is not beyond step 3 of the checkpoint" "${same[@]}" --resume "$ck" --steps 3
expect "--steps 2 is not beyond step 3 of the checkpoint" "${same[@]}" --resume "$ck" --steps 2
expect "--model micro but the checkpoint $ck holds model 'nano'" "${same[@]}" --model micro --resume "$ck" --steps 5
expect "--lr is 0.001 but the checkpoint $ck was trained with --lr 0.003" "${same[@]}" --resume "$ck" --steps 5 --lr 0.001
expect "--seed is 9 but the checkpoint" "${same[@]}" --resume "$ck" --steps 5 --seed 9
expect "global batch (--batch x ranks) is 4 but the checkpoint" "${small[@]}" --resume "$ck" --steps 5 --batch 4

# Damaged checkpoints: a flipped bit in one weight, an edited step. --verify checks without training.
verify_out=$("$train" --verify "$ck" 2>&1) && grep -q "OK, 30 tensors" <<<"$verify_out" ||
  { echo "FAIL: --verify of a good checkpoint: $verify_out"; fails=$((fails + 1)); }
python3 - "$ck" "$dir/flipped.safetensors" "$dir/edited.safetensors" <<'PY'
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n])
begin = header["transformer.h.1.attn.c_proj.weight"]["data_offsets"][0]
flipped = bytearray(raw)
flipped[8 + n + begin + 13] ^= 0x20
open(sys.argv[2], "wb").write(flipped)
edited = bytes(raw).replace(b'"step":"3"', b'"step":"2"', 1)
assert edited != bytes(raw)
open(sys.argv[3], "wb").write(edited)
PY
expect "tensor 'transformer.h.1.attn.c_proj.weight' fails its checksum" "${same[@]}" --resume "$dir/flipped.safetensors" --steps 5
expect "the metadata fails its checksum" "${same[@]}" --resume "$dir/edited.safetensors" --steps 5
for f in flipped edited; do
  v=$("$train" --verify "$dir/$f.safetensors" 2>&1)
  code=$?
  if [ $code -ne 1 ] || ! grep -q "fails its checksum" <<<"$v"; then
    echo "FAIL: --verify $f -> exit $code: $v"
    fails=$((fails + 1))
  else
    echo "ok: --verify $f.safetensors -> $v"
  fi
done

# Failed writes. loss.svg cannot be replaced (a directory is in the way); metrics.jsonl hits the
# file-size limit (as on a full disk) part-way through the run.
mkdir -p "$dir/svg/loss.svg"
out=$("$train" "${same[@]}" --steps 2 --sample-tokens 0 -q -o "$dir/svg" 2>&1)
code=$?
if [ $code -ne 1 ] || ! grep -q "loss.svg" <<<"$out" || grep -q "wrote" <<<"$out"; then
  echo "FAIL: an unwritable loss.svg -> exit $code:"; echo "$out" | tail -3; fails=$((fails + 1))
else
  echo "ok: unwritable loss.svg -> $(grep loss.svg <<<"$out" | head -1)"
fi
out=$(trap '' XFSZ; ulimit -f 8; "$train" "${same[@]}" --steps 200 --sample-tokens 0 -q --log-every 1000 -o "$dir/full" 2>&1)
code=$?
if [ $code -ne 1 ] || ! grep -q "metrics.jsonl: cannot append the metrics" <<<"$out" || grep -q "wrote" <<<"$out"; then
  echo "FAIL: metrics.jsonl on a full disk -> exit $code:"; echo "$out" | tail -3; fails=$((fails + 1))
else
  echo "ok: metrics.jsonl on a full disk -> $(grep metrics.jsonl <<<"$out" | head -1)"
fi
exit $fails
