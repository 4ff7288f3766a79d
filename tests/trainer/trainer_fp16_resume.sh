#!/usr/bin/env bash
# scalegpt-train --dtype fp16 (lesson 05's recipe with dynamic loss scaling) resumes bit for bit:
# 8 steps in one go equal 5 steps + resume + 3, in the losses and gradient norms of every step
# (skipped steps included) and in the final checkpoint. The first scale 2^18 overflows the nano
# model's fp16 gradients and a growth window of 2 doubles it again every 2 good steps, so at the
# stop the scale is not the first one and a good step is counted: a resumed run must restore both
# from the checkpoint (extra loss_scale, loss_scale_good_steps), not start the scaler afresh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
common=(--model nano --batch 4 --seq-len 32 --steps 8 --eval-every 4 --eval-batches 2 --sample-tokens 0 -q
        --synthetic-bytes 50000 --dtype fp16 --loss-scale 262144 --loss-scale-window 2)
"$train" "${common[@]}" -o "$dir/once" > "$dir/once.log" 2>&1
"$train" "${common[@]}" -o "$dir/split" --stop-at 5 > "$dir/split1.log" 2>&1
# The checkpoint at the stop holds the scaler's state, and it is one a fresh scaler would not have.
python3 - "$dir/split/checkpoint.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
scale, good = meta.get("loss_scale"), meta.get("loss_scale_good_steps")
print(f"checkpoint at step 5: loss_scale {scale}, loss_scale_good_steps {good}")
if scale is None or good is None:
    sys.exit("FAIL: the fp16 checkpoint holds no loss scaler state")
if float(scale) == 262144 or good == "0":
    sys.exit("FAIL: the test no longer checks anything: by step 5 the scale should have moved from 2^18 "
             "and a good step should be counted (change --loss-scale or --stop-at)")
PY
"$train" "${common[@]}" -o "$dir/split" --resume "$dir/split/checkpoint.safetensors" > "$dir/split2.log" 2>&1
python3 - "$dir/once/metrics.jsonl" "$dir/split/metrics.jsonl" <<'PY'
import json, sys
def steps(path):  # step -> (loss, grad_norm) of the training steps; a skipped step's norm is null
    rows = [json.loads(line) for line in open(path)]
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in rows if "loss" in r}
once, split = steps(sys.argv[1]), steps(sys.argv[2])
skipped = sorted(s for s, (_, n) in once.items() if n is None)
print(f"uninterrupted run: {len(once)} steps, skipped (overflow) at {skipped}")
if len(skipped) < 2 or not any(s >= 5 for s in skipped):
    sys.exit("FAIL: the test no longer checks anything: the scale should overflow before and after step 5")
bad = [s for s in sorted(once) if once[s] != split.get(s)]
if sorted(once) != list(range(8)) or bad:
    for s in bad:
        print(f"step {s}: uninterrupted (loss, grad norm) {once[s]}, resumed {split.get(s)}")
    sys.exit("FAIL: the resumed fp16 run's losses or gradient norms differ from the uninterrupted run's")
PY
if ! cmp "$dir/once/checkpoint.safetensors" "$dir/split/checkpoint.safetensors"; then
  echo "FAIL: the resumed fp16 run's checkpoint (fp32 master, moments, loss scale) differs from the uninterrupted run's"
  exit 1
fi
echo "fp16 resume is bit for bit: losses, gradient norms, skipped steps and the final checkpoint"
