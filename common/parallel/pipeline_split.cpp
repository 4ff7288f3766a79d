// The split of lesson 08, as a library function for the lessons that build on it (see the header).

#include "parallel/pipeline_split.hpp"

#include "comm/communicator.hpp"
#include "core/check.hpp"
#include "model/layout.hpp"

namespace sgpt {

StageSpec pipeline_stage_spec(const GPTConfig& cfg, int num_stages, int stage) {
  SGPT_CHECK(num_stages >= 1, "a pipeline needs at least one stage, got ", num_stages);
  SGPT_CHECK(stage >= 0 && stage < num_stages, "stage ", stage, " is outside [0, ", num_stages, ")");
  SGPT_CHECK(num_stages <= cfg.n_layer, "more pipeline stages (", num_stages, ") than blocks (", cfg.n_layer,
             ") in model '", cfg.name, "': every stage needs at least one block");
  SGPT_CHECK(num_stages == 1 || !cfg.tied_embeddings, "model '", cfg.name,
             "' ties its embeddings: wte would be needed on the first stage and on the last; "
             "pipeline it with tied_embeddings = false");
  const ParameterLayout layout(cfg);
  const ShardRange blocks = shard_range(cfg.n_layer, num_stages, stage);
  StageSpec s;
  s.stage = stage;
  s.num_stages = num_stages;
  s.first_layer = static_cast<int>(blocks.begin);
  s.end_layer = static_cast<int>(blocks.begin + blocks.count);
  // The flat buffer is embeddings, blocks, final LayerNorm, lm_head: a stage is one range of it.
  s.param_begin = s.is_first() ? 0 : layout.layer_range(s.first_layer).first;
  s.param_end = s.is_last() ? layout.numel() : layout.layer_range(s.end_layer - 1).second;
  return s;
}

}  // namespace sgpt
