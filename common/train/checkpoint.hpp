#pragma once
/// @file checkpoint.hpp
/// @brief Checkpoints (safetensors) that resume a run bit for bit, and Hugging Face GPT-2
/// import/export.
///
/// Tensors carry Hugging Face's GPT-2 names and layouts ("transformer.h.0.attn.c_attn.weight",
/// Conv1D weights stored [in, out]), so the parameter part of a checkpoint reads like a
/// `GPT2LMHeadModel` state dict. A checkpoint adds the AdamW moments as two flat tensors in
/// ScaleGPT's buffer order, and the step, data position and seed in the metadata. Files are
/// written atomically: a failed save leaves the previous checkpoint intact.

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/safetensors.hpp"
#include "model/gpt.hpp"
#include "optim/optim.hpp"

namespace sgpt {

/// Where a training run stands, besides parameters and optimizer moments.
struct TrainState {
  int64_t step = 0;            ///< optimizer steps completed
  int64_t data_position = 0;   ///< the training loader's position (see DataLoader)
  int64_t data_epoch = 0;      ///< the training loader's epoch
  uint64_t seed = 0;           ///< the run's seed (initialisation, sampling)
  std::map<std::string, std::string> extra;  ///< free-form metadata (e.g. the command line)
};

/// The model's parameters as Hugging Face GPT-2 tensors (CPU copies, HF layouts). With
/// `trim_vocab`, wte/lm_head keep only the vocab_size real rows (for export).
std::vector<std::pair<std::string, Tensor>> hf_state_dict(const GPT& model, bool trim_vocab);

/// Saves parameters, AdamW state and the train state to `path` (atomic, with a checksum of every
/// tensor and of the metadata: see core/safetensors.hpp).
void save_checkpoint(const std::string& path, const GPT& model, const AdamW& opt, const TrainState& state);
/// The model configuration stored in a checkpoint (to build the model before loading it).
GPTConfig checkpoint_config(const std::string& path);
/// Loads a checkpoint into an existing model and optimizer of the same configuration.
/// Throws sgpt::Error naming the file on any mismatch or damage (a tensor that fails its checksum
/// is named; an edited step or configuration fails the metadata checksum); nothing is modified
/// then. Checkpoints of version 1 (written before checksums existed) load with a warning.
TrainState load_checkpoint(const std::string& path, GPT& model, AdamW& opt);
/// Checks a checkpoint without loading it into a model: structure, format, configuration, and the
/// checksum of the metadata and of every tensor. Returns the header (its `checksummed` is false
/// for a version 1 checkpoint, which cannot be verified). Throws sgpt::Error naming the problem.
SafeTensorsHeader verify_checkpoint(const std::string& path);

/// Writes `dir`/model.safetensors and `dir`/config.json that Hugging Face transformers loads
/// with GPT2LMHeadModel.from_pretrained(dir).
void export_hf(const std::string& dir, const GPT& model);
/// Reads a Hugging Face GPT-2 directory (config.json + model.safetensors, names with or without
/// the "transformer." prefix) into a new model. Every tensor must fit the config: a missing or
/// misshapen parameter, or a tensor the config has no place for (an extra layer, an unknown name),
/// is an error naming it. The causal-mask buffers transformers saves (h.L.attn.bias) are skipped.
std::unique_ptr<GPT> import_hf(const std::string& dir, Device device = Device::CPU, DType dtype = DType::F32);

/// GPTConfig <-> JSON text (ScaleGPT's own field names).
std::string config_to_json(const GPTConfig& cfg);
/// Parses the JSON that config_to_json writes and validates the result (throws on a missing
/// field or an invalid configuration).
GPTConfig config_from_json(const std::string& json);

}  // namespace sgpt
