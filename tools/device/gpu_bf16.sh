#!/usr/bin/env bash
# One batched run on one H200 for bf16 storage (issue 17): build for sm_90, the CUDA parity tests,
# the training benchmark at GPT-2 124M, T=1024, --dtype bf16 (lesson 05's recipe) at B=16 and
# B=32, the per-op benchmark with bf16 storage, a --profile run, and a short Tiny Shakespeare
# training run of the `mini` model in bf16 and in f32. Logs go to $OUT (or ./out) as one tarball
# plus summary.txt. Each phase is skipped when too little of the 10-minute call is left.
# Usage: tools/device/gpu_bf16.sh [runs N] [steps S] [seed K] [data DIR] [nobuild] [notrain] [trainonly] [sanitize]
#   runs N:  N benchmark runs at B=16 and at B=32 (default 3)
#   steps S: training steps of the Tiny Shakespeare comparison (default 600)
#   data DIR: directory with train.bin and val.bin (default data/tinyshakespeare)
#   seed K:   the training runs' --seed (default 1337, the trainer's default)
#   notrain:  skip the Tiny Shakespeare comparison; trainonly: stop after it (no benchmarks)
#   sanitize: compute-sanitizer memcheck on the bf16 attention and LayerNorm tests
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
ARGS=" $* "
has() { [[ "$ARGS" == *" $1 "* ]]; }
N=3; STEPS=600; DATA=data/tinyshakespeare; SEED=1337
[[ "$ARGS" =~ " runs "([0-9]+)" " ]] && N=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " steps "([0-9]+)" " ]] && STEPS=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " data "([^ ]+)" " ]] && DATA=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " seed "([0-9]+)" " ]] && SEED=${BASH_REMATCH[1]}
BD=${SGPT_BUILD_DIR:-/tmp/sgpt-gpu}   # outside the working tree: survives while the machine is warm
L="$OUT/logs"
mkdir -p "$L"
S="$OUT/summary.txt"
T0=$SECONDS
left() { echo $((${SGPT_LIMIT_S:-570} - (SECONDS - T0))); }  # seconds left of the call (10 minutes)
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv
  if ! has nobuild; then
    cmake -S . -B "$BD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON -DSCALEGPT_BUILD_TESTS=ON \
      -DSCALEGPT_CUDA_ARCHITECTURES=90
    cmake --build "$BD" -j 16 --target test_cuda_parity bench_cuda_ops scalegpt-bench-train scalegpt-train
  fi
} > "$L/build.log" 2>&1 || { tail -60 "$L/build.log"; exit 1; }
head -2 "$L/build.log" | tee "$S"
echo "build done at $((SECONDS - T0)) s" | tee -a "$S"
t=$BD/tests/cuda/test_cuda_parity
timeout 150 $t > "$L/test_cuda_parity.log" 2>&1
echo "test_cuda_parity rc=$? at $((SECONDS - T0)) s" | tee -a "$S"
grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is|bf16|mixed|model " "$L/test_cuda_parity.log" | grep -v "^\[ RUN" |
  tail -120 >> "$S"
grep -E "^\[  (FAILED|PASSED) " "$L/test_cuda_parity.log"
b=$BD/tools/bench/scalegpt-bench-train
bench() {  # name, args...
  local name=$1; shift
  (($(left) > 40)) || { echo "== $name skipped (time)" | tee -a "$S"; return; }
  timeout 60 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --warmup 3 --steps 10 "$@" > "$L/bench_$name.log" 2>&1
  echo "== $name: $*" | tee -a "$S"
  grep -E "median|total|rror|Activations|Parameters|Gradients|OptimizerState" "$L/bench_$name.log" | tee -a "$S"
}
bench B16_bf16_run1 --batch 16 --dtype bf16 --attention fused
bench B32_bf16_run1 --batch 32 --dtype bf16 --attention fused
tr() {  # dtype
  (($(left) > 60)) || { echo "== train $1 skipped (time)" | tee -a "$S"; return; }
  local tag=$1_seed$SEED
  timeout 120 $BD/tools/train/scalegpt-train --data "$DATA" --model mini --batch 32 --seq-len 256 --steps "$STEPS" \
    --lr 1e-3 --eval-every 50 --eval-batches 16 --device cuda --dtype "$1" --seed "$SEED" --sample-tokens 0 \
    --out /tmp/runs_$tag > "$L/train_mini_tinyshakespeare_$tag.log" 2>&1
  echo "== train mini $tag rc=$?" | tee -a "$S"
  grep -E "val loss" "$L/train_mini_tinyshakespeare_$tag.log" | tail -14 | tee -a "$S"
  tail -4 "$L/train_mini_tinyshakespeare_$tag.log" | tee -a "$S"
}
if ! has notrain; then
  tr bf16
  tr f32
fi
has trainonly && { echo "done at $((SECONDS - T0)) s" | tee -a "$S"; tar -czf "$OUT/logs.tar.gz" -C "$L" .; exit 0; }
for r in $(seq 2 "$N"); do bench B16_bf16_run$r --batch 16 --dtype bf16 --attention fused; done
for r in $(seq 2 "$N"); do bench B32_bf16_run$r --batch 32 --dtype bf16 --attention fused; done
bench B16_f32_bf16products --batch 16 --dtype f32 --attention fused --matmul bf16
if (($(left) > 45)); then
  timeout 60 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --batch 16 --warmup 1 --steps 3 --dtype bf16 \
    --profile > "$L/profile_B16_bf16.log" 2>&1
  sed -n '/where the time goes/,$p' "$L/profile_B16_bf16.log" | head -30 | tee -a "$S"
fi
if has sanitize && (($(left) > 100)); then
  timeout 90 compute-sanitizer --tool memcheck $t --gtest_filter='*BF16AttentionFused*:*BF16EncoderLayerNorm*' \
    > "$L/sanitize_memcheck_bf16.log" 2>&1
  echo "memcheck rc=$?" | tee -a "$S"; tail -3 "$L/sanitize_memcheck_bf16.log" | tee -a "$S"
fi
if (($(left) > 100)); then
  # (the host draws the B x T x Vp random logits: most of its time is that, not the GPU)
  timeout $(($(left) - 10)) $BD/tests/cuda/bench_cuda_ops --B 16 --T 1024 --storage bf16 > "$L/bench_cuda_ops_B16_bf16storage.log" 2>&1
  echo "== bench_cuda_ops bf16 storage rc=$?" | tee -a "$S"
  grep -E "^op|attention|matmul|softmax|layernorm|gelu|adamw|encoder|estimated" "$L/bench_cuda_ops_B16_bf16storage.log" | tee -a "$S"
fi
echo "done at $((SECONDS - T0)) s" | tee -a "$S"
tar -czf "$OUT/logs.tar.gz" -C "$L" . && rm -rf "$L"
