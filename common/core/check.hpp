#pragma once
/// @file check.hpp
/// @brief The one error-check family of ScaleGPT.
///
/// Every failed check, whatever it checks (a plain condition, a CUDA, cuBLAS, NCCL or MPI call),
/// throws sgpt::Error with the message
///
///     [rank r] file:line: what -> why
///
/// where `what` is the failed expression and `why` the explanation. Under MPI the top-level
/// handler (see comm/) turns an uncaught Error into MPI_Abort, so no rank is left waiting.

#include <sstream>
#include <stdexcept>
#include <string>

namespace sgpt {

/// The exception every ScaleGPT check throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown by a student stub that has not been written yet. Names the lesson, task and file.
class NotImplemented : public Error {
 public:
  /// Message "[rank r] not implemented: lesson LL, task t (what) in file" (see SGPT_TODO).
  NotImplemented(int lesson, int task, const std::string& what, const std::string& file);
  int lesson;  ///< lesson number, e.g. 2
  int task;    ///< task number inside the lesson
};

/// Sets the rank printed in front of every error and log line (the communicator calls this).
void set_process_rank(int rank);
/// The rank set by set_process_rank (0 before any communicator exists).
int process_rank();

/// Concatenates anything that can be streamed into one string.
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

namespace detail {
/// Throws sgpt::Error with the message "[rank r] file:line: what -> why" (`file` shortened to its
/// path from the repository's top folder). Called by the SGPT_* check macros.
[[noreturn]] void fail(const char* file, int line, const std::string& what, const std::string& why);
}  // namespace detail

}  // namespace sgpt

/// Throws sgpt::Error unless `cond` holds; the remaining arguments are streamed into the reason.
#define SGPT_CHECK(cond, ...)                                                          \
  do {                                                                                 \
    if (!(cond)) ::sgpt::detail::fail(__FILE__, __LINE__, #cond, ::sgpt::str(__VA_ARGS__)); \
  } while (0)

/// Throws sgpt::Error unconditionally (for unreachable branches and bad input).
#define SGPT_FAIL(...) ::sgpt::detail::fail(__FILE__, __LINE__, "error", ::sgpt::str(__VA_ARGS__))

/// Marks a student task that has not been written: throws sgpt::NotImplemented.
#define SGPT_TODO(lesson, task, what) throw ::sgpt::NotImplemented((lesson), (task), (what), __FILE__)

// Backend checks: each evaluates the call once and reports the library's own error string.
/// Shared body of the backend checks below: evaluates `expr` once and, unless the result equals
/// `ok`, throws sgpt::Error with `errstr(result)` as the reason. Use the named checks instead.
#define SGPT_CHECK_CALL_(expr, ok, errstr)                                                 \
  do {                                                                                     \
    auto sgpt_status_ = (expr);                                                            \
    if (sgpt_status_ != (ok)) ::sgpt::detail::fail(__FILE__, __LINE__, #expr, errstr(sgpt_status_)); \
  } while (0)

/// Checks a CUDA runtime call (cudaError_t).
#define SGPT_CUDA_CHECK(expr) SGPT_CHECK_CALL_(expr, cudaSuccess, ::cudaGetErrorString)
/// Checks a cuBLAS call (cublasStatus_t).
#define SGPT_CUBLAS_CHECK(expr) SGPT_CHECK_CALL_(expr, CUBLAS_STATUS_SUCCESS, ::cublasGetStatusString)
/// Checks an NCCL call (ncclResult_t).
#define SGPT_NCCL_CHECK(expr) SGPT_CHECK_CALL_(expr, ncclSuccess, ::ncclGetErrorString)
/// Checks an MPI call (int error code); sgpt::mpi_error_string is defined in comm/.
#define SGPT_MPI_CHECK(expr) SGPT_CHECK_CALL_(expr, MPI_SUCCESS, ::sgpt::mpi_error_string)
