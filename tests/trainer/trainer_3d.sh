#!/usr/bin/env bash
# 3D parallelism through the trainer (lesson 12's grid and composition), on 8 MPI ranks: each run
# below trains like one rank with the same global batch of 4 rows: the same losses, validation
# losses and clipped gradient norms at every step, and the same final checkpoint (parameters and
# AdamW moments), up to f32 rounding (relative 1e-5). Each grid run is half of a resumed pair, so
# that every grid starts from a fresh or from a dirty state and its checkpoint is read by another:
# a 2x2x2 grid (--dp 2 --pp 2 --tp 2, 2 rows per replica in 2 micro-batches) trains steps 1-4 and
# a 4x2x1 grid goes on from its checkpoint; a 1x2x4 grid trains steps 1-4 and one rank goes on.
# With --zero 1 (lesson 12's task 4: each replica keeps 1/D of its stage's AdamW state) a 4x2x1
# grid (uneven shards) trains steps 1-4 and a 2x2x2 ZeRO-1 grid goes on. Bad layouts stop every
# rank with an error naming the problem, and --plan prints the planner's layouts.
set -uo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train compare -- "$@"
fails=0
common=(--model nano --seq-len 32 --steps 8 --eval-every 4 --eval-batches 2 --sample-tokens 0 -q --log-every 1
        --synthetic-bytes 50000 --untie-embeddings)
run() {  # run NAME NP FLAGS...: trains into $dir/NAME, the log in $dir/NAME.log
  local name=$1 np=$2
  shift 2
  local cmd=("$train")
  [ "$np" -gt 1 ] && cmd=("${mpi[@]}" -np "$np" "$train")
  "${cmd[@]}" "${common[@]}" "$@" -o "$dir/$name" > "$dir/$name.log" 2>&1 \
    || { echo "FAIL: $name ($*) failed"; tail -30 "$dir/$name.log"; exit 1; }
}
expect_log() {  # expect_log NAME PATTERN: the layout really ran
  grep -q -- "$2" "$dir/$1.log" || { echo "FAIL: $1: '$2' not in its log"; cat "$dir/$1.log"; exit 1; }
}
same() { python3 "$compare" "$@" || exit 1; }

run one 1 --batch 4
# Clipping must take part: the first steps' gradient norms exceed --clip 1.
python3 -c "import json,sys; n=[json.loads(l)['grad_norm'] for l in open(sys.argv[1]) if 'grad_norm' in l]; \
assert max(n) > 1, n" "$dir/one/metrics.jsonl" || { echo "FAIL: no gradient norm above --clip 1: clipping is untested"; exit 1; }
run stop222 8 --batch 2 --dp 2 --pp 2 --tp 2 --micro-batches 2 --stop-at 4
expect_log stop222 "batch 2 x 32 tokens per replica on a 2x2x2 grid: 2 replicas x 2 pipeline stages of 1+1 blocks (2 micro-batches of 1, 1F1B) x 2 tensor-parallel ranks"
cp -r "$dir/stop222" "$dir/g222_then_g421"
run g222_then_g421 8 --batch 1 --dp 4 --pp 2 --tp 1 --resume "$dir/g222_then_g421/checkpoint.safetensors"
expect_log g222_then_g421 "resumed from .* at step 4"
expect_log g222_then_g421 "on a 4x2x1 grid"
same "$dir/one" "$dir/g222_then_g421" "2x2x2 to step 4, then 4x2x1 == 1 rank"

run stop124 8 --batch 4 --dp 1 --pp 2 --tp 4 --micro-batches 4 --stop-at 4
expect_log stop124 "on a 1x2x4 grid"
cp -r "$dir/stop124" "$dir/g124_then_one"
run g124_then_one 1 --batch 4 --resume "$dir/g124_then_one/checkpoint.safetensors"
same "$dir/one" "$dir/g124_then_one" "1x2x4 to step 4, then 1 rank == 1 rank"

run zstop421 8 --batch 1 --dp 4 --pp 2 --tp 1 --zero 1 --stop-at 4
expect_log zstop421 "on a 4x2x1 grid: .*, ZeRO-1: each stage's AdamW state sharded over its 4 replicas"
cp -r "$dir/zstop421" "$dir/z421_then_z222"
run z421_then_z222 8 --batch 2 --dp 2 --pp 2 --tp 2 --micro-batches 2 --zero 1 --resume "$dir/z421_then_z222/checkpoint.safetensors"
expect_log z421_then_z222 "resumed from .* at step 4"
expect_log z421_then_z222 "on a 2x2x2 grid: .*, ZeRO-1: each stage's AdamW state sharded over its 2 replicas"
same "$dir/one" "$dir/z421_then_z222" "4x2x1 ZeRO-1 to step 4, then 2x2x2 ZeRO-1 == 1 rank"

