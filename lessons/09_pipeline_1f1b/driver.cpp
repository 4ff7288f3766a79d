// Lesson 09 driver: 1F1B on p ranks (one stage each), for several micro-batch counts m: the bubble
// formula (p-1)/(m+p-1) next to the bubble measured from the trace, the step time, and each rank's
// peak activation memory (its own memory tracker) with the micro-batches it held at once — at most
// p - r on rank r, where lesson 08's GPipe holds m. It writes the last traced step as a Chrome trace
// and an SVG timeline.
// The program is common/parallel/pipeline_driver.hpp with lesson 08's split (its reference) and your step.
//
//   mpirun -np 2 --oversubscribe lesson09-pipeline-1f1b [--model micro] [--rows 4] [--seq-len 64]
//          [--micro-batches 1,2,4,8] [--steps 4] [--trace 1f1b.json] [--svg 1f1b.svg]

#include "core/main.hpp"
#include "parallel/pipeline_driver.hpp"
#include "pipeline_1f1b.hpp"

int main(int argc, char** argv) {
  return sgpt::run_guarded(argv[0], [&] {
    return sgpt::run_pipeline_driver("lesson09", "1F1B", sgpt::lesson08::stage_spec,
                                     sgpt::lesson09::one_f_one_b_train_step, argc, argv);
  });
}
