#pragma once
/// @file pipeline_types.hpp
/// @brief The shapes of a pipeline lesson's functions, so tests and drivers can take any of them.

#include <functional>

#include "comm/communicator.hpp"
#include "model/config.hpp"
#include "model/pipeline_stage.hpp"
#include "optim/optim.hpp"

namespace sgpt {

/// A stage split: (cfg, p, r) -> the StageSpec of stage r of p.
using StageSpecFn = std::function<StageSpec(const GPTConfig&, int, int)>;
/// A pipeline training step: (comm, stage, opt, tokens, targets, m, lr) -> the mean loss over the
/// batch on the last stage, NaN elsewhere.
using PipelineStepFn =
    std::function<double(Communicator&, PipelineStage&, AdamW&, const Tensor&, const Tensor&, int, double)>;

}  // namespace sgpt
