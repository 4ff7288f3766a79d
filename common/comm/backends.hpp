#pragma once
/// @file backends.hpp
/// @brief Internal: the factories each backend file defines, and shared helpers (not a public API).

#include <memory>
#include <string>

#include "comm/communicator.hpp"

namespace sgpt::detail {

/// A one-rank group of the threads backend.
std::shared_ptr<Communicator> make_threads_single();

#if SGPT_WITH_MPI
/// Initialises MPI if nobody has (argc/argv may be null) and installs the exit-time finaliser.
void mpi_ensure_init(int* argc, char*** argv);
/// True between MPI_Init and MPI_Finalize.
bool mpi_active();
/// A communicator over a duplicate of MPI_COMM_WORLD.
std::shared_ptr<Communicator> make_mpi_world();
#endif

#if SGPT_WITH_NCCL && SGPT_WITH_MPI
/// An NCCL communicator over all MPI processes (one GPU per process).
std::shared_ptr<Communicator> make_nccl_world();
#endif

/// Value of an environment variable, or `fallback` when unset.
std::string env_or(const char* name, const std::string& fallback);

/// Elementwise dst[i] = dst[i] / divisor for f32/f64 host buffers (Avg after a Sum).
void host_divide(void* data, DType dtype, int64_t count, int divisor);
/// Elementwise dst[i] += src[i] for host buffers.
void host_accumulate(void* dst, const void* src, DType dtype, int64_t count);

}  // namespace sgpt::detail
