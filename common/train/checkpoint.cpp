#include "train/checkpoint.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "core/safetensors.hpp"

namespace sgpt {

using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "scalegpt-checkpoint";
// Version 2 carries checksums (core/safetensors.hpp) and must verify; version 1 files, written
// before checksums existed, still load, with a warning that they could not be verified.
constexpr const char* kVersion = "2";
constexpr const char* kVersionUnchecked = "1";

// Hugging Face's GPT-2 uses Conv1D for these, storing the weight as [in, out].
bool is_conv1d(const std::string& name) {
  auto ends = [&](const char* s) { return name.size() >= std::strlen(s) && name.ends_with(s); };
  return ends("attn.c_attn.weight") || ends("attn.c_proj.weight") || ends("mlp.c_fc.weight") ||
         ends("mlp.c_proj.weight");
}

// A CPU copy of a 2-D tensor, transposed.
Tensor transposed(const Tensor& t) {
  Tensor src = t.device() == Device::CPU ? t : t.to(Device::CPU);
  const int64_t R = src.size(0), C = src.size(1);
  Tensor out = Tensor::empty({C, R}, src.dtype(), Device::CPU);
  auto copy = [&](auto* o, const auto* s) {
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) o[c * R + r] = s[r * C + c];
  };
  if (src.dtype() == DType::F32)
    copy(out.data<float>(), src.data<float>());
  else
    copy(out.data<double>(), src.data<double>());
  return out;
}

// Writes `src` (HF layout, CPU) into the parameter view `dst` (ScaleGPT layout, any device),
// padding vocabulary rows with zeros when src has fewer rows. Checks shapes against `what`.
void load_param(Tensor dst, const Tensor& src_in, const ParamInfo& info, const std::string& file) {
  Tensor src = src_in.dtype() == dst.dtype() ? src_in : src_in.cast(dst.dtype());
  if (is_conv1d(info.name)) {
    SGPT_CHECK(src.dim() == 2 && src.size(0) == info.shape[1] && src.size(1) == info.shape[0], file, ": tensor '",
               info.name, "' has shape ", shape_str(src.shape()), ", expected [", info.shape[1], ", ", info.shape[0],
               "] (Conv1D layout)");
    dst.copy_from(transposed(src));
    return;
  }
  if (src.shape() == info.shape) {
    dst.copy_from(src);
    return;
  }
  // Vocabulary rows: a file may hold only the V real rows of a padded [Vp, C] matrix.
  SGPT_CHECK(src.dim() == 2 && info.shape.size() == 2 && src.size(1) == info.shape[1] && src.size(0) <= info.shape[0] &&
                 src.size(0) >= info.init_rows,
             file, ": tensor '", info.name, "' has shape ", shape_str(src.shape()), ", expected ",
             shape_str(info.shape));
  dst.zero_();
  dst.slice(0, src.size(0)).copy_from(src);
}

std::string meta(const std::map<std::string, std::string>& m, const std::string& key, const std::string& file) {
  auto it = m.find(key);
  SGPT_CHECK(it != m.end(), file, ": checkpoint metadata has no '", key, "'");
  return it->second;
}

}  // namespace

std::string config_to_json(const GPTConfig& c) {
  return json{{"name", c.name},
              {"max_seq_len", c.max_seq_len},
              {"vocab_size", c.vocab_size},
              {"padded_vocab_size", c.padded_vocab_size},
              {"n_layer", c.n_layer},
              {"n_head", c.n_head},
              {"n_embd", c.n_embd},
              {"tied_embeddings", c.tied_embeddings}}
      .dump();
}

GPTConfig config_from_json(const std::string& text) {
  json j = json::parse(text);
  GPTConfig c;
  c.name = j.at("name");
  c.max_seq_len = j.at("max_seq_len");
  c.vocab_size = j.at("vocab_size");
  c.padded_vocab_size = j.at("padded_vocab_size");
  c.n_layer = j.at("n_layer");
  c.n_head = j.at("n_head");
  c.n_embd = j.at("n_embd");
  c.tied_embeddings = j.at("tied_embeddings");
  c.validate();
  return c;
}

std::vector<std::pair<std::string, Tensor>> hf_state_dict(const GPT& model, bool trim_vocab) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const ParamInfo& p : model.layout().params()) {
    Tensor v = model.param(p.name);
    if (is_conv1d(p.name)) {
      out.emplace_back(p.name, transposed(v));
    } else {
      if (trim_vocab && p.init_rows < p.shape[0]) v = v.slice(0, p.init_rows);
      out.emplace_back(p.name, v.to(Device::CPU));
    }
  }
  return out;
}

