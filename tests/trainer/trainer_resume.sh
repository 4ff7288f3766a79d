#!/usr/bin/env bash
# Train 8 steps in one go; train the same 8 steps as 5 + resume 3. The final checkpoints must be
# byte-identical (same parameters, optimizer moments, step and data position), and the resumed
# run's metrics.jsonl must hold the whole history (steps 0-7), as the uninterrupted run's does.
# Then a resumed run is killed at step 7: the lines it logged stay on disk, the next resume drops
# the ones past the checkpoint's step only, and orphan temporary files of the killed writer go.
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
common=(--model nano --batch 4 --seq-len 32 --steps 8 --eval-every 4 --eval-batches 2 --sample-tokens 0 -q
        --synthetic-bytes 50000)
"$train" "${common[@]}" -o "$dir/once" > "$dir/once.log" 2>&1
"$train" "${common[@]}" -o "$dir/split" --stop-at 5 > "$dir/split1.log" 2>&1
grep -q "stopped at step 5" "$dir/split1.log"
cp -r "$dir/split" "$dir/killed"  # the state at step 5, for the kill below
"$train" "${common[@]}" -o "$dir/split" --resume "$dir/split/checkpoint.safetensors" > "$dir/split2.log" 2>&1
grep -q "resumed from .* at step 5" "$dir/split2.log"
if cmp "$dir/once/checkpoint.safetensors" "$dir/split/checkpoint.safetensors"; then
  echo "resume is bit for bit"
else
  echo "FAIL: the resumed run's checkpoint differs from the uninterrupted run's"
  exit 1
fi

# metrics.jsonl: the same events (step, loss, val_loss) in the same order, nothing lost.
same_history() {  # same_history FILE_A FILE_B WHAT
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
def events(path):
    return [(j["step"], j.get("loss"), j.get("val_loss")) for j in map(json.loads, open(path))]
a, b = events(sys.argv[1]), events(sys.argv[2])
assert a == b, f"{sys.argv[3]}: metrics differ:\n{a}\n{b}"
assert [s for s, l, v in a if l is not None] == list(range(8)), a
print(f"{sys.argv[3]}: metrics.jsonl holds the whole history ({len(a)} lines, steps 0-7)")
PY
}
same_history "$dir/once/metrics.jsonl" "$dir/split/metrics.jsonl" "stop at 5 + resume"

# Kill a resumed run as it reaches step 7 (SIGKILL: no chance to flush anything).
set +e
SGPT_TEST_KILL_AT_STEP=7 "$train" "${common[@]}" -o "$dir/killed" --resume "$dir/killed/checkpoint.safetensors" \
  > "$dir/killed1.log" 2>&1
code=$?
set -e
[ $code -eq 137 ] || { echo "FAIL: the run was not killed (exit $code)"; cat "$dir/killed1.log"; exit 1; }
python3 - "$dir/killed/metrics.jsonl" <<'PY'
import json, sys
steps = [j["step"] for j in map(json.loads, open(sys.argv[1])) if "loss" in j]
assert steps == list(range(7)), f"after a kill at step 7 the metrics hold training steps {steps}, expected 0-6"
print("killed at step 7: metrics.jsonl kept steps 0-6")
PY
# Orphans: what a writer killed mid-save leaves (its pid no longer runs), next to files that are
# not ours or belong to a live process; only the first kind may go.
sleep 0 & wait $!
dead=$!
touch "$dir/killed/checkpoint.safetensors.tmp.$dead.0" "$dir/killed/loss.svg.tmp.$dead.3" \
      "$dir/killed/checkpoint.safetensors.tmp.$$.0" "$dir/killed/notes.tmp.$dead.0"
"$train" "${common[@]}" -o "$dir/killed" --resume "$dir/killed/checkpoint.safetensors" > "$dir/killed2.log" 2>&1
grep -q "removed .*checkpoint.safetensors.tmp.$dead.0, an orphan temporary file" "$dir/killed2.log"
left=$(cd "$dir/killed" && ls | sort | tr '\n' ' ')
[ "$left" = "checkpoint.safetensors checkpoint.safetensors.tmp.$$.0 loss.svg metrics.jsonl notes.tmp.$dead.0 " ] ||
  { echo "FAIL: after start-up --out holds: $left"; exit 1; }
echo "orphan temporary files removed, the others kept"
cmp "$dir/once/checkpoint.safetensors" "$dir/killed/checkpoint.safetensors"
same_history "$dir/once/metrics.jsonl" "$dir/killed/metrics.jsonl" "killed at 7 + resumed from 5"
