#pragma once
/// @file layout.hpp
/// @brief Where every parameter lives in the one flat parameter buffer, and how it is initialised.
///
/// Parameters are laid out block by block (embeddings, block 0, block 1, ..., final LayerNorm,
/// optional lm_head), so a pipeline stage, a ZeRO shard or a gradient bucket is a contiguous
/// range of the flat buffer. Names and tensor layouts follow Hugging Face's GPT-2, except that
/// linear weights are stored [out, in] (HF's Conv1D stores [in, out]; checkpoints transpose).

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "model/config.hpp"

namespace sgpt {

/// How a parameter starts.
enum class InitKind { Normal, Zeros, Ones };

/// One named parameter tensor inside the flat buffer.
struct ParamInfo {
  std::string name;  ///< e.g. "transformer.h.0.attn.c_attn.weight"
  Shape shape;       ///< e.g. {3C, C}
  int64_t offset;    ///< first element in the flat buffer
  int64_t numel;     ///< number of elements (product of `shape`)
  int layer;         ///< block index, or -1 for embeddings / final LayerNorm / lm_head
  InitKind init;     ///< how init_parameters() fills it
  double init_std;   ///< for InitKind::Normal
  int64_t init_rows; ///< rows that are initialised; rows past it (vocabulary padding) stay zero
  bool weight_decay; ///< AdamW decays matrices and embeddings, not biases or LayerNorm gains
};

/// The parameter layout of a configuration.
class ParameterLayout {
 public:
  /// Lays out every parameter of `cfg` (validates it first).
  explicit ParameterLayout(const GPTConfig& cfg);
  /// Every parameter, in buffer order (increasing offset, no gaps).
  const std::vector<ParamInfo>& params() const { return params_; }
  /// Total elements of the flat buffer (= GPTConfig::num_parameters()).
  int64_t numel() const { return numel_; }
  /// The entry named `name` (throws for an unknown name).
  const ParamInfo& find(const std::string& name) const;
  /// [begin, end) of block `layer` in the flat buffer.
  std::pair<int64_t, int64_t> layer_range(int layer) const;

 private:
  std::vector<ParamInfo> params_;
  std::vector<std::pair<int64_t, int64_t>> layer_ranges_;
  int64_t numel_ = 0;
};

/// Fills elements [begin, begin + out.numel()) of the flat parameter buffer that `layout`
/// describes, as the single-device model initialises them under `seed`. Every element depends
/// only on (seed, parameter name, index in the parameter), so any slice initialises alone.
void init_parameters(Tensor& out, const ParameterLayout& layout, uint64_t seed, int64_t begin = 0);

/// Fills `out` ([R] or [R,K], contiguous) with the block of parameter `name` that starts at row
/// `row_begin` and column `col_begin`: out[i][j] = name[row_begin + i][col_begin + j] (a 1-D
/// `out` takes elements row_begin .. row_begin + R of a 1-D parameter), exactly as the
/// single-device model initialises them under `seed`. A tensor-parallel rank initialises its
/// shard of a weight this way without building the whole model.
void init_parameter_slice(Tensor& out, const ParameterLayout& layout, uint64_t seed, const std::string& name,
                          int64_t row_begin, int64_t col_begin = 0);

}  // namespace sgpt