void save_checkpoint(const std::string& path, const GPT& model, const AdamW& opt, const TrainState& s) {
  auto tensors = hf_state_dict(model, /*trim_vocab=*/false);
  tensors.emplace_back("optimizer.exp_avg", opt.m());
  tensors.emplace_back("optimizer.exp_avg_sq", opt.v());
  std::map<std::string, std::string> m = s.extra;
  m["format"] = kFormat;
  m["version"] = kVersion;
  m["config"] = config_to_json(model.config());
  m["dtype"] = dtype_name(model.dtype());
  m["step"] = std::to_string(s.step);
  m["adam_t"] = std::to_string(opt.t());
  m["data_position"] = std::to_string(s.data_position);
  m["data_epoch"] = std::to_string(s.data_epoch);
  m["seed"] = std::to_string(s.seed);
  save_safetensors(path, tensors, m, Checksums::On);
}

namespace {

// The format and version checks shared by every reader of a checkpoint (the header's metadata
// checksum has already been verified by read_safetensors_header when the file carries one).
void check_format(const std::string& path, const SafeTensorsHeader& h) {
  SGPT_CHECK(h.metadata.count("format") && h.metadata.at("format") == kFormat, path,
             ": not a ScaleGPT checkpoint (metadata 'format' is missing or not '", kFormat, "')");
  const std::string version = meta(h.metadata, "version", path);
  SGPT_CHECK(version == kVersion || version == kVersionUnchecked, path, ": checkpoint version ", version,
             " is not supported (expected ", kVersion, " or the older ", kVersionUnchecked, ")");
  SGPT_CHECK(version == kVersionUnchecked || h.checksummed, path, ": a version ", kVersion,
             " checkpoint must carry checksums but this one has none (the metadata was edited)");
}

}  // namespace

GPTConfig checkpoint_config(const std::string& path) {
  SafeTensorsHeader h = read_safetensors_header(path);
  check_format(path, h);
  try {
    return config_from_json(meta(h.metadata, "config", path));
  } catch (const json::exception& e) {
    SGPT_FAIL(path, ": the model configuration in the checkpoint is damaged: ", e.what());
  }
}

SafeTensorsHeader verify_checkpoint(const std::string& path) {
  SafeTensorsHeader h = verify_safetensors(path);  // structure, metadata and every tensor's checksum
  check_format(path, h);
  (void)checkpoint_config(path);
  return h;
}

TrainState load_checkpoint(const std::string& path, GPT& model, AdamW& opt) {
  // The header first (cheap): a wrong format or an edited metadata value is reported before the
  // tensors are read; then load_safetensors verifies every tensor's checksum.
  const GPTConfig saved = checkpoint_config(path);
  SafeTensors st = load_safetensors(path);
  if (st.metadata.at("version") == kVersionUnchecked)
    log_warn(path, ": a version ", kVersionUnchecked, " checkpoint (written before checkpoints carried checksums); ",
             "loaded without verifying its contents");
  SGPT_CHECK(config_to_json(saved) == config_to_json(model.config()), path, ": the checkpoint holds model ",
             config_to_json(saved), " but this run builds ", config_to_json(model.config()));
  SGPT_CHECK(meta(st.metadata, "dtype", path) == dtype_name(model.dtype()), path, ": the checkpoint is ",
             st.metadata.at("dtype"), " but the model is ", dtype_name(model.dtype()));
  // Check everything before modifying anything, so a bad file loses nothing.
  for (const ParamInfo& p : model.layout().params()) (void)st.at(p.name);
  const Tensor& m = st.at("optimizer.exp_avg");
  const Tensor& v = st.at("optimizer.exp_avg_sq");
  SGPT_CHECK(m.numel() == opt.m().numel() && v.numel() == opt.v().numel(), path,
             ": optimizer state has the wrong size");
  TrainState s;
  try {
    s.step = std::stoll(meta(st.metadata, "step", path));
    s.data_position = std::stoll(meta(st.metadata, "data_position", path));
    s.data_epoch = std::stoll(meta(st.metadata, "data_epoch", path));
    s.seed = std::stoull(meta(st.metadata, "seed", path));
    opt.set_t(std::stoll(meta(st.metadata, "adam_t", path)));
  } catch (const std::logic_error& e) {
    SGPT_FAIL(path, ": a number in the checkpoint metadata is damaged (", e.what(), ")");
  }
  for (const ParamInfo& p : model.layout().params()) load_param(model.param(p.name), st.at(p.name), p, path);
  opt.m().copy_from(m);
  opt.v().copy_from(v);
  s.extra = st.metadata;
  return s;
}

