#pragma once
/// @file config.hpp
/// @brief GPT model configurations, from a few hundred parameters up to GPT-2 1.5B.

#include <cstdint>
#include <string>
#include <vector>

namespace sgpt {

/// The shape of a GPT-2-style model (pre-LayerNorm, learned positions, GELU MLP of width 4C).
struct GPTConfig {
  std::string name = "custom";  ///< the preset it came from, for logs and checkpoints
  int max_seq_len = 1024;       ///< context length: the number of learned positions (wpe rows)
  int vocab_size = 50257;       ///< V: real tokens
  int padded_vocab_size = 50304;  ///< Vp >= V: rows of wte, padded for fast matmuls
  int n_layer = 12;             ///< L
  int n_head = 12;              ///< NH
  int n_embd = 768;             ///< C
  bool tied_embeddings = true;  ///< the output layer reuses wte (GPT-2) instead of its own lm_head

  /// Throws sgpt::Error naming the first problem (e.g. heads not dividing the width).
  void validate() const;
  /// Number of parameters, counted from the shapes (padded vocabulary rows included).
  long long num_parameters() const;
  /// Sets vocab_size and the padded size (a multiple of 64 once V >= 1024, else V itself).
  void set_vocab(int vocab);
};

/// Training FLOPs per token: 6N for the matmuls with the parameters (2 forward + 4 backward per
/// parameter) plus 12*L*C*T for attention's QK^T and AV, as in PaLM (Chowdhery et al. 2022, App. B)
/// and llm.c. Used for MFU.
double training_flops_per_token(const GPTConfig& cfg, int64_t seq_len);

/// A named preset: "tiny" (a few hundred parameters, for gradient checks), "nano", "micro",
/// "mini" (small CPU models), and the GPT-2 family "d12" (124M), "d24" (350M), "d36" (774M),
/// "d48" (1.5B). Throws sgpt::Error listing the names for an unknown one.
GPTConfig gpt_config(const std::string& name);
/// The preset names, in size order.
std::vector<std::string> gpt_config_names();

}  // namespace sgpt
