#pragma once
/// @file generate.hpp
/// @brief Sampling text from a model, and a measurement of the machine's matmul speed (for MFU).

#include <cstdint>
#include <vector>

#include "model/gpt.hpp"

namespace sgpt {

/// Extends `prompt` by `n_new` tokens sampled from the model at `temperature` (0 = greedy).
/// The context is the last max_seq_len tokens; draws come from the counter-based RNG keyed by
/// `seed`, so a sample is reproducible. Frees nothing: the model's caches are reused.
std::vector<int32_t> generate(GPT& model, std::vector<int32_t> prompt, int n_new, double temperature, uint64_t seed);

/// FLOP/s of one n x n x n matmul_forward on `device` with operands and output in `dtype` (the
/// best of `reps` runs): the machine's practical matmul peak, against which the trainer reports MFU.
double measure_matmul_flops(Device device, int n = 1024, int reps = 5, DType dtype = DType::F32);

/// The machine's practical matmul peak for MFU in `dtype` (f32 unless told: on a GPU, pass the
/// storage type of a bf16 run, whose products run at the bf16 rate, about twice TF32's), measured robustly: the best FLOP/s of many
/// short n x n x n matmul_forward runs (n = 512 and 1024 on the CPU, 4096 on a GPU), repeated for
/// about `seconds` of wall time. One long measurement taken while other processes happen to run
/// comes out low (and an MFU above 100% follows); the best of many short ones catches the moments
/// the cores are free, as the training steps do.
double measure_peak_flops(Device device, double seconds = 1.0, DType dtype = DType::F32);

}  // namespace sgpt
