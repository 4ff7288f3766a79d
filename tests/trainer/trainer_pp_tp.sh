#!/usr/bin/env bash
# Pipeline and tensor parallelism through the trainer, on 2 MPI ranks, one lesson per call (MODE
# gpipe: lesson 08, 1f1b: lesson 09, tp: lesson 10, so that each lesson's tests need that lesson
# only): each layout trains like the single-device run of the same global batch: the same losses,
# validation losses and gradient norms, and the same final checkpoint (parameters and AdamW
# moments), up to float rounding (f32; sums in another order: relative 1e-5). And each resumes
# across layouts and ends where the uninterrupted single-device run ends: gpipe from a
# data-parallel checkpoint (2 ranks x 2 rows), one rank from a 1f1b checkpoint, --tp with sequence
# parallelism from a plain --tp one, and one rank from that.
set -euo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train compare mode -- "$@"
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
case $mode in
gpipe)
  run gpipe 2 --pp 2 --micro-batches 2 --schedule gpipe
  expect_log gpipe "through 2 pipeline stages of 1+1 blocks (2 micro-batches of 2, GPipe schedule)"
  python3 "$compare" "$dir/one" "$dir/gpipe" "--pp 2 --schedule gpipe == 1 rank"
  # Data parallelism (2 ranks x 2 rows) to step 4, then the pipeline (--batch 4: the same global batch).
  run stop_dp 2 --batch 2 --stop-at 4
  cp -r "$dir/stop_dp" "$dir/dp_then_gpipe"
  run dp_then_gpipe 2 --pp 2 --micro-batches 2 --schedule gpipe --resume "$dir/dp_then_gpipe/checkpoint.safetensors"
  expect_log dp_then_gpipe "resumed from .* at step 4"
  python3 "$compare" "$dir/one" "$dir/dp_then_gpipe" "2 data-parallel ranks to step 4, then --pp 2 gpipe == 1 rank"
  ;;
1f1b)
  run 1f1b 2 --pp 2 --micro-batches 4 --schedule 1f1b
  expect_log 1f1b "through 2 pipeline stages of 1+1 blocks (4 micro-batches of 1, 1F1B schedule)"
  python3 "$compare" "$dir/one" "$dir/1f1b" "--pp 2 --schedule 1f1b == 1 rank"
  run stop_1f1b 2 --pp 2 --micro-batches 4 --schedule 1f1b --stop-at 4
  cp -r "$dir/stop_1f1b" "$dir/1f1b_then_one"
  run 1f1b_then_one 1 --resume "$dir/1f1b_then_one/checkpoint.safetensors"
  python3 "$compare" "$dir/one" "$dir/1f1b_then_one" "--pp 2 1f1b to step 4, then 1 rank == 1 rank"
  ;;
tp)
  run tp 2 --tp 2
  expect_log tp "on 2 tensor-parallel ranks,"
  python3 "$compare" "$dir/one" "$dir/tp" "--tp 2 == 1 rank"
  run sp 2 --tp 2 --sequence-parallel
  expect_log sp "on 2 tensor-parallel ranks (sequence parallel)"
  python3 "$compare" "$dir/one" "$dir/sp" "--tp 2 --sequence-parallel == 1 rank"
  run stop_tp 2 --tp 2 --stop-at 4
  cp -r "$dir/stop_tp" "$dir/tp_then_sp"
  cp -r "$dir/stop_tp" "$dir/tp_then_one"
  run tp_then_sp 2 --tp 2 --sequence-parallel --resume "$dir/tp_then_sp/checkpoint.safetensors"
  expect_log tp_then_sp "resumed from .* at step 4"
  python3 "$compare" "$dir/one" "$dir/tp_then_sp" "--tp 2 to step 4, then --tp 2 --sequence-parallel == 1 rank"
  run tp_then_one 1 --resume "$dir/tp_then_one/checkpoint.safetensors"
  python3 "$compare" "$dir/one" "$dir/tp_then_one" "--tp 2 to step 4, then 1 rank == 1 rank"
  ;;
*)
  echo "usage: trainer_pp_tp.sh TRAIN COMPARE gpipe|1f1b|tp MPIEXEC..."
  exit 2
  ;;
esac
