// Checkpoints: exact round trip, bit-for-bit resume, clear errors for damaged files, and the
// Hugging Face export/import path.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "model/checkpoint.hpp"

using namespace sgpt;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("sgpt_ckpt_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct TrainingRun {
  GPT model;
  AdamW opt;
  TokenFile data;
  DataLoader loader;
  Tensor x, y;
  explicit TrainingRun(uint64_t seed)
      : model(gpt_config("nano"), seed),
        opt(model.layout(), AdamWConfig{}, DType::F32, Device::CPU),
        data(ByteTokenizer().encode(synthetic_text(5, 20000)), 256),  // the same data in every run
        loader(data, 4, 16) {}
  // One full training step, as the trainer does it.
  void step(int64_t s) {
    loader.next(x, y);
    model.zero_grad();
    model.forward(x, y);
    model.backward();
    clip_grad_norm(model.grads(), 1.0);
    opt.step(model.params(), model.grads(), lr_at(s, 2, 10, 1e-3, 1e-4));
  }
  TrainState state(int64_t s) const {
    TrainState t;
    t.step = s;
    t.data_position = loader.state().position;
    t.data_epoch = loader.state().epoch;
    t.seed = 5;
    return t;
  }
};

std::vector<float> host(const Tensor& t) {
  std::vector<float> v(t.numel());
  Tensor h = t.to(Device::CPU);
  std::copy(h.data<float>(), h.data<float>() + t.numel(), v.begin());
  return v;
}

}  // namespace

TEST(Checkpoint, ResumeContinuesBitForBit) {
  fs::path dir = temp_dir("resume");
  TrainingRun a(5);
  for (int s = 0; s < 6; ++s) a.step(s);
  // Save half-way, then keep going.
  save_checkpoint((dir / "mid.safetensors").string(), a.model, a.opt, a.state(3 + 3));
  for (int s = 6; s < 10; ++s) a.step(s);

  TrainingRun b(999);  // another seed: everything must come from the checkpoint
  TrainState st = load_checkpoint((dir / "mid.safetensors").string(), b.model, b.opt);
  EXPECT_EQ(st.step, 6);
  b.loader.set_state({st.data_position, st.data_epoch});
  for (int64_t s = st.step; s < 10; ++s) b.step(s);
  EXPECT_EQ(host(a.model.params()), host(b.model.params()));
  EXPECT_EQ(host(a.opt.m()), host(b.opt.m()));
  EXPECT_EQ(host(a.opt.v()), host(b.opt.v()));
  EXPECT_EQ(a.opt.t(), b.opt.t());
  fs::remove_all(dir);
}

TEST(Checkpoint, TensorsUseHuggingFaceNamesAndLayouts) {
  fs::path dir = temp_dir("names");
  TrainingRun a(5);
  a.step(0);
  save_checkpoint((dir / "c.safetensors").string(), a.model, a.opt, a.state(1));
  SafeTensorsHeader h = read_safetensors_header((dir / "c.safetensors").string());
  auto find = [&](const std::string& n) -> const SafeTensorInfo& {
    for (auto& t : h.tensors)
      if (t.name == n) return t;
    throw std::runtime_error("missing " + n);
  };
  const int64_t C = 32;
  EXPECT_EQ(find("transformer.h.0.attn.c_attn.weight").shape, (Shape{C, 3 * C}));  // Conv1D: [in, out]
  EXPECT_EQ(find("transformer.h.1.mlp.c_proj.weight").shape, (Shape{4 * C, C}));
  EXPECT_EQ(find("transformer.wte.weight").shape, (Shape{256, C}));
  EXPECT_EQ(h.metadata.at("format"), "scalegpt-checkpoint");
  // The transposition is real: element (i, j) of HF's c_fc weight is our (j, i).
  SafeTensors st = load_safetensors((dir / "c.safetensors").string());
  const Tensor& hf = st.at("transformer.h.0.mlp.c_fc.weight");
  Tensor ours = a.model.param("transformer.h.0.mlp.c_fc.weight");
  EXPECT_EQ(hf.data<float>()[5 * 4 * C + 17], ours.data<float>()[17 * C + 5]);
  fs::remove_all(dir);
}

TEST(Checkpoint, DamagedFilesGiveClearErrorsAndChangeNothing) {
  fs::path dir = temp_dir("damaged");
  TrainingRun a(5);
  a.step(0);
  const std::string path = (dir / "c.safetensors").string();
  save_checkpoint(path, a.model, a.opt, a.state(1));
  const auto size = fs::file_size(path);

  TrainingRun b(7);
  const std::vector<float> before = host(b.model.params());
  auto expect_error = [&](const std::string& file, const std::string& what) {
    try {
      load_checkpoint(file, b.model, b.opt);
      FAIL() << "no error for " << what;
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(file), std::string::npos) << m;
      EXPECT_NE(m.find(what), std::string::npos) << m;
    }
    EXPECT_EQ(host(b.model.params()), before) << "a failed load modified the model";
  };
  // Truncated.
  fs::copy_file(path, dir / "trunc.safetensors");
  fs::resize_file(dir / "trunc.safetensors", size - 100);
  expect_error((dir / "trunc.safetensors").string(), "");
  // Another model configuration.
  GPTConfig other = gpt_config("nano");
  other.n_layer = 3;
  GPT m3(other, 1);
  AdamW o3(m3.layout(), AdamWConfig{}, DType::F32, Device::CPU);
  save_checkpoint((dir / "other.safetensors").string(), m3, o3, TrainState{});
  expect_error((dir / "other.safetensors").string(), "the checkpoint holds model");
  // Not a checkpoint at all.
  save_safetensors((dir / "plain.safetensors").string(), {{"x", Tensor::zeros({2})}});
  expect_error((dir / "plain.safetensors").string(), "not a ScaleGPT checkpoint");
  // Missing.
  expect_error((dir / "missing.safetensors").string(), "missing.safetensors");
  fs::remove_all(dir);
}

TEST(Checkpoint, HuggingFaceExportImportRoundTrip) {
  fs::path dir = temp_dir("hf");
  GPTConfig cfg = gpt_config("nano");
  cfg.set_vocab(1500);  // padded to 1536: the export trims the padding, the import restores it
  ASSERT_EQ(cfg.padded_vocab_size, 1536);
  GPT a(cfg, 3);
  export_hf(dir.string(), a);
  SafeTensorsHeader h = read_safetensors_header((dir / "model.safetensors").string());
  for (auto& t : h.tensors) {
    if (t.name == "transformer.wte.weight") {
      EXPECT_EQ(t.shape, (Shape{1500, 32}));
    }
  }
  std::ifstream cfg_file(dir / "config.json");
  std::string text((std::istreambuf_iterator<char>(cfg_file)), {});
  EXPECT_NE(text.find("\"model_type\": \"gpt2\""), std::string::npos);
  EXPECT_NE(text.find("\"activation_function\": \"gelu_new\""), std::string::npos);
  auto b = import_hf(dir.string());
  EXPECT_EQ(b->config().padded_vocab_size, 1536);
  EXPECT_EQ(host(a.params()), host(b->params()));
  // Hugging Face's own files name the tensors without the "transformer." prefix.
  SafeTensors st = load_safetensors((dir / "model.safetensors").string());
  std::vector<std::pair<std::string, Tensor>> stripped;
  for (auto& [n, t] : st.tensors) stripped.emplace_back(n.substr(std::string("transformer.").size()), t);
  save_safetensors((dir / "model.safetensors").string(), stripped);
  auto c = import_hf(dir.string());
  EXPECT_EQ(host(a.params()), host(c->params()));
  fs::remove_all(dir);
}
