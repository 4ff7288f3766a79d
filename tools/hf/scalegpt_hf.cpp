// scalegpt-hf: the bridge to Hugging Face's GPT-2 format.
//
//   scalegpt-hf export --checkpoint runs/micro/checkpoint.safetensors --out hf/   # -> model.safetensors, config.json
//   scalegpt-hf logits --hf hf/ --tokens 72,101,108 --out logits.f32                # forward of an HF directory
//
// `logits` writes the logits of every position as raw little-endian float32, [T, V] (padding
// columns removed), so that another implementation can be compared with ScaleGPT on the same
// weights (tools/hf/compare_with_transformers.py does that with the transformers library).

#include <CLI/CLI.hpp>
#include <sstream>

#include "core/main.hpp"
#include "core/safetensors.hpp"
#include "train/checkpoint.hpp"

using namespace sgpt;

namespace {

std::vector<int32_t> parse_tokens(const std::string& list) {
  std::vector<int32_t> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      out.push_back(std::stoi(item));
    } catch (const std::exception&) {
      SGPT_FAIL("--tokens: '", item, "' is not a token id (expected a comma-separated list such as 1,2,3)");
    }
  }
  SGPT_CHECK(!out.empty(), "--tokens: the list is empty");
  return out;
}

int export_checkpoint(const std::string& ckpt, const std::string& out) {
  GPT model(checkpoint_config(ckpt), 0);
  AdamW opt(model.layout(), AdamWConfig{}, model.dtype(), model.device());
  load_checkpoint(ckpt, model, opt);
  export_hf(out, model);
  std::printf("wrote %s/model.safetensors and %s/config.json (%lld parameters, vocabulary %d)\n", out.c_str(),
              out.c_str(), model.config().num_parameters(), model.config().vocab_size);
  return 0;
}

int logits(const std::string& dir, const std::string& tokens, const std::string& out) {
  auto model = import_hf(dir);
  const GPTConfig& cfg = model->config();
  std::vector<int32_t> t = parse_tokens(tokens);
  for (int32_t id : t)
    SGPT_CHECK(id >= 0 && id < cfg.vocab_size, "--tokens: ", id, " is outside the vocabulary [0, ", cfg.vocab_size, ")");
  const int64_t T = static_cast<int64_t>(t.size());
  model->forward(Tensor::from(t, {1, T}));
  std::vector<double> all = model->logits().to_vector();
  std::vector<float> real;
  for (int64_t i = 0; i < T; ++i)
    for (int v = 0; v < cfg.vocab_size; ++v) real.push_back(static_cast<float>(all[i * cfg.padded_vocab_size + v]));
  // Checked and atomic, like every file ScaleGPT writes.
  write_file_atomic(out, [&](const ByteSink& sink) { sink(real.data(), real.size() * sizeof(float)); });
  std::printf("wrote %s: logits [%lld, %d] float32\n", out.c_str(), (long long)T, cfg.vocab_size);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scalegpt-hf: export to and run Hugging Face GPT-2 directories"};
  app.require_subcommand(1);
  std::string ckpt, out, dir, tokens;
  auto* ex = app.add_subcommand("export", "write a checkpoint's model as model.safetensors + config.json");
  ex->add_option("--checkpoint", ckpt, "a ScaleGPT checkpoint")->required();
  ex->add_option("--out", out, "the directory to write")->required();
  auto* lg = app.add_subcommand("logits", "import an HF directory and write the logits of a token sequence");
  lg->add_option("--hf", dir, "directory with model.safetensors and config.json")->required();
  lg->add_option("--tokens", tokens, "comma-separated token ids")->required();
  lg->add_option("--out", out, "file for the float32 logits [T, V]")->required();
  CLI11_PARSE(app, argc, argv);
  return run_guarded("scalegpt-hf", [&] { return *ex ? export_checkpoint(ckpt, out) : logits(dir, tokens, out); });
}
