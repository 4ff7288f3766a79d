#!/usr/bin/env bash
# Bad --pp / --tp layouts stop the job before any training, with an error naming the problem on
# every rank: a stage or rank count that does not match the job, micro-batches that do not divide
# the batch, more stages than blocks, tied embeddings split across stages, a tensor-parallel size
# that does not divide the heads or (with --sequence-parallel) the sequence, and flags that belong
# to another technique.
set -uo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
fails=0
common=(--model nano --batch 4 --steps 4 --sample-tokens 0 -q --synthetic-bytes 20000 -o "$dir/run")
check() {  # check NAME NP PATTERN FLAGS...: fails, every rank prints PATTERN, no step ran
  local name=$1 np=$2 pattern=$3
  shift 3
  local cmd=("$train")
  [ "$np" -gt 1 ] && cmd=("${mpi[@]}" -np "$np" "$train")
  "${cmd[@]}" "${common[@]}" "$@" > "$dir/log" 2>&1
  local code=$? ok=1
  [ $code -ne 0 ] || ok=0
  for ((r = 0; r < np; r++)); do
    local who="\[rank $r\]"
    [ "$np" -eq 1 ] && who="scalegpt-train:"
    grep -E -- "$who.*$pattern" "$dir/log" > /dev/null || { ok=0; echo "  rank $r did not print: $pattern"; }
  done
  grep -q "^step" "$dir/log" && { ok=0; echo "  it trained"; }
  if [ $ok -eq 1 ]; then
    echo "ok: $name (exit $code, $np ranks)"
  else
    echo "FAIL: $name (exit $code):"
    tail -20 "$dir/log"
    fails=$((fails + 1))
  fi
}
check "--pp 3 on 2 ranks" 2 "--pp 3 needs exactly 3 ranks \(mpirun -np 3\), but this job has 2" \
  --pp 3 --untie-embeddings
check "--pp 2 on 1 rank" 1 "--pp 2 needs exactly 2 ranks \(mpirun -np 2\), but this job has 1" --pp 2 --untie-embeddings
check "--tp 2 on 3 ranks" 3 "--tp 2 needs exactly 2 ranks \(mpirun -np 2\), but this job has 3" --tp 2
check "micro-batches not dividing the batch" 2 "--micro-batches 3 does not divide --batch 4" \
  --pp 2 --micro-batches 3 --untie-embeddings
check "more stages than blocks" 3 "--pp 3 asks for more pipeline stages than model 'nano' has blocks \(2\)" \
  --pp 3 --untie-embeddings
check "tied embeddings across stages" 2 "--pp 2 puts the token embedding .* model 'nano' ties them .* --untie-embeddings" \
  --pp 2
check "--tp not dividing the heads" 3 "--tp 3 does not divide the 4 attention heads of model 'nano'" --tp 3
check "--tp not dividing the sequence" 2 "--tp 2 does not divide the sequence length 31 \(--seq-len\)" \
  --tp 2 --sequence-parallel --seq-len 31
check "--pp with --tp without --dp" 2 "--pp 2 with --tp 2: to combine pipeline and tensor parallelism, pass --dp D as well" \
  --pp 2 --tp 2
check "--micro-batches without --pp" 1 "--micro-batches and --schedule apply to pipeline parallelism only" \
  --micro-batches 2
check "--sequence-parallel without --tp" 1 "--sequence-parallel applies to tensor parallelism only" --sequence-parallel
check "a bad schedule" 2 "--schedule must be gpipe or 1f1b, got 'zigzag'" --pp 2 --schedule zigzag --untie-embeddings
check "--dtype bf16 with --tp" 2 "--dtype bf16 runs on one rank for now: --tp trains in f32" --tp 2 --dtype bf16
check "--bucket-kib with --pp" 2 "--bucket-kib applies to data parallelism only, not to --pp" \
  --pp 2 --bucket-kib 16 --untie-embeddings
exit $fails
