// Lesson 08 driver: GPipe on p ranks (one stage each), for several micro-batch counts m. For each
// m it trains a few steps, traces them, and prints the bubble the formula predicts, (p-1)/(m+p-1),
// next to the bubble measured from the trace (the idle fraction of p x the step's span, median
// over the timed steps), the step time, and each rank's peak activation memory from its own
// memory tracker with the micro-batches it held at once. It writes the last traced step as a
// Chrome trace and as an SVG timeline (one row per rank). The program is
// common/parallel/pipeline_driver.hpp with your stage_spec and gpipe_train_step.
//
//   mpirun -np 2 --oversubscribe lesson08-pipeline-gpipe [--model micro] [--rows 4] [--seq-len 64]
//          [--micro-batches 1,2,4,8] [--steps 4] [--trace gpipe.json] [--svg gpipe.svg]

#include "core/main.hpp"
#include "parallel/pipeline_driver.hpp"
#include "pipeline_gpipe.hpp"

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] {
    return sgpt::run_pipeline_driver("lesson08", "GPipe", sgpt::lesson08::stage_spec, sgpt::lesson08::gpipe_train_step,
                                     argc, argv);
  });
}