# Bad layouts: every rank prints the error, nothing trains.
check() {  # check NAME NP PATTERN FLAGS...
  local name=$1 np=$2 pattern=$3
  shift 3
  "${mpi[@]}" -np "$np" "$train" --model nano --batch 4 --steps 4 --sample-tokens 0 -q --synthetic-bytes 20000 \
    -o "$dir/bad" "$@" > "$dir/bad.log" 2>&1
  local code=$? ok=1
  [ $code -ne 0 ] || ok=0
  for ((r = 0; r < np; r++)); do
    grep -E -- "\[rank $r\].*$pattern" "$dir/bad.log" > /dev/null || { ok=0; echo "  rank $r did not print: $pattern"; }
  done
  grep -q "^step" "$dir/bad.log" && { ok=0; echo "  it trained"; }
  if [ $ok -eq 1 ]; then echo "ok: $name (exit $code)"; else echo "FAIL: $name (exit $code)"; tail -20 "$dir/bad.log"; fails=$((fails + 1)); fi
}
check "a 2x2x2 grid on 4 ranks" 4 "--dp 2 --pp 2 --tp 2 is a grid of D\*P\*T = 8 ranks \(mpirun -np 8\), but this job has 4" \
  --dp 2 --pp 2 --tp 2 --untie-embeddings
check "--tp not dividing the heads" 3 "--tp 3 does not divide the 4 attention heads" --dp 1 --tp 3 --untie-embeddings
check "tied embeddings" 2 "model 'nano' ties them: pass --untie-embeddings" --dp 1 --pp 2
check "GPipe on the grid" 2 "--dp runs lesson 12's composition, whose pipeline schedule is 1f1b, got --schedule gpipe" \
  --dp 1 --pp 2 --schedule gpipe --untie-embeddings
check "--zero 2 on the grid" 4 "--zero 2 and --bucket-kib do not combine with it" --dp 2 --pp 2 --zero 2 --untie-embeddings
check "--zero 3 on the grid" 4 "--zero 3 and --bucket-kib do not combine with it" --dp 1 --tp 2 --pp 2 --zero 3 --untie-embeddings
check "--zero 3 with --tp, no grid" 2 "--zero 3 is data parallelism with sharded state: it does not combine with --pp, --tp" \
  --tp 2 --zero 3 --untie-embeddings
check "--zero 1 with --pp, no grid" 2 "--zero 1 .* lesson 12's grid: pass --dp D too" --pp 2 --zero 1 --untie-embeddings
check "more stages than blocks" 3 "--pp 3 asks for more pipeline stages than model 'nano' has blocks \(2\)" \
  --dp 1 --pp 3 --untie-embeddings

# --plan: the planner's layouts for 8 GPUs, the command line's layout placed among them; no training.
"$train" --model nano --seq-len 32 --batch 4 --plan --plan-gpus 8 --dp 2 --pp 2 --tp 2 --micro-batches 2 \
  -o "$dir/plan" > "$dir/plan.log" 2>&1 || { echo "FAIL: --plan failed"; cat "$dir/plan.log"; exit 1; }
for pattern in "^plan: model nano .* global batch 8 rows, fp32, on 8 GPUs" "^1 +dp[0-9]+ pp[0-9]+ tp[0-9]+ mb[0-9]+ z[0-3]" \
               "layouts fit in memory" "^your layout" "^[0-9]+ +dp2 pp2 tp2 mb2 z0 1f1b"; do
  grep -Eq -- "$pattern" "$dir/plan.log" || { echo "FAIL: --plan printed no line matching '$pattern'"; cat "$dir/plan.log"; fails=$((fails + 1)); }
done
[ ! -e "$dir/plan" ] || { echo "FAIL: --plan wrote $dir/plan"; fails=$((fails + 1)); }
grep -q "^step" "$dir/plan.log" && { echo "FAIL: --plan trained"; fails=$((fails + 1)); }
# A layout the planner cannot run, and a --plan flag without --plan: errors naming the problem.
"$train" --model nano --seq-len 32 --batch 4 --plan --plan-gpus 12 --dp 2 --pp 2 --tp 3 -o "$dir/plan" > "$dir/plan.log" 2>&1
grep -q "tp = 3 does not divide the 4 heads" "$dir/plan.log" || { echo "FAIL: --plan with --tp 3"; cat "$dir/plan.log"; fails=$((fails + 1)); }
"$train" --model nano --plan-gpus 8 -o "$dir/plan" > "$dir/plan.log" 2>&1
grep -q "apply to --plan only: pass --plan too" "$dir/plan.log" || { echo "FAIL: --plan-gpus without --plan"; cat "$dir/plan.log"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "ok: --plan"
exit $fails
