// Checkpoints: exact round trip, bit-for-bit resume, clear errors for damaged files, and the
// Hugging Face export/import path.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/safetensors.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "train/checkpoint.hpp"

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

// ---- checksums and strict imports ----------------------------------------------------------------

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Expects load_checkpoint to throw an Error containing every part, and the model to stay as it was.
void expect_load_error(const std::string& path, std::initializer_list<std::string> parts) {
  TrainingRun b(7);
  const std::vector<float> before = host(b.model.params());
  try {
    load_checkpoint(path, b.model, b.opt);
    ADD_FAILURE() << "no error loading " << path;
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "missing '" << p << "' in: " << m;
  }
  EXPECT_EQ(host(b.model.params()), before) << "a failed load modified the model";
}

}  // namespace

TEST(CheckpointChecksums, AFlippedWeightByteIsFoundAndNamed) {
  fs::path dir = temp_dir("flip");
  TrainingRun a(5);
  a.step(0);
  const std::string path = (dir / "c.safetensors").string();
  save_checkpoint(path, a.model, a.opt, a.state(1));
  EXPECT_TRUE(verify_checkpoint(path).checksummed);
  SafeTensorsHeader h = read_safetensors_header(path);
  for (const auto& t : h.tensors) {
    if (t.name != "transformer.h.1.mlp.c_fc.weight") continue;
    std::string bytes = slurp(path);
    bytes.at(8 + h.header_bytes + t.begin + 101) ^= 0x04;  // one bit of one weight
    spit(path, bytes);
  }
  expect_load_error(path, {path, "tensor 'transformer.h.1.mlp.c_fc.weight' fails its checksum"});
  try {
    verify_checkpoint(path);
    ADD_FAILURE() << "verify_checkpoint passed a damaged file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.h.1.mlp.c_fc.weight"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(CheckpointChecksums, AnEditedStepOrSeedIsFound) {
  fs::path dir = temp_dir("edit");
  TrainingRun a(5);
  a.step(0);
  const std::string path = (dir / "c.safetensors").string();
  save_checkpoint(path, a.model, a.opt, a.state(1));
  const std::string good = slurp(path);
  for (auto [from, to] : {std::pair<std::string, std::string>{R"("step":"1")", R"("step":"7")"},
                          {R"("seed":"5")", R"("seed":"6")"}}) {
    std::string bytes = good;
    const auto at = bytes.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    bytes.replace(at, from.size(), to);
    spit(path, bytes);
    expect_load_error(path, {path, "the metadata fails its checksum"});
    EXPECT_THROW(checkpoint_config(path), Error);  // even the cheap header read sees it
  }
  fs::remove_all(dir);
}

TEST(CheckpointChecksums, OldUncheckedCheckpointsLoadWithAWarning) {
  fs::path dir = temp_dir("v1");
  TrainingRun a(5);
  a.step(0);
  const std::string path = (dir / "c.safetensors").string();
  save_checkpoint(path, a.model, a.opt, a.state(1));
  // What the trainer wrote before checksums existed: version 1, no checksum entries.
  SafeTensors st = load_safetensors(path);
  st.metadata.erase("checksums");
  st.metadata.erase("metadata_checksum");
  st.metadata["version"] = "1";
  const std::string old = (dir / "old.safetensors").string();
  save_safetensors(old, st.tensors, st.metadata);
  TrainingRun b(7);
  ::testing::internal::CaptureStderr();
  TrainState s = load_checkpoint(old, b.model, b.opt);
  const std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(s.step, 1);
  EXPECT_EQ(host(a.model.params()), host(b.model.params()));
  EXPECT_NE(warning.find("without verifying"), std::string::npos) << warning;
  EXPECT_FALSE(verify_checkpoint(old).checksummed);
  // A current-version file whose checksums were removed is damage, not an old file.
  st.metadata["version"] = "2";
  save_safetensors(old, st.tensors, st.metadata);
  expect_load_error(old, {"must carry checksums"});
  fs::remove_all(dir);
}

TEST(CheckpointImport, WeightsThatDoNotFitTheConfigAreRejectedByName) {
  fs::path dir = temp_dir("hfstrict");
  GPT a(gpt_config("nano"), 3);  // 2 layers, tied
  export_hf(dir.string(), a);
  const std::string cfg_path = (dir / "config.json").string(), w_path = (dir / "model.safetensors").string();
  const std::string cfg_text = slurp(cfg_path);
  const SafeTensors good = load_safetensors(w_path);
  auto expect_import_error = [&](std::initializer_list<std::string> parts) {
    try {
      import_hf(dir.string());
      ADD_FAILURE() << "import_hf accepted weights that do not fit";
    } catch (const Error& e) {
      for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  auto with = [&](std::vector<std::pair<std::string, Tensor>> extra) {
    auto tensors = good.tensors;
    for (auto& e : extra) tensors.push_back(std::move(e));
    save_safetensors(w_path, tensors, {{"format", "pt"}});
  };
  // A config with fewer layers than the weights.
  std::string one_layer = cfg_text;
  one_layer.replace(one_layer.find("\"n_layer\": 2"), 12, "\"n_layer\": 1");
  spit(cfg_path, one_layer);
  expect_import_error({w_path, "tensor 'transformer.h.1.", "has no place", "1 layers"});
  spit(cfg_path, cfg_text);
  // An unknown tensor.
  with({{"transformer.h.0.mlp.c_gate.weight", Tensor::zeros({4})}});
  expect_import_error({"tensor 'transformer.h.0.mlp.c_gate.weight' has no place"});
  // A tensor of the wrong shape.
  auto reshaped = good.tensors;
  for (auto& [n, t] : reshaped)
    if (n == "transformer.wpe.weight") t = Tensor::zeros({t.size(0) - 1, t.size(1)});
  save_safetensors(w_path, reshaped, {{"format", "pt"}});
  expect_import_error({"tensor 'transformer.wpe.weight' has shape"});
  // transformers' causal-mask buffers of existing layers are fine, and so is a tied head equal to
  // the embedding; a mask of a layer that does not exist, or a different head, is not.
  with({{"h.1.attn.bias", Tensor::zeros({1, 1, 4, 4})}, {"lm_head.weight", good.at("transformer.wte.weight")}});
  EXPECT_EQ(host(import_hf(dir.string())->params()), host(a.params()));
  with({{"h.2.attn.bias", Tensor::zeros({1, 1, 4, 4})}});
  expect_import_error({"tensor 'h.2.attn.bias' has no place"});
  with({{"lm_head.weight", Tensor::zeros(good.at("transformer.wte.weight").shape())}});
  expect_import_error({"'lm_head.weight' differs from the embedding"});
  fs::remove_all(dir);
}
