#include "model/config.hpp"

#include "core/check.hpp"

namespace sgpt {

namespace {
struct Preset {
  const char* name;
  int L, NH, C, T, V;
  const char* what;
};
// GPT-2 sizes follow Radford et al. (2019), Table 2; V = 50257 padded to 50304 as llm.c does.
const Preset kPresets[] = {
    {"tiny", 1, 2, 4, 4, 8, "a few hundred parameters: whole-model gradient checks"},
    {"nano", 2, 4, 32, 32, 256, "byte-level, ~30k parameters: fast tests"},
    {"micro", 4, 4, 128, 128, 256, "byte-level, ~0.85M parameters: the default CPU model"},
    {"mini", 6, 6, 384, 256, 256, "byte-level, ~10.7M parameters: Tiny Shakespeare on a laptop"},
    {"d12", 12, 12, 768, 1024, 50257, "GPT-2 small (124M)"},
    {"d24", 24, 16, 1024, 1024, 50257, "GPT-2 medium (350M)"},
    {"d36", 36, 20, 1280, 1024, 50257, "GPT-2 large (774M)"},
    {"d48", 48, 25, 1600, 1024, 50257, "GPT-2 XL (1.5B)"},
};
}  // namespace

void GPTConfig::set_vocab(int vocab) {
  vocab_size = vocab;
  padded_vocab_size = vocab >= 1024 ? (vocab + 63) / 64 * 64 : vocab;
}

void GPTConfig::validate() const {
  SGPT_CHECK(n_layer >= 1, "model '", name, "': n_layer must be at least 1, got ", n_layer);
  SGPT_CHECK(n_embd >= 1 && n_head >= 1, "model '", name, "': n_embd and n_head must be positive");
  SGPT_CHECK(n_embd % n_head == 0, "model '", name, "': ", n_head, " heads do not divide the width n_embd = ", n_embd);
  SGPT_CHECK(max_seq_len >= 1, "model '", name, "': max_seq_len must be at least 1, got ", max_seq_len);
  SGPT_CHECK(vocab_size >= 2, "model '", name, "': vocab_size must be at least 2, got ", vocab_size);
  SGPT_CHECK(padded_vocab_size >= vocab_size, "model '", name, "': padded_vocab_size ", padded_vocab_size,
             " is smaller than vocab_size ", vocab_size);
}

long long GPTConfig::num_parameters() const {
  const long long C = n_embd, L = n_layer;
  long long n = static_cast<long long>(padded_vocab_size) * C + static_cast<long long>(max_seq_len) * C;
  n += L * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + 4 * C * C + 4 * C + 4 * C * C + C);
  n += 2 * C;
  if (!tied_embeddings) n += static_cast<long long>(padded_vocab_size) * C;
  return n;
}

double training_flops_per_token(const GPTConfig& cfg, int64_t seq_len) {
  return 6.0 * double(cfg.num_parameters()) + 12.0 * cfg.n_layer * cfg.n_embd * double(seq_len);
}

GPTConfig gpt_config(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name != p.name) continue;
    GPTConfig c;
    c.name = p.name;
    c.n_layer = p.L;
    c.n_head = p.NH;
    c.n_embd = p.C;
    c.max_seq_len = p.T;
    c.set_vocab(p.V);
    return c;
  }
  std::string names;
  for (const Preset& p : kPresets) names += str(names.empty() ? "" : ", ", p.name);
  SGPT_FAIL("unknown model '", name, "'; known models: ", names);
}

std::vector<std::string> gpt_config_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

}  // namespace sgpt
