#!/usr/bin/env bash
# One device call for the speed work of issue 17 (one H200): builds this tree and, optionally, a
# baseline tree (BASE=dir, e.g. the device repo's root) side by side, runs this tree's CUDA parity
# tests, then the training benchmark (d12, T=1024, --dtype bf16 --attention fused) for the
# baseline and for this tree with each variant in VARIANTS (env settings, ';'-separated, "-" for
# none), interleaved run after run so that drift hits every variant alike, and a --profile run
# of each. Logs under $OUT; the last lines are a table of medians.
# Usage: SGPT_LIMIT_S=480 BASE=.. VARIANTS="-;SGPT_X=1" tools/device/gpu_ab.sh [runs N] [b32]
#   runs N: benchmark runs per variant and batch size (default 3); b32: also B = 32.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT/logs"
L=$OUT/logs
S=$OUT/summary.txt
ARGS=" $* "
N=3
[[ "$ARGS" =~ " runs "([0-9]+)" " ]] && N=${BASH_REMATCH[1]}
T0=$SECONDS
left() { echo $((${SGPT_LIMIT_S:-570} - (SECONDS - T0))); }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$S"
build() {  # src dir, build dir, jobs
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON -DSCALEGPT_BUILD_TESTS=ON \
    -DSCALEGPT_CUDA_ARCHITECTURES=90 > "$2.cfg.log" 2>&1 &&
    cmake --build "$2" -j "$3" --target test_cuda_parity scalegpt-bench-train bench_cuda_ops
}
NEW=/tmp/sgpt-new
BASEB=/tmp/sgpt-base
if [[ -n "${BASE:-}" ]]; then
  build "$BASE" "$BASEB" 8 > "$L/build_base.log" 2>&1 &
  pb=$!
fi
build . "$NEW" 8 > "$L/build_new.log" 2>&1 || { tail -40 "$L/build_new.log"; exit 1; }
[[ -n "${BASE:-}" ]] && { wait $pb || { tail -20 "$L/build_base.log"; BASE=; }; }
echo "builds done at $((SECONDS - T0)) s" | tee -a "$S"
timeout 120 $NEW/tests/cuda/test_cuda_parity > "$L/test_cuda_parity.log" 2>&1
echo "test_cuda_parity rc=$? at $((SECONDS - T0)) s" | tee -a "$S"
grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is" "$L/test_cuda_parity.log" | tail -30 | tee -a "$S"
grep -E "segments|attention_fused_backward|WholeModelBF16|model" "$L/test_cuda_parity.log" | grep -v "^\[ RUN" >> "$S"
IFS=';' read -ra VARS <<< "${VARIANTS:--}"
for v in "${VARS[@]:1}"; do  # the kernels' parity under the other variants too (attention and AdamW tests)
  env $v timeout 60 $NEW/tests/cuda/test_cuda_parity --gtest_filter='*Attention*:*AdamW*:*WholeModel*' \
    > "$L/test_cuda_parity_variant.log" 2>&1
  echo "parity under $v: rc=$? $(grep -cE '^\[       OK' "$L/test_cuda_parity_variant.log") OK" | tee -a "$S"
  grep -E "bf16 attention_fused_backward d" "$L/test_cuda_parity_variant.log" | sort -k8 -g | tail -1 >> "$S"
done
bench() {  # tag, binary dir, env, batch, run
  (($(left) > 30)) || { echo "== $1 B$4 run$5 skipped (time)" >> "$S"; return; }
  local envs=(); [[ "$3" != "-" ]] && envs=($3)
  env "${envs[@]}" timeout 60 "$2/tools/bench/scalegpt-bench-train" --device cuda --model d12 --vocab 50257 \
    --seq-len 1024 --warmup 3 --steps 10 --batch "$4" --dtype bf16 --attention fused > "$L/bench_$1_B$4_run$5.log" 2>&1
  local med; med=$(grep -E "^median" "$L/bench_$1_B$4_run$5.log" | sed 's/median of [0-9]* steps: //')
  echo "$1 B$4 run$5: ${med:-FAILED}" | tee -a "$S"
}
tags=(); dirs=(); envs=()
[[ -n "${BASE:-}" ]] && { tags+=(base); dirs+=("$BASEB"); envs+=(-); }
i=0
for v in "${VARS[@]}"; do tags+=("new$i"); dirs+=("$NEW"); envs+=("$v"); echo "new$i = $v" | tee -a "$S"; i=$((i + 1)); done
batches="16"; [[ "$ARGS" == *" b32 "* ]] && batches="16 32"
for B in $batches; do  
  for r in $(seq 1 "$N"); do
    for k in "${!tags[@]}"; do
      bench "${tags[$k]}" "${dirs[$k]}" "${envs[$k]}" "$B" "$r"
    done
  done
done
for k in "${!tags[@]}"; do
  (($(left) > 40)) || break
  [[ "${tags[$k]}" == new0 ]] || continue
  e=(); [[ "${envs[$k]}" != "-" ]] && e=(${envs[$k]})
  env "${e[@]}" timeout 60 "${dirs[$k]}/tools/bench/scalegpt-bench-train" --device cuda --model d12 --vocab 50257 \
    --seq-len 1024 --batch 16 --warmup 1 --steps 3 --dtype bf16 --profile > "$L/profile_${tags[$k]}_B16.log" 2>&1
  echo "== profile ${tags[$k]}" >> "$S"
  sed -n '/where the time goes/,$p' "$L/profile_${tags[$k]}_B16.log" | head -24 >> "$S"
done
echo "done at $((SECONDS - T0)) s" | tee -a "$S"
grep -E " run[0-9]+: " "$S" | sort
tar -czf "$OUT/logs.tar.gz" -C "$L" . && rm -rf "$L"
