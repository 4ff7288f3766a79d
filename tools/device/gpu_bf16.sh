#!/usr/bin/env bash
# One batched run on one H200 for bf16 storage (issue 17): build for sm_90, the CUDA parity tests,
# the training benchmark at GPT-2 124M, T=1024, --dtype bf16 (lesson 05's recipe) at B=16 and
# B=32, the per-op benchmark with bf16 storage, a --profile run, and a short Tiny Shakespeare
# training run of the `mini` model in bf16 and in f32. Logs go to $OUT (or ./out) as one tarball
# plus summary.txt. Each phase is skipped when too little of the 10-minute call is left.
# Usage: tools/device/gpu_bf16.sh [runs N] [steps S] [seed K] [data DIR] [bin DIR] [nobuild] [notrain]
#                                 [trainonly] [d12] [d12steps S] [nomini] [notest] [memory] [sanitize]
#   runs N:  N benchmark runs at B=16 and at B=32 (default 3)
#   steps S: training steps of the mini Tiny Shakespeare comparison (default 600)
#   data DIR: directory with train.bin and val.bin (default data/tinyshakespeare)
#   seed K:   the training runs' --seed (default 1337, the trainer's default)
#   bin DIR:  use the programs already built under DIR (a build directory's layout: tools/bench/...,
#             tools/train/..., tests/cuda/...) instead of building; falls back to building when
#             one of them is missing or cannot load its libraries
#   notrain:  skip the Tiny Shakespeare comparison; trainonly: stop after it (no benchmarks)
#   d12:      also compare bf16 with f32 on the d12 model (B=8, T=1024, lr 6e-4, d12steps S steps,
#             default 600, an evaluation every S/12 steps); nomini: skip the mini comparison
#   notest:   skip the parity tests
#   memory:   the GELU-recomputation checks: test_cuda_model_memory, the whole-model parity
#             tests, and the benchmark at B=16 and B=32 with --recompute none and gelu (bf16; run 1
#             before the training, runs 2..N after it)
#   sanitize: compute-sanitizer memcheck on the bf16 attention and LayerNorm tests
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
ARGS=" $* "
has() { [[ "$ARGS" == *" $1 "* ]]; }
N=3; STEPS=600; DATA=data/tinyshakespeare; SEED=1337; D12_STEPS=600
[[ "$ARGS" =~ " d12steps "([0-9]+)" " ]] && D12_STEPS=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " runs "([0-9]+)" " ]] && N=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " steps "([0-9]+)" " ]] && STEPS=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " data "([^ ]+)" " ]] && DATA=${BASH_REMATCH[1]}
[[ "$ARGS" =~ " seed "([0-9]+)" " ]] && SEED=${BASH_REMATCH[1]}
BD=${SGPT_BUILD_DIR:-/tmp/sgpt-gpu}   # outside the working tree: survives while the machine is warm
PROGS="tests/cuda/test_cuda_parity tests/cuda/test_cuda_model_memory tools/bench/scalegpt-bench-train tools/train/scalegpt-train"
if [[ "$ARGS" =~ " bin "([^ ]+)" " ]]; then
  ok=1
  for p in $PROGS; do
    [[ -x "${BASH_REMATCH[1]}/$p" ]] && ! ldd "${BASH_REMATCH[1]}/$p" | grep -q "not found" || ok=0
  done
  if ((ok)); then BD=${BASH_REMATCH[1]}; ARGS="$ARGS nobuild "; else echo "bin ${BASH_REMATCH[1]}: unusable, building"; fi
fi
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
    cmake --build "$BD" -j 16 --target test_cuda_parity test_cuda_model_memory bench_cuda_ops scalegpt-bench-train \
      scalegpt-train
  fi
} > "$L/build.log" 2>&1 || { tail -60 "$L/build.log"; exit 1; }
head -2 "$L/build.log" | tee "$S"
echo "build done at $((SECONDS - T0)) s" | tee -a "$S"
t=$BD/tests/cuda/test_cuda_parity
if has memory && ! has notest; then
  timeout 60 $BD/tests/cuda/test_cuda_model_memory > "$L/test_cuda_model_memory.log" 2>&1
  echo "test_cuda_model_memory rc=$? at $((SECONDS - T0)) s" | tee -a "$S"
  grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is" "$L/test_cuda_model_memory.log" | tee -a "$S"
  PARITY_FILTER='*WholeModel*'
fi
if ! has notest; then
  timeout 150 $t --gtest_filter="${PARITY_FILTER:-*}" > "$L/test_cuda_parity.log" 2>&1
  echo "test_cuda_parity rc=$? at $((SECONDS - T0)) s" | tee -a "$S"
  grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is|bf16|mixed|model " "$L/test_cuda_parity.log" | grep -v "^\[ RUN" |
    tail -120 >> "$S"
  grep -E "^\[  (FAILED|PASSED) " "$L/test_cuda_parity.log"
fi
b=$BD/tools/bench/scalegpt-bench-train
bench() {  # name, args...
  local name=$1; shift
  (($(left) > 40)) || { echo "== $name skipped (time)" | tee -a "$S"; return; }
  timeout 60 $b --device cuda --model d12 --vocab 50257 --seq-len 1024 --warmup 3 --steps 10 "$@" > "$L/bench_$name.log" 2>&1
  echo "== $name: $*" | tee -a "$S"
  grep -E "median|total|rror|activations|parameters|gradients|optimizer|other" "$L/bench_$name.log" | tee -a "$S"
}
membench() {  # run: --recompute none and gelu, alternating, at B=16 and B=32
  for B in 16 32; do
    bench B${B}_bf16_recompute-none_run$1 --batch $B --dtype bf16 --recompute none
    bench B${B}_bf16_recompute-gelu_run$1 --batch $B --dtype bf16 --recompute gelu
  done
}
if has memory; then
  membench 1
else
  bench B16_bf16_run1 --batch 16 --dtype bf16 --attention fused
  bench B32_bf16_run1 --batch 32 --dtype bf16 --attention fused
fi
tr() {  # model dtype: the same seed, batches and steps in both dtypes (f32 = the default TF32 path)
  local model=$1 dtype=$2
  local tag=${dtype}_seed$SEED
  local args=(--model mini --batch 32 --seq-len 256 --steps "$STEPS" --lr 1e-3 --eval-every 50 --eval-batches 16)
  [[ $model == d12 ]] && args=(--model d12 --batch 8 --seq-len 1024 --steps "$D12_STEPS" --lr 6e-4
    --eval-every $((D12_STEPS / 12 > 0 ? D12_STEPS / 12 : 1)) --eval-batches 13)
  (($(left) > 60)) || { echo "== train $model $tag skipped (time)" | tee -a "$S"; return; }
  timeout 200 $BD/tools/train/scalegpt-train --data "$DATA" "${args[@]}" --device cuda --dtype "$dtype" \
    --seed "$SEED" --sample-tokens 0 --out /tmp/runs_${model}_$tag > "$L/train_${model}_tinyshakespeare_$tag.log" 2>&1
  echo "== train $model $tag rc=$?: ${args[*]}" | tee -a "$S"
  grep -E "val loss" "$L/train_${model}_tinyshakespeare_$tag.log" | tail -16 | tee -a "$S"
  tail -4 "$L/train_${model}_tinyshakespeare_$tag.log" | tee -a "$S"
}
if ! has notrain; then
  if has d12; then
    tr d12 bf16
    tr d12 f32
  fi
  if ! has nomini; then
    tr mini bf16
    tr mini f32
  fi
fi
if has memory; then for r in $(seq 2 "$N"); do membench $r; done; fi
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
