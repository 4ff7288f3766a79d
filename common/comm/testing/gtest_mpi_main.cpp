// GoogleTest main for multi-rank tests (see mpi_test.hpp for the contract).

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "comm/testing/mpi_test.hpp"
#include "core/check.hpp"

#if SGPT_WITH_MPI
// Only MPI's C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace sgpt::testing {

namespace {
std::shared_ptr<Communicator> g_world;
}

Communicator& world() {
  SGPT_CHECK(g_world != nullptr, "sgpt::testing::world() called outside a sgpt_gtest_mpi_main binary");
  return *g_world;
}

namespace {

// Forwards every event to the default printer (rank 0 only) and makes a test's verdict global.
class RankListener : public ::testing::TestEventListener {
 public:
  RankListener(::testing::TestEventListener* printer, int rank, int size) : printer_(printer), rank_(rank), size_(size) {
#if SGPT_WITH_MPI
    if (size_ > 1) MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
#endif
    const char* t = std::getenv("SGPT_TEST_ABORT_TIMEOUT");
    timeout_s_ = t ? std::atof(t) : 20.0;
  }

  void OnTestProgramStart(const ::testing::UnitTest& u) override { fwd([&](auto* p) { p->OnTestProgramStart(u); }); }
  void OnTestIterationStart(const ::testing::UnitTest& u, int i) override {
    fwd([&](auto* p) { p->OnTestIterationStart(u, i); });
  }
  void OnEnvironmentsSetUpStart(const ::testing::UnitTest& u) override {
    fwd([&](auto* p) { p->OnEnvironmentsSetUpStart(u); });
  }
  void OnEnvironmentsSetUpEnd(const ::testing::UnitTest& u) override {
    fwd([&](auto* p) { p->OnEnvironmentsSetUpEnd(u); });
  }
  void OnTestSuiteStart(const ::testing::TestSuite& s) override { fwd([&](auto* p) { p->OnTestSuiteStart(s); }); }
  void OnTestStart(const ::testing::TestInfo& t) override {
    failed_here_ = false;
    fwd([&](auto* p) { p->OnTestStart(t); });
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed()) {
      failed_here_ = true;
      if (rank_ != 0) {
        std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                     r.line_number(), r.message());
        std::fflush(stderr);
      }
    }
    fwd([&](auto* p) { p->OnTestPartResult(r); });
  }
  void OnTestEnd(const ::testing::TestInfo& t) override {
    std::string failed_ranks = combine(t);
    if (!failed_ranks.empty() && (!failed_here_ || rank_ == 0)) {
      ADD_FAILURE() << "this test failed on rank(s) " << failed_ranks;
    }
    fwd([&](auto* p) { p->OnTestEnd(t); });
  }
  void OnTestSuiteEnd(const ::testing::TestSuite& s) override { fwd([&](auto* p) { p->OnTestSuiteEnd(s); }); }
  void OnEnvironmentsTearDownStart(const ::testing::UnitTest& u) override {
    fwd([&](auto* p) { p->OnEnvironmentsTearDownStart(u); });
  }
  void OnEnvironmentsTearDownEnd(const ::testing::UnitTest& u) override {
    fwd([&](auto* p) { p->OnEnvironmentsTearDownEnd(u); });
  }
  void OnTestIterationEnd(const ::testing::UnitTest& u, int i) override {
    fwd([&](auto* p) { p->OnTestIterationEnd(u, i); });
  }
  void OnTestProgramEnd(const ::testing::UnitTest& u) override { fwd([&](auto* p) { p->OnTestProgramEnd(u); }); }

 private:
  template <class F>
  void fwd(F&& f) {
    if (printer_) f(printer_.get());
  }

  // Exchanges every rank's verdict on the test that just ended; returns the failed ranks ("" if
  // none). Runs on a private communicator, so it cannot match a collective of the test itself.
  std::string combine(const ::testing::TestInfo& t) {
    if (size_ == 1) return "";
#if SGPT_WITH_MPI
    int mine = failed_here_ ? 1 : 0;
    std::vector<int> all(size_, 0);
    MPI_Request req;
    MPI_Iallgather(&mine, 1, MPI_INT, all.data(), 1, MPI_INT, comm_, &req);
    auto start = std::chrono::steady_clock::now();
    for (;;) {
      int done = 0;
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) break;
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (failed_here_ && waited > timeout_s_) {
        std::fprintf(stderr,
                     "[rank %d] test %s.%s failed here and the other ranks did not finish it within %.0f s "
                     "(probably waiting in a collective this rank left); aborting every rank\n",
                     rank_, t.test_suite_name(), t.name(), timeout_s_);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string out;
    for (int r = 0; r < size_; ++r)
      if (all[r]) out += (out.empty() ? "" : ", ") + std::to_string(r);
    return out;
#else
    return "";
#endif
  }

  std::unique_ptr<::testing::TestEventListener> printer_;
  int rank_, size_;
  bool failed_here_ = false;
  double timeout_s_;
#if SGPT_WITH_MPI
  MPI_Comm comm_ = MPI_COMM_NULL;
#endif
};

}  // namespace
}  // namespace sgpt::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
#if SGPT_WITH_MPI
  sgpt::Backend backend = sgpt::Backend::MPI;
#else
  sgpt::Backend backend = sgpt::Backend::Threads;
#endif
  if (const char* b = std::getenv("SGPT_COMM_BACKEND")) backend = sgpt::parse_backend(b);
  sgpt::testing::g_world = sgpt::init_distributed(argc, argv, backend);
  int rank = sgpt::testing::g_world->rank();
  int size = sgpt::testing::g_world->size();

  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  ::testing::TestEventListener* printer = listeners.Release(listeners.default_result_printer());
  if (rank != 0) {
    delete printer;
    printer = nullptr;
  }
  listeners.Append(new sgpt::testing::RankListener(printer, rank, size));

  int rc = RUN_ALL_TESTS();
  // Every rank has the same verdicts (the listener combined them), so the exit codes agree.
  sgpt::testing::g_world.reset();
  sgpt::finalize_distributed();
  return rc;
}
