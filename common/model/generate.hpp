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

/// FLOP/s of one n x n x n matmul_forward on `device` (the best of `reps` runs): the machine's
/// practical matmul peak, against which the trainer reports MFU.
double measure_matmul_flops(Device device, int n = 1024, int reps = 5);

}  // namespace sgpt
