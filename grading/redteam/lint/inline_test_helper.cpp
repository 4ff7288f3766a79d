// Red team (lint): call a header-only helper of the tests (like sgpt::testing::data_parallel_step in
// common/comm/testing/dp_testing.hpp). Optimised, the call is inlined and leaves no symbol; the
// grader's unoptimised lint objects keep it.
namespace sgpt::testing {
inline double helper_step(double loss) { return loss * 0.5; }
}  // namespace sgpt::testing

namespace sgpt::lesson06 {
double train_step_via_tests(double loss) { return sgpt::testing::helper_step(loss); }
}  // namespace sgpt::lesson06
