#!/usr/bin/env bash
# Data parallelism through the trainer: 2 MPI ranks with 2 rows each must train like 1 rank with
# 4 rows (the same global batch): the same losses and the same final validation loss, up to
# float rounding (the mean gradient is summed in another order). Twice: with lesson 06's one
# all-reduce after backward, and with lesson 07's buckets of 16 KiB overlapped with backward.
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
common=(--model nano --seq-len 32 --steps 12 --eval-every 6 --eval-batches 2 --sample-tokens 0 -q --log-every 1
        --synthetic-bytes 50000)
"$train" "${common[@]}" --batch 4 -o "$dir/one" > "$dir/one.log" 2>&1
for buckets in 0 16; do
"${mpi[@]}" -np 2 "$train" "${common[@]}" --batch 2 --bucket-kib $buckets -o "$dir/two" > "$dir/two.log" 2>&1 \
  || { echo "FAIL: the 2-rank run (--bucket-kib $buckets) failed"; cat "$dir/two.log"; exit 1; }
grep -q "per rank x 2 ranks" "$dir/two.log" || { echo "FAIL: the 2-rank run did not run on 2 ranks"; cat "$dir/two.log"; exit 1; }
python3 - "$dir/one/metrics.jsonl" "$dir/two/metrics.jsonl" "$buckets" <<'PY'
import json, sys
one = [json.loads(l) for l in open(sys.argv[1])]
two = [json.loads(l) for l in open(sys.argv[2])]
assert len(one) == len(two), (len(one), len(two))
worst = 0.0
for a, b in zip(one, two):
    for key in ("loss", "val_loss"):
        if key in a:
            rel = abs(a[key] - b[key]) / abs(a[key])
            worst = max(worst, rel)
            assert rel < 1e-4, f"step {a['step']}: {key} {a[key]} on 1 rank vs {b[key]} on 2 ranks"
print(f"2 ranks x 2 rows (--bucket-kib {sys.argv[3]}) == 1 rank x 4 rows: {len(one)} metrics lines, "
      f"largest relative difference {worst:.2e}")
PY
done
