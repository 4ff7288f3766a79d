#!/usr/bin/env bash
# One batched run on one H100/H200 for the single-GPU speed work: build what it needs, run the
# CUDA parity tests, then the training benchmark at GPT-2 124M, T=1024, before and after each
# change (unfused/fused attention, TF32/bf16 products), a per-op profile and the per-op kernel
# benchmark. Logs go to $OUT (or ./out) as one tarball plus a summary.
# Usage: tools/device/gpu_perf.sh [sanitize] [ncu] [repeat]
#   sanitize: also compute-sanitizer (memcheck, racecheck) on the fused-attention tests
#   ncu:      Nsight Compute's speed of light and occupancy of the fused-attention kernels (bf16);
#             ncu prints its report once the kernel is profiled, then the timeout cuts the slowed rest
#   repeat:   only the headline benchmarks again (medians over runs); no profile, no op benchmark
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
has() { [[ " $ARGS " == *" $1 "* ]]; }
ARGS="$*"
L=$(mktemp -d)
gen=(-G Ninja); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
S="$OUT/summary.txt"
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  cmake -S . -B build/gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON -DSCALEGPT_BUILD_TESTS=ON
  cmake --build build/gpu -j 16 --target test_cuda_parity scalegpt-bench-train bench_cuda_ops
} > "$L/build.log" 2>&1 || { tail -60 "$L/build.log"; cp "$L/build.log" "$OUT/"; exit 1; }
head -2 "$L/build.log" | tee "$S"
t=build/gpu/tests/cuda/test_cuda_parity
timeout 400 $t > "$L/test_cuda_parity.log" 2>&1
echo "test_cuda_parity rc=$?" | tee -a "$S"
grep -E "^\[  (FAILED|PASSED) |FAILED|Failure|T1 " "$L/test_cuda_parity.log" | grep -v "^\[ RUN" | tee -a "$S"
if has sanitize; then
  for tool in memcheck racecheck; do
    timeout 90 compute-sanitizer --tool $tool $t --gtest_filter='*AttentionFused*' > "$L/sanitize_$tool.log" 2>&1
    echo "$tool rc=$?" | tee -a "$S"; tail -3 "$L/sanitize_$tool.log" | tee -a "$S"
  done
fi
if has ncu; then
  for p in bf16; do
    for k in forward backward_dkdv backward_dq; do
      timeout 100 ncu --clock-control none --kernel-name regex:attention_fused_${k}_kernel --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section LaunchStats build/gpu/tests/cuda/bench_cuda_ops --B 16 \
        --T 1024 --reps 1 $([ $p = bf16 ] && echo --bf16) > "$L/ncu_${k}_$p.log" 2>&1
      echo "ncu $k $p rc=$?" | tee -a "$S"
      grep -E "Duration|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy" \
        "$L/ncu_${k}_$p.log" | tee -a "$S"
    done
  done
fi
b=build/gpu/tools/bench/scalegpt-bench-train
run() {  # name, args...
  local name=$1; shift
  timeout 300 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --warmup 3 --steps 10 "$@" > "$L/bench_$name.log" 2>&1
  echo "== $name: $*" | tee -a "$S"
  grep -E "median|activations|total|error" "$L/bench_$name.log" | tee -a "$S"
}
if has repeat; then
  run B16_unfused_tf32_r3 --batch 16 --attention unfused --matmul tf32
  run B16_fused_tf32_r2 --batch 16 --attention fused --matmul tf32
  run B16_fused_bf16_r3 --batch 16 --attention fused --matmul bf16
  run B32_fused_bf16_r2 --batch 32 --attention fused --matmul bf16
  run B32_fused_bf16_r3 --batch 32 --attention fused --matmul bf16
  run B32_unfused_tf32_r2 --batch 32 --attention unfused --matmul tf32
else
  run B16_unfused_tf32 --batch 16 --attention unfused --matmul tf32
  run B16_fused_tf32 --batch 16 --attention fused --matmul tf32
  run B16_unfused_bf16 --batch 16 --attention unfused --matmul bf16
  run B16_fused_bf16 --batch 16 --attention fused --matmul bf16
  run B32_unfused_tf32 --batch 32 --attention unfused --matmul tf32
  run B32_fused_bf16 --batch 32 --attention fused --matmul bf16
  run B16_fused_bf16_rerun --batch 16 --attention fused --matmul bf16
  timeout 300 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --batch 16 --warmup 1 --steps 3 --attention fused \
    --matmul bf16 --profile > "$L/profile_B16_fused_bf16.log" 2>&1
  sed -n '/where the time goes/,$p' "$L/profile_B16_fused_bf16.log" | head -30 | tee -a "$S"
  for p in tf32 bf16; do
    timeout 300 build/gpu/tests/cuda/bench_cuda_ops --B 16 --T 1024 $([ $p = bf16 ] && echo --bf16) > "$L/bench_cuda_ops_B16_$p.log" 2>&1
    echo "== bench_cuda_ops $p" | tee -a "$S"
    grep -E "attention|matmul_backward fc |estimated" "$L/bench_cuda_ops_B16_$p.log" | tee -a "$S"
  done
fi
tar -czf "$OUT/logs.tar.gz" -C "$L" .
