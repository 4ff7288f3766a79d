// The world: which launcher started this process (mpirun, Slurm, none), the world communicator of
// the chosen backend, init/finalize, and abort_all, which ends every rank on a fatal error.

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"
#include "core/trace.hpp"

#if SGPT_WITH_MPI
// Only MPI's C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace sgpt {

static int env_int(std::initializer_list<const char*> names, int fallback) {
  for (const char* n : names) {
    const char* v = std::getenv(n);
    if (v && *v) return std::atoi(v);
  }
  return fallback;
}

LaunchInfo detect_launch() {
  LaunchInfo info;
  if (std::getenv("OMPI_COMM_WORLD_RANK")) {
    info.launcher = "openmpi";
    info.rank = env_int({"OMPI_COMM_WORLD_RANK"}, 0);
    info.world = env_int({"OMPI_COMM_WORLD_SIZE"}, 1);
    info.local_rank = env_int({"OMPI_COMM_WORLD_LOCAL_RANK"}, 0);
  } else if (std::getenv("SLURM_PROCID") && std::getenv("SLURM_NTASKS")) {
    info.launcher = "slurm";
    info.rank = env_int({"SLURM_PROCID"}, 0);
    info.world = env_int({"SLURM_NTASKS"}, 1);
    info.local_rank = env_int({"SLURM_LOCALID"}, 0);
  } else if (std::getenv("PMI_RANK")) {
    info.launcher = "pmi";
    info.rank = env_int({"PMI_RANK"}, 0);
    info.world = env_int({"PMI_SIZE"}, 1);
    info.local_rank = env_int({"MPI_LOCALRANKID", "PMI_LOCAL_RANK"}, 0);
  } else {
    info.launcher = "none";
  }
  return info;
}

static Backend resolve_backend(Backend b) {
  if (b != Backend::Auto) return b;
#if SGPT_WITH_NCCL && SGPT_WITH_MPI
  if (cuda_available()) return Backend::NCCL;
#endif
#if SGPT_WITH_MPI
  return Backend::MPI;
#else
  return Backend::Threads;
#endif
}

std::shared_ptr<Communicator> make_world_communicator(Backend backend) {
  Backend b = resolve_backend(backend);
  std::shared_ptr<Communicator> c;
  switch (b) {
    case Backend::Threads: c = detail::make_threads_single(); break;
    case Backend::MPI:
#if SGPT_WITH_MPI
      detail::mpi_ensure_init(nullptr, nullptr);
      c = detail::make_mpi_world();
      break;
#else
      SGPT_FAIL("this build has no MPI: configure with -DSCALEGPT_MPI=ON, or use the threads backend");
#endif
    case Backend::NCCL:
#if SGPT_WITH_NCCL && SGPT_WITH_MPI
      detail::mpi_ensure_init(nullptr, nullptr);
      c = detail::make_nccl_world();
      break;
#else
      SGPT_FAIL("this build has no NCCL backend: configure with -DSCALEGPT_CUDA=ON (and MPI) on a GPU machine");
#endif
    case Backend::Auto: break;
  }
  SGPT_CHECK(c != nullptr, "no communicator for backend ", backend_name(b));
  c->set_call_checks(detail::default_call_checks(b));
  return c;
}

namespace {
std::mutex g_world_mu;
std::shared_ptr<Communicator> g_world;

[[noreturn]] void terminate_handler() {
  std::string why = "terminate called without an active exception";
  if (auto ex = std::current_exception()) {
    try {
      std::rethrow_exception(ex);
    } catch (const std::exception& e) {
      why = str("uncaught exception: ", e.what());
    } catch (...) {
      why = "uncaught exception of unknown type";
    }
  }
  abort_all(why, 1);
}
}  // namespace

std::shared_ptr<Communicator> init_distributed(int& argc, char**& argv, Backend backend) {
  std::lock_guard lock(g_world_mu);
  if (g_world) return g_world;
  if (backend == Backend::Auto) backend = parse_backend(detail::env_or("SGPT_COMM_BACKEND", "auto"));
  Backend b = resolve_backend(backend);
#if SGPT_WITH_MPI
  if (b == Backend::MPI || b == Backend::NCCL) detail::mpi_ensure_init(&argc, &argv);
#endif
  g_world = make_world_communicator(b);
  set_process_rank(g_world->rank());
  TraceRecorder::global().set_rank(g_world->rank());
  std::set_terminate(terminate_handler);
  return g_world;
}

void finalize_distributed() {
  {
    std::lock_guard lock(g_world_mu);
    g_world.reset();
  }
#if SGPT_WITH_MPI
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Finalize();
#endif
}

std::string mpi_error_string(int code) {
#if SGPT_WITH_MPI
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) == MPI_SUCCESS) return std::string(buf, len);
#endif
  return str("MPI error ", code);
}

void abort_all(const std::string& why, int exit_code) {
  std::fprintf(stderr, "[rank %d] fatal: %s\n", process_rank(), why.c_str());
  std::fflush(stderr);
#if SGPT_WITH_MPI
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Abort(MPI_COMM_WORLD, exit_code);
#endif
  std::_Exit(exit_code);
}

}  // namespace sgpt
