#pragma once
/// @file backends.hpp
/// @brief Internal: the factories each backend file defines, and shared helpers (not a public API).

#include <memory>
#include <string>

#include "comm/communicator.hpp"

#if SGPT_WITH_MPI
// Only MPI's C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace sgpt::detail {

/// Whether groups check call signatures by default: SGPT_COMM_CHECK=1/0 forces it; otherwise on for
/// every backend but NCCL (whose calls are enqueued on a stream, where the exchange would cost a sync).
bool default_call_checks(Backend b);

/// Prints "<what> waited more than <timeout> s ..." and aborts every rank (a communication
/// timeout; see Communicator's "Timeouts").
[[noreturn]] void comm_timeout_abort(const std::string& what, double timeout_s);

/// Sleeps a little longer on each call of a polling loop (from a few microseconds up to half a
/// millisecond), so that a long wait does not take a core from the other ranks of an
/// oversubscribed machine while a short one stays fast.
class PollBackoff {
 public:
  /// Waits before the next poll.
  void pause();
  /// Seconds since construction.
  double elapsed() const;

 private:
  double start_ = now();
  int polls_ = 0;
  static double now();
};

/// A one-rank group of the threads backend.
std::shared_ptr<Communicator> make_threads_single();

#if SGPT_WITH_MPI
/// Initialises MPI if nobody has (argc/argv may be null) and installs the exit-time finaliser.
void mpi_ensure_init(int* argc, char*** argv);
/// True between MPI_Init and MPI_Finalize.
bool mpi_active();
/// A communicator over a duplicate of MPI_COMM_WORLD.
std::shared_ptr<Communicator> make_mpi_world();
/// MPI_Waitall with a deadline: polls the `n` requests with MPI_Testall and returns its code once
/// they are complete; after `timeout_s` seconds (0 = never) calls comm_timeout_abort(what).
int mpi_wait_all(int n, MPI_Request* reqs, MPI_Status* statuses, double timeout_s, const std::string& what);
#endif

#if SGPT_WITH_NCCL && SGPT_WITH_MPI
/// An NCCL communicator over all MPI processes (one GPU per process).
std::shared_ptr<Communicator> make_nccl_world();
#endif

/// Value of an environment variable, or `fallback` when unset.
std::string env_or(const char* name, const std::string& fallback);

/// Elementwise dst[i] = dst[i] / divisor for f32/f64/bf16 host buffers (Avg after a Sum; bf16
/// divides in f32 and rounds once).
void host_divide(void* data, DType dtype, int64_t count, int divisor);
/// Elementwise dst[i] += src[i] for host buffers (bf16: see bf16_accumulate).
void host_accumulate(void* dst, const void* src, DType dtype, int64_t count);
/// The one bf16 combine every CPU backend uses: dst[i] = bf16(f32(dst[i]) + f32(src[i])), the sum
/// taken in f32 and rounded to nearest even once per combine (the MPI backend's user-defined op).
void bf16_accumulate(bf16_t* dst, const bf16_t* src, int64_t count);

}  // namespace sgpt::detail
