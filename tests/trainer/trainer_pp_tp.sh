#!/usr/bin/env bash
# Pipeline and tensor parallelism through the trainer (lessons 08, 09, 10), on 2 MPI ranks: each
# layout trains like the single-device run of the same global batch: the same losses, validation
# losses and gradient norms, and the same final checkpoint (parameters and AdamW moments), up to
# float rounding (f32; sums in another order: relative 1e-5). Then resuming across layouts: a run
# stopped under --pp and resumed under --tp --sequence-parallel, one stopped under --tp and resumed
# on one rank, and one stopped under data parallelism and resumed under --pp, end where the
# uninterrupted single-device run ends.
set -euo pipefail
train=$1
compare=$2
shift 2
mpi=("$@")  # the mpiexec prefix without -np
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
common=(--model nano --seq-len 32 --steps 8 --eval-every 4 --eval-batches 2 --sample-tokens 0 -q
        --log-every 1 --synthetic-bytes 50000 --untie-embeddings)
run() {  # run NAME NP FLAGS...: trains into $dir/NAME, the log in $dir/NAME.log
  local name=$1 np=$2
  shift 2
  local cmd=("$train") batch=(--batch 4)  # the global batch, unless the run names its own --batch
  [ "$np" -gt 1 ] && cmd=("${mpi[@]}" -np "$np" "$train")
  for a in "$@"; do [ "$a" = --batch ] && batch=(); done
  "${cmd[@]}" "${common[@]}" "${batch[@]}" "$@" -o "$dir/$name" > "$dir/$name.log" 2>&1 \
    || { echo "FAIL: $name ($*) failed"; cat "$dir/$name.log"; exit 1; }
}
expect_log() {  # expect_log NAME PATTERN: the layout really ran
  grep -q -- "$2" "$dir/$1.log" || { echo "FAIL: $1: '$2' not in its log"; cat "$dir/$1.log"; exit 1; }
}
run one 1
run gpipe 2 --pp 2 --micro-batches 2 --schedule gpipe
expect_log gpipe "through 2 pipeline stages of 1+1 blocks (2 micro-batches of 2, GPipe schedule)"
run 1f1b 2 --pp 2 --micro-batches 4 --schedule 1f1b
expect_log 1f1b "through 2 pipeline stages of 1+1 blocks (4 micro-batches of 1, 1F1B schedule)"
run tp 2 --tp 2
expect_log tp "on 2 tensor-parallel ranks,"
run sp 2 --tp 2 --sequence-parallel
expect_log sp "on 2 tensor-parallel ranks (sequence parallel)"
for name in gpipe 1f1b tp sp; do python3 "$compare" "$dir/one" "$dir/$name" "--$name on 2 ranks == 1 rank"; done

# Resume with another layout: stop at step 4, go on to 8; the consolidated checkpoint carries it.
run stop_pp 2 --pp 2 --micro-batches 2 --stop-at 4
cp -r "$dir/stop_pp" "$dir/pp_then_sp"
run pp_then_sp 2 --tp 2 --sequence-parallel --resume "$dir/pp_then_sp/checkpoint.safetensors"
expect_log pp_then_sp "resumed from .* at step 4"
python3 "$compare" "$dir/one" "$dir/pp_then_sp" "--pp 2 to step 4, then --tp 2 --sequence-parallel == 1 rank"
run stop_tp 2 --tp 2 --stop-at 4
cp -r "$dir/stop_tp" "$dir/tp_then_one"
run tp_then_one 1 --resume "$dir/tp_then_one/checkpoint.safetensors"
python3 "$compare" "$dir/one" "$dir/tp_then_one" "--tp 2 to step 4, then 1 rank == 1 rank"
# Data parallelism (2 ranks x 2 rows) to step 4, then the pipeline (--batch 4: the same global batch).
run stop_dp 2 --batch 2 --stop-at 4
cp -r "$dir/stop_dp" "$dir/dp_then_pp"
run dp_then_pp 2 --pp 2 --micro-batches 2 --resume "$dir/dp_then_pp/checkpoint.safetensors"
python3 "$compare" "$dir/one" "$dir/dp_then_pp" "2 data-parallel ranks to step 4, then --pp 2 == 1 rank"