void export_hf(const std::string& dir, const GPT& model) {
  std::filesystem::create_directories(dir);
  const GPTConfig& c = model.config();
  save_safetensors(dir + "/model.safetensors", hf_state_dict(model, /*trim_vocab=*/true), {{"format", "pt"}},
                   Checksums::On);
  json cfg = {{"architectures", {"GPT2LMHeadModel"}},
              {"model_type", "gpt2"},
              {"vocab_size", c.vocab_size},
              {"n_positions", c.max_seq_len},
              {"n_ctx", c.max_seq_len},
              {"n_embd", c.n_embd},
              {"n_layer", c.n_layer},
              {"n_head", c.n_head},
              {"n_inner", nullptr},
              {"activation_function", "gelu_new"},
              {"layer_norm_epsilon", 1e-5},
              {"tie_word_embeddings", c.tied_embeddings},
              {"resid_pdrop", 0.0},
              {"embd_pdrop", 0.0},
              {"attn_pdrop", 0.0},
              {"initializer_range", 0.02},
              {"bos_token_id", c.vocab_size - 1},
              {"eos_token_id", c.vocab_size - 1},
              {"torch_dtype", "float32"}};
  std::string text = cfg.dump(2) + "\n";
  write_file_atomic(dir + "/config.json", [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

std::unique_ptr<GPT> import_hf(const std::string& dir, Device device, DType dtype) {
  const std::string cfg_path = dir + "/config.json", w_path = dir + "/model.safetensors";
  std::ifstream in(cfg_path);
  SGPT_CHECK(in.good(), cfg_path, ": cannot open the Hugging Face config");
  GPTConfig c;
  try {
    json j = json::parse(in);
    c.name = "hf:" + std::filesystem::path(dir).filename().string();
    c.set_vocab(j.at("vocab_size"));
    c.max_seq_len = j.at("n_positions");
    c.n_embd = j.at("n_embd");
    c.n_layer = j.at("n_layer");
    c.n_head = j.at("n_head");
    c.tied_embeddings = j.value("tie_word_embeddings", true);
  } catch (const json::exception& e) {
    SGPT_FAIL(cfg_path, ": not a GPT-2 config: ", e.what());
  }
  SafeTensors st = load_safetensors(w_path);
  auto model = std::make_unique<GPT>(c, 0, device, dtype);
  // Every tensor of the file must be used: a parameter of this configuration, or one of the
  // buffers that transformers saves and ScaleGPT recomputes (the causal masks). Anything else
  // means the weights and config.json disagree (say, a config with fewer layers than the file).
  std::map<std::string, bool> used;
  for (const auto& [name, t] : st.tensors) used[name] = false;
  for (const ParamInfo& p : model->layout().params()) {
    std::string name = p.name;
    if (!st.contains(name) && name.starts_with("transformer.")) name = name.substr(std::strlen("transformer."));
    SGPT_CHECK(st.contains(name), w_path, ": no tensor '", p.name, "' (nor '", name, "') for ", cfg_path, "'s ",
               c.n_layer, " layers");
    load_param(model->param(p.name), st.at(name), p, w_path);
    used[name] = true;
  }
  for (const auto& [name, t] : st.tensors) {
    if (used[name]) continue;
    std::string bare = name.starts_with("transformer.") ? name.substr(std::strlen("transformer.")) : name;
    // "h.<l>.attn.bias" / "h.<l>.attn.masked_bias": the causal mask of a layer that exists.
    bool mask = false;
    for (int l = 0; l < c.n_layer && !mask; ++l) {
      const std::string p = "h." + std::to_string(l) + ".attn.";
      mask = bare == p + "bias" || bare == p + "masked_bias";
    }
    // A tied model may also store its head, which must then equal the embedding.
    if (!mask && bare == "lm_head.weight" && c.tied_embeddings) {
      const std::string wte = st.contains("transformer.wte.weight") ? "transformer.wte.weight" : "wte.weight";
      const Tensor& head = st.at(name);
      const Tensor& emb = st.at(wte);
      SGPT_CHECK(head.shape() == emb.shape() && std::memcmp(head.raw(), emb.raw(), head.nbytes()) == 0, w_path,
                 ": tensor 'lm_head.weight' differs from the embedding, but ", cfg_path,
                 " says the embeddings are tied (tie_word_embeddings)");
      continue;
    }
    SGPT_CHECK(mask, w_path, ": tensor '", name, "' has no place in the model that ", cfg_path, " describes (",
               c.n_layer, " layers, n_embd ", c.n_embd, ", tie_word_embeddings ",
               c.tied_embeddings ? "true" : "false", "): the weights and the config disagree");
  }
  return model;
}

}  // namespace sgpt
