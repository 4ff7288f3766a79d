#!/usr/bin/env bash
# One batched run on a machine with several GPUs: the communication suite on NCCL at every rank
# count up to the GPU count, and the NCCL collective benchmarks from 8 B to 1 GB.
# Logs go to $OUT (or ./out).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
ngpu=$(nvidia-smi -L | wc -l)
gen=(-G Ninja); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
{
  nvidia-smi topo -m
  cmake -S . -B build/gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON -DSCALEGPT_BUILD_TESTS=ON
  cmake --build build/gpu -j 32 --target test_comm_mpi scalegpt-bench-comm
} > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
for np in $(seq 1 "$ngpu"); do
  SGPT_COMM_BACKEND=nccl timeout 300 mpirun -np "$np" --oversubscribe --bind-to none \
    build/gpu/tests/comm/test_comm_mpi > "$OUT/comm_suite_nccl_np$np.log" 2>&1
  echo "NCCL suite at $np ranks: exit $? | $(grep -E 'PASSED|FAILED' "$OUT/comm_suite_nccl_np$np.log" | head -2 | tr '\n' ' ')"
done
for op in all_reduce reduce_scatter all_gather; do
  mpirun -np "$ngpu" --bind-to none build/gpu/tools/bench_comm/scalegpt-bench-comm --backend nccl --op $op \
    -b 8 -e 1G -f 4 > "$OUT/nccl_${op}_np$ngpu.log" 2>&1
  echo "$op:"; tail -4 "$OUT/nccl_${op}_np$ngpu.log"
done
