#pragma once
/// @file pipeline_split.hpp
/// @brief The library's pipeline stage split, for the lessons after 08 and the trainer.
///
/// Lesson 08's students write this split themselves (lesson08::stage_spec); lesson 08 does not
/// link this library (target sgpt_parallel), so its tests grade their version. Lesson 09 and later
/// build on the split and link this one, so that their grades depend on their own files only.

#include "model/config.hpp"
#include "model/pipeline_stage.hpp"

namespace sgpt {

/// Where stage `stage` of `num_stages` sits in `cfg`: blocks by shard_range(L, p, r) (the first
/// L mod p stages get one block more), parameters exactly the stage's (its blocks, plus the
/// embeddings on the first stage and the final LayerNorm and lm_head on the last). Throws
/// sgpt::Error naming the numbers for num_stages < 1, a stage outside [0, num_stages), more stages
/// than blocks, or tied embeddings on more than one stage.
StageSpec pipeline_stage_spec(const GPTConfig& cfg, int num_stages, int stage);

}  // namespace sgpt
