#!/usr/bin/env bash
# ZeRO through the trainer (lesson 11): 2 MPI ranks x 2 rows with --zero 1, 2 and 3 must train like
# 1 rank x 4 rows (untied nano model): the same losses and validation losses, up to float rounding.
# Then a --zero 2 run stopped half-way and resumed with --zero 3 (its checkpoint is the
# consolidated single-device file) must end like the uninterrupted one-rank run. Finally --zero 2 with
# --dtype bf16 (lesson 11's mixed recipe) must train like one rank with --dtype bf16 (lesson 05's),
# within bf16 rounding (the bf16 reduce-scatter rounds once per combine: 1e-3 relative).
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
common=(--model nano --untie-embeddings --seq-len 32 --steps 12 --eval-every 6 --eval-batches 2 --sample-tokens 0 -q
        --log-every 1 --synthetic-bytes 50000)
compare() {  # metrics label [reference metrics] [relative tolerance]
python3 - "${3:-$dir/one/metrics.jsonl}" "$1" "$2" "${4:-1e-4}" <<'PY'
import json, sys
tol = float(sys.argv[4])
one = [json.loads(l) for l in open(sys.argv[1])]
two = [json.loads(l) for l in open(sys.argv[2])]
by_step = {}
for b in two:
    by_step.setdefault(b["step"], {}).update(b)
worst = 0.0
for a in one:
    b = by_step.get(a["step"], {})
    for key in ("loss", "val_loss"):
        if key in a and key in b:
            rel = abs(a[key] - b[key]) / abs(a[key])
            worst = max(worst, rel)
            assert rel < tol, f"step {a['step']}: {key} {a[key]} on 1 rank vs {b[key]} ({sys.argv[3]})"
assert "val_loss" in by_step.get(12, {}), f"{sys.argv[3]}: no final validation loss"
print(f"{sys.argv[3]} == 1 rank x 4 rows: largest relative difference {worst:.2e} (limit {tol:g})")
PY
}
"$train" "${common[@]}" --batch 4 -o "$dir/one" > "$dir/one.log" 2>&1
for stage in 1 2 3; do
  "${mpi[@]}" -np 2 "$train" "${common[@]}" --batch 2 --zero $stage -o "$dir/z$stage" > "$dir/z$stage.log" 2>&1 \
    || { echo "FAIL: the --zero $stage run failed"; cat "$dir/z$stage.log"; exit 1; }
  grep -q "ZeRO stage $stage" "$dir/z$stage.log" || { echo "FAIL: --zero $stage did not run ZeRO"; cat "$dir/z$stage.log"; exit 1; }
  compare "$dir/z$stage/metrics.jsonl" "2 ranks x 2 rows, --zero $stage"
done
"${mpi[@]}" -np 2 "$train" "${common[@]}" --batch 2 --zero 2 --stop-at 6 -o "$dir/r" > "$dir/r1.log" 2>&1 \
  || { echo "FAIL: the --zero 2 run to step 6 failed"; cat "$dir/r1.log"; exit 1; }
"${mpi[@]}" -np 2 "$train" --steps 12 --eval-every 6 --eval-batches 2 --sample-tokens 0 -q --log-every 1 --seq-len 32 \
  --synthetic-bytes 50000 --batch 2 --zero 3 --resume "$dir/r/checkpoint.safetensors" -o "$dir/r" > "$dir/r2.log" 2>&1 \
  || { echo "FAIL: resuming the --zero 2 checkpoint with --zero 3 failed"; cat "$dir/r2.log"; exit 1; }
compare "$dir/r/metrics.jsonl" "--zero 2 to step 6, resumed with --zero 3"
"$train" "${common[@]}" --batch 4 --dtype bf16 -o "$dir/one_bf16" > "$dir/one_bf16.log" 2>&1
"${mpi[@]}" -np 2 "$train" "${common[@]}" --batch 2 --zero 2 --dtype bf16 -o "$dir/zb" > "$dir/zb.log" 2>&1 \
  || { echo "FAIL: the --zero 2 --dtype bf16 run failed"; cat "$dir/zb.log"; exit 1; }
grep -q "ZeRO stage 2.*bf16" "$dir/zb.log" || { echo "FAIL: --zero 2 --dtype bf16 did not run in bf16"; cat "$dir/zb.log"; exit 1; }
compare "$dir/zb/metrics.jsonl" "2 ranks x 2 rows, --zero 2 --dtype bf16 vs one rank --dtype bf16" "$dir/one_bf16/metrics.jsonl" 1e-3
"${mpi[@]}" -np 2 "$train" --model nano --zero 1 --steps 1 -o "$dir/tied" > "$dir/tied.log" 2>&1 \
  && { echo "FAIL: --zero with a tied model should be an error"; exit 1; }
grep -q "untie-embeddings" "$dir/tied.log" || { echo "FAIL: the error should name --untie-embeddings"; cat "$dir/tied.log"; exit 1; }
echo "ok"
