#!/usr/bin/env bash
# One batched run on one H100/H200 for the single-GPU speed work: build what it needs, run the
# CUDA parity tests, then the training benchmark at GPT-2 124M, T=1024, before and after each
# change (unfused/fused attention, TF32/bf16 linear layers), a per-op profile and the per-op
# kernel benchmark. Logs go to $OUT (or ./out) as one tarball plus a summary.
# Usage: tools/device/gpu_perf.sh [sanitize]   (sanitize: also compute-sanitizer on the fused attention)
set -uo pipefail
OUT=${OUT:-out}
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
grep -E "^\[  (FAILED|PASSED) |FAILED|Attention[A-Za-z]*Fused|fused|bf16" "$L/test_cuda_parity.log" | grep -v "^\[ RUN" | tee -a "$S"
if [ "${1:-}" = sanitize ]; then
  timeout 90 compute-sanitizer --tool memcheck $t --gtest_filter='*AttentionFused*' > "$L/sanitize_memcheck.log" 2>&1
  echo "memcheck rc=$?" | tee -a "$S"; tail -3 "$L/sanitize_memcheck.log" | tee -a "$S"
  timeout 90 compute-sanitizer --tool racecheck $t --gtest_filter='*AttentionFused*' > "$L/sanitize_racecheck.log" 2>&1
  echo "racecheck rc=$?" | tee -a "$S"; tail -3 "$L/sanitize_racecheck.log" | tee -a "$S"
fi
b=build/gpu/tools/bench/scalegpt-bench-train
run() {  # name, args...
  local name=$1; shift
  timeout 300 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --warmup 3 --steps 10 "$@" > "$L/bench_$name.log" 2>&1
  echo "== $name: $*" | tee -a "$S"
  grep -E "median|Activations|total|error" "$L/bench_$name.log" | tee -a "$S"
}
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
tar -czf "$OUT/logs.tar.gz" -C "$L" .
