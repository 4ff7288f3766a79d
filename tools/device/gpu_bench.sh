#!/usr/bin/env bash
# One batched run on the GPU machine (one H100/H200): build the CUDA preset, run the CUDA tests,
# the training benchmark at GPT-2 124M, and the collective benchmarks (MPI on CPU ranks, NCCL on
# one GPU). Logs go to $OUT (or ./out). Usage: tools/device/gpu_bench.sh [quick]
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
gen=(-G Ninja); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
  cmake -S . -B build/gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON -DSCALEGPT_BUILD_TESTS=ON
  cmake --build build/gpu -j 16
} > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
tail -3 "$OUT/build.log"
(cd build/gpu && ctest -L 'cuda|kernels|model' --output-on-failure -j 4) > "$OUT/ctest_gpu.log" 2>&1
tail -5 "$OUT/ctest_gpu.log"
b=build/gpu/tools/bench/scalegpt-bench-train
for B in 16 32; do
  $b --device cuda --model d12 --vocab 50257 --batch $B --seq-len 1024 --warmup 2 --steps 10 > "$OUT/bench_d12_B$B.log" 2>&1
  grep -E "median|peak|activations|total" "$OUT/bench_d12_B$B.log"
done
$b --device cuda --model d12 --vocab 50257 --batch 16 --seq-len 1024 --warmup 1 --steps 3 --profile > "$OUT/profile_d12_B16.log" 2>&1
sed -n '/where the time goes/,$p' "$OUT/profile_d12_B16.log" | head -25
[ "${1:-}" = quick ] && exit 0
c=build/gpu/tools/bench_comm/scalegpt-bench-comm
for np in 2 4 8; do
  mpirun -np $np --oversubscribe --bind-to none $c --backend mpi --op all_reduce -b 8 -e 256M -f 4 > "$OUT/comm_mpi_np$np.log" 2>&1
done
$c --backend nccl --op all_reduce -b 8 -e 1G -f 4 > "$OUT/comm_nccl_1gpu.log" 2>&1
tail -4 "$OUT"/comm_*.log
