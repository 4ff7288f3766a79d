#!/usr/bin/env bash
# Data-parallel training on every GPU of the machine against one GPU: GPT-2 124M (d12) on the
# synthetic corpus, B=16 x T=1024 per GPU. Logs go to $OUT (or ./out).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
ngpu=$(nvidia-smi -L | wc -l)
gen=(-G Ninja); command -v ninja >/dev/null || gen=(-G "Unix Makefiles")
{
  cmake -S . -B build/gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSCALEGPT_CUDA=ON
  cmake --build build/gpu -j "$(nproc)" --target scalegpt-train
} > "$OUT/build_dp.log" 2>&1 || { tail -40 "$OUT/build_dp.log"; exit 1; }
args=(--device cuda --model d12 --batch 16 --seq-len 1024 --steps 30 --warmup 5 --eval-every 10 --eval-batches 2
      --sample-tokens 0 -q --log-every 10)
build/gpu/tools/train/scalegpt-train "${args[@]}" -o /tmp/dp1 > "$OUT/dp_1gpu.log" 2>&1
echo "1 GPU:"; grep -E "val loss|done" "$OUT/dp_1gpu.log" | tail -3
mpirun -np "$ngpu" --bind-to none build/gpu/tools/train/scalegpt-train "${args[@]}" -o /tmp/dpn > "$OUT/dp_${ngpu}gpu.log" 2>&1
echo "$ngpu GPUs:"; grep -E "ranks|val loss|done" "$OUT/dp_${ngpu}gpu.log" | tail -4
