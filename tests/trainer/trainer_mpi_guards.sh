#!/usr/bin/env bash
# Under mpirun, ranks started with different flags stop together, each naming the first differing
# flag; a rank that stops taking part ends the whole job after --comm-timeout, with a message that
# names the waiting rank and the operation, instead of hanging it.
set -uo pipefail
source "$(dirname "$0")/common.sh"
trainer_args train -- "$@"
fails=0
common=(--model nano --batch 2 --seq-len 16 --steps 6 --eval-every 3 --eval-batches 2 --sample-tokens 0 -q
        --synthetic-bytes 20000 -o "$dir/run")
check() {  # check NAME LOG CODE PATTERN... : non-zero exit and every pattern in the log
  local name=$1 log=$2 code=$3
  shift 3
  local ok=1
  [ "$code" -ne 0 ] || ok=0
  for p in "$@"; do grep -qE -- "$p" "$log" || { ok=0; echo "  missing: $p"; }; done
  if [ $ok -eq 1 ]; then
    echo "ok: $name (exit $code)"
  else
    echo "FAIL: $name (exit $code):"
    tail -20 "$log"
    fails=$((fails + 1))
  fi
}

# Different flags on the two ranks (MPMD launch: one program line per rank).
for flag in "--lr 0.001" "--seed 7" "--warmup 5"; do
  start=$(date +%s)
  "${mpi[@]}" -np 1 "$train" "${common[@]}" : -np 1 "$train" "${common[@]}" $flag > "$dir/flags.log" 2>&1
  code=$?
  name=${flag%% *}
  check "ranks started with different $name" "$dir/flags.log" $code \
    "\[rank 0\] the ranks of group 'world' were started with different flags: $name is" \
    "\[rank 1\] the ranks of group 'world' were started with different flags: $name is"
  grep -q "^step" "$dir/flags.log" && { echo "FAIL: the ranks trained with different $name"; fails=$((fails + 1)); }
done

# Rank 1 stalls before its step-2 gradient all-reduce. With the call check (the default) the
# stall is seen in the check's exchange; without it, in the all-reduce itself.
for check_calls in 1 0; do
  start=$(date +%s)
  SGPT_COMM_CHECK=$check_calls SGPT_TEST_STALL_RANK=1 SGPT_TEST_STALL_AT_STEP=2 \
    "${mpi[@]}" -x SGPT_COMM_CHECK -x SGPT_TEST_STALL_RANK -x SGPT_TEST_STALL_AT_STEP -np 2 \
    "$train" "${common[@]}" --comm-timeout 3 > "$dir/stall.log" 2>&1
  code=$?
  took=$(($(date +%s) - start))
  what="all_reduce on group 'world'"
  [ $check_calls -eq 1 ] && what="call check of all_reduce on group 'world'"
  check "a stalled rank with SGPT_COMM_CHECK=$check_calls ends the job in ${took}s" "$dir/stall.log" $code \
    "test: stalling at step 2" "\[rank 0\] fatal: MPI $what .* waited more than 3 s for the other ranks"
  [ "$took" -lt 60 ] || { echo "FAIL: the stalled job took ${took}s to end"; fails=$((fails + 1)); }
done
exit $fails
