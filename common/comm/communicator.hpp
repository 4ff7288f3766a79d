#pragma once
/// @file communicator.hpp
/// @brief The communication layer: one Communicator interface over MPI, NCCL and in-process threads.
///
/// A Communicator is a group of ranks (the world, or a sub-group made by split()) that exchange
/// Tensors. Every rank of the group must call the same collectives, in the same order, with
/// matching arguments; a cheap call check (on by default for the MPI and threads backends, see
/// set_call_checks()) exchanges a signature of each collective first, so a mismatch raises
/// sgpt::Error on every rank instead of hanging.
///
/// ## Sharding rule
/// reduce_scatter() and all_gather() work on a full buffer of n elements split into one shard per
/// rank by shard_range(): the first n % size ranks get one element more than the others. ZeRO and
/// every other sharded algorithm in the course use the same rule.
///
/// ## Accounting
/// Each communicator counts, per operation kind, the number of calls and the **payload bytes** of
/// each call (CommStats). Payload bytes are defined by the API, not by the algorithm a backend
/// happens to use, so the numbers are the same on every backend and at every rank count:
///
/// | op             | payload bytes counted on every calling rank            |
/// |----------------|---------------------------------------------------------|
/// | barrier        | 0                                                       |
/// | broadcast      | tensor.nbytes() (root and receivers alike)              |
/// | all_reduce     | tensor.nbytes()                                         |
/// | reduce_scatter | in.nbytes() (the full, unsharded buffer)                |
/// | all_gather     | out.nbytes() (the full, gathered buffer)                |
/// | send           | tensor.nbytes() on the sender                           |
/// | recv           | tensor.nbytes() on the receiver                         |
///
/// The bytes a ring algorithm actually puts on the wire follow from these with the usual factors
/// (all-reduce 2(p-1)/p, reduce-scatter and all-gather (p-1)/p); see bus_bytes(). Async forms are
/// counted when they are issued. Sub-groups made by split() have their own counters; a call is
/// counted only in the communicator it was made on.
///
/// ## bf16 tensors
/// Every collective also takes DType::BF16 tensors (ZeRO's 16-bit parameters and gradients,
/// lesson 11), and counts them at 2 bytes per element. Moving them (broadcast, all_gather, send,
/// recv) is exact. Reducing them is not: a bf16 sum is taken in f32 and rounded to nearest even
/// once per combine of two partial sums (MPI: a user-defined MPI_Op; threads: rank 0 + rank 1 +
/// ... in rank order; NCCL: ncclBfloat16, whose kernels add in f32). A sum over p ranks is rounded
/// up to p - 1 times, so, unlike an f32 or f64 sum of exactly representable values (integers, in
/// the tests), the result depends on the order in which the backend's algorithm combines the
/// ranks: compare it with an exact reference within about (p - 1) bf16 ulps (2^-8 relative each)
/// of the sum of magnitudes, not bit for bit. Avg divides the rounded sum in f32 and rounds again
/// (exact when p is a power of two). Every rank of an all_reduce receives the same bits.
///
/// ## Timeouts
/// A call that waits longer than timeout() seconds for the other ranks (MPI and NCCL backends:
/// the collective itself, its call check, point-to-point operations, async waits) ends the whole
/// job: it prints "[rank r] ... <op> on group '<name>' (call #n) waited more than T s ..." and calls
/// abort_all() (NCCL aborts its communicator first). A stalled, deadlocked or dead rank thus
/// ends the job in bounded time instead of hanging it. NCCL's asynchronous errors
/// (ncclCommGetAsyncError) are polled while waiting and abort the same way. The default is
/// SGPT_COMM_TIMEOUT seconds when set, else 300; 0 waits forever.
///
/// ## Tracing
/// When the current TraceRecorder (core/trace.hpp) is enabled, every call records a "comm" event
/// named after the op ("all_reduce", ...) with the group name and payload bytes in its args.
/// Blocking calls are recorded on track 0 (the rank's main timeline), async ones on track 1 from
/// issue until wait()/test() sees them complete.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"

namespace sgpt {

/// Reduction applied by all_reduce and reduce_scatter. Avg is the sum divided by the group size
/// (floating-point types only).
enum class ReduceOp { Sum, Avg };

/// Which engine moves the bytes.
enum class Backend {
  Auto,     ///< NCCL when built with it and a GPU is visible, else MPI when built, else Threads
  MPI,      ///< processes, host buffers (device buffers staged through pinned host memory)
  NCCL,     ///< processes, one GPU per rank, device buffers; bootstrapped over MPI
  Threads,  ///< ranks are std::threads of one process (run_threads); host buffers
};

/// Operation kinds, for accounting and call checks.
enum class OpKind : int {
  Barrier = 0,
  Broadcast,
  AllReduce,
  ReduceScatter,
  AllGather,
  Send,
  Recv,
  Split,
  Count
};

/// "mpi", "nccl", "threads" or "auto".
const char* backend_name(Backend b);
/// Parses "mpi", "nccl", "threads" or "auto" (throws sgpt::Error otherwise).
Backend parse_backend(const std::string& name);
/// "all_reduce", "reduce_scatter", ...
const char* op_name(OpKind k);
/// "sum" or "avg".
const char* reduce_op_name(ReduceOp op);

/// A contiguous range [begin, begin + count) of elements.
struct ShardRange {
  int64_t begin = 0;  ///< first element of the shard
  int64_t count = 0;  ///< number of elements in the shard
  /// Equal when begin and count are.
  bool operator==(const ShardRange&) const = default;
};

/// THE sharding rule: n elements split over `world` ranks; the first n % world ranks get
/// n / world + 1 elements, the others n / world, in rank order.
ShardRange shard_range(int64_t n, int world, int rank);

/// Bytes a bandwidth-optimal (ring) algorithm moves per rank for a call of `payload` bytes on
/// `world` ranks: all-reduce 2(p-1)/p, reduce-scatter and all-gather (p-1)/p, broadcast, send and
/// recv 1 (the factors nccl-tests uses for busbw). Returned as a double (it is a model, not a count).
double bus_bytes(OpKind kind, double payload, int world);

/// Calls and payload bytes of one op kind.
struct OpStats {
  int64_t calls = 0;  ///< number of calls made by this rank
  int64_t bytes = 0;  ///< payload bytes, as defined in the table at the top of this file
  /// Equal when calls and bytes are.
  bool operator==(const OpStats&) const = default;
};

/// Per-op-kind counters of one communicator on this rank.
struct CommStats {
  std::array<OpStats, static_cast<int>(OpKind::Count)> ops{};  ///< counters indexed by OpKind
  /// Counters of one op kind.
  const OpStats& operator[](OpKind k) const { return ops[static_cast<int>(k)]; }
  /// Counters of one op kind (mutable).
  OpStats& operator[](OpKind k) { return ops[static_cast<int>(k)]; }
  /// Sum over all op kinds.
  OpStats total() const;
  /// One line per op kind that was used, for people.
  std::string report() const;
};

/// Handle on an operation in flight (returned by the *_async forms).
///
/// wait() blocks until the operation is complete and its output may be read (and, for NCCL, the
/// device work has finished); it rethrows any error of the operation. test() returns whether the
/// operation is complete without blocking (and drives progress for MPI). A default-constructed
/// Work is complete. Copies share the same operation. A Work destroyed while still in flight
/// waits for it (an operation may not be abandoned: its buffers are in use).
class Work {
 public:
  /// What a backend implements.
  class Impl {
   public:
    virtual ~Impl() = default;
    /// Blocks until complete.
    virtual void wait() = 0;
    /// Non-blocking completion check.
    virtual bool test() = 0;
  };

  /// A handle on nothing: complete, and valid() is false.
  Work() = default;
  /// A handle on the backend operation `impl` (shared by copies of this Work).
  explicit Work(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

  /// Blocks until the operation is complete (idempotent).
  void wait();
  /// True when complete (idempotent; true after wait()).
  bool test();
  /// True when the handle refers to an operation (complete or not).
  bool valid() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<Impl> impl_;
};

/// A group of ranks exchanging Tensors (see the file comment for the rules).
///
/// Tensors may be f32, f64, i32 or bf16 (see "bf16 tensors" above). The MPI and threads backends take CPU tensors (MPI also CUDA
/// tensors, staged through pinned host memory unless MPI is CUDA-aware); NCCL takes CUDA tensors.
/// Public calls validate arguments, run the call check, count and trace, then hand over to the
/// backend's start_* hook; a blocking call is its async form followed by wait().
class Communicator {
 public:
  virtual ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// This rank's index in the group, 0 <= rank() < size().
  int rank() const { return rank_; }
  /// Number of ranks in the group.
  int size() const { return size_; }
  /// Name of the group ("world", or the name given to split()).
  const std::string& name() const { return name_; }
  /// Which backend this is.
  virtual Backend backend() const = 0;
  /// Where this backend wants tensors: CPU for MPI and threads, CUDA for NCCL.
  virtual Device preferred_device() const { return Device::CPU; }

  // ---- blocking collectives ----

  /// Returns when every rank of the group has entered the barrier.
  void barrier();
  /// Copies `t` from rank `root` to every rank (same shape on every rank).
  void broadcast(Tensor& t, int root);
  /// Replaces `t` on every rank with the element-wise reduction over ranks.
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum);
  /// `in` holds n elements on every rank; `out` receives this rank's shard (shard_range(n, size,
  /// rank)) of the element-wise reduction. `out` may be a separate tensor or the view of `in` at
  /// this rank's shard.
  void reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum);
  /// `in` holds this rank's shard (shard_range(n, size, rank).count elements); `out` (n elements)
  /// receives every rank's shard in rank order. `in` may be the view of `out` at this rank's shard.
  void all_gather(Tensor& out, const Tensor& in);
  /// Sends `t` to rank `dst` (point-to-point, matched by (source, tag) in order). On MPI and
  /// threads a send may return before the receiver has posted its recv (buffered); with
  /// SGPT_SYNC_SEND=1 in the environment it completes only once the matching recv is posted, as on
  /// NCCL, so tests can prove that a p2p order does not rely on buffering.
  void send(const Tensor& t, int dst, int tag = 0);
  /// Receives into `t` from rank `src`; the message must have exactly t.nbytes() bytes.
  void recv(Tensor& t, int src, int tag = 0);
  /// Sends `out` to `dst` and receives `in` from `src` as one operation (a ring shift, or the
  /// exchange between neighbouring pipeline stages). Counted as one Send and one Recv. Prefer it
  /// to a send and a recv whenever both directions move at once: on NCCL a lone send completes
  /// only when its peer posts the receive, so "everybody sends, then everybody receives" deadlocks,
  /// while send_recv (an NCCL group) does not.
  void send_recv(const Tensor& out, int dst, Tensor& in, int src, int tag = 0);

  // ---- async forms: same semantics, return at once; buffers must stay untouched until wait() ----

  /// Async broadcast(): `t` must stay untouched until the Work completes.
  Work broadcast_async(Tensor& t, int root);
  /// Async all_reduce(): `t` must stay untouched until the Work completes.
  Work all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::Sum);
  /// Async reduce_scatter(): `out` and `in` must stay untouched until the Work completes.
  Work reduce_scatter_async(Tensor& out, const Tensor& in, ReduceOp op = ReduceOp::Sum);
  /// Async all_gather(): `out` and `in` must stay untouched until the Work completes.
  Work all_gather_async(Tensor& out, const Tensor& in);
  /// Async send(): `t` must stay untouched until the Work completes.
  Work send_async(const Tensor& t, int dst, int tag = 0);
  /// Async recv(): `t` may be read only after the Work completes.
  Work recv_async(Tensor& t, int src, int tag = 0);
  /// Async send_recv(): `out` and `in` must stay untouched until the Work completes.
  Work send_recv_async(const Tensor& out, int dst, Tensor& in, int src, int tag = 0);

  /// Splits the group (collective): ranks that pass the same `color` form a new group, ordered by
  /// `key` (ties by old rank). A negative color returns nullptr (the rank joins no group). The
  /// new communicator is named `name` (default "<parent>/<color>"); its counters start at zero.
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name = "");

  // ---- accounting and checks ----

  /// Counters of this communicator on this rank.
  const CommStats& stats() const { return stats_; }
  /// Sets every counter of this communicator to zero.
  void reset_stats() { stats_ = CommStats{}; }
  /// Turns the call check (signature exchange before each collective) on or off. On by default
  /// for MPI and threads, off for NCCL; SGPT_COMM_CHECK=0/1 overrides the default.
  void set_call_checks(bool on) { call_checks_ = on; }
  /// Whether the call check is on.
  bool call_checks() const { return call_checks_; }
  /// Sets how long a call may wait for the other ranks before the job is aborted (seconds; 0 =
  /// forever; see "Timeouts" above). Groups made by split() later inherit it. Every rank should
  /// set the same value.
  void set_timeout(double seconds);
  /// The timeout in seconds (0 = none).
  double timeout() const { return timeout_s_; }

 protected:
  /// For backends' messages: "<op> on group '<name>' (call #n)", n counting this group's calls
  /// on this rank so far (the current one included).
  std::string describe_call(const char* op) const;

  /// For backends: this rank's index `rank` in a group of `size` ranks named `name` (throws
  /// sgpt::Error unless 0 <= rank < size). Call checks start on unless SGPT_COMM_CHECK=0/off.
  Communicator(int rank, int size, std::string name);

  /// What the call check compares across ranks.
  struct CallSignature {
    int32_t kind = 0;     ///< OpKind
    int32_t dtype = 0;    ///< DType
    int32_t root = -1;    ///< root rank, or -1
    int32_t op = -1;      ///< ReduceOp, or -1
    int64_t count = 0;    ///< elements of the full buffer
    int64_t seq = 0;      ///< how many collectives this rank has made on this group before
    int64_t part = -1;    ///< this rank's shard count (reduce_scatter output, all_gather input)
  };
  /// Returns every rank's signature, in rank order (a small collective on a private channel).
  virtual std::vector<CallSignature> exchange_signatures(const CallSignature& mine) = 0;

  // Backend hooks. Arguments are validated; `out`/`in` have matching dtypes and sizes.
  /// Starts barrier().
  virtual Work start_barrier() = 0;
  /// Starts broadcast().
  virtual Work start_broadcast(Tensor& t, int root) = 0;
  /// Starts all_reduce().
  virtual Work start_all_reduce(Tensor& t, ReduceOp op) = 0;
  /// Starts reduce_scatter().
  virtual Work start_reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) = 0;
  /// Starts all_gather().
  virtual Work start_all_gather(Tensor& out, const Tensor& in) = 0;
  /// Starts send().
  virtual Work start_send(const Tensor& t, int dst, int tag) = 0;
  /// Starts recv().
  virtual Work start_recv(Tensor& t, int src, int tag) = 0;
  /// Default: start_send and start_recv, completed together.
  virtual Work start_send_recv(const Tensor& out, int dst, Tensor& in, int src, int tag);
  /// Returns nullptr for color < 0. The caller has checked the call.
  virtual std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) = 0;

  /// Checks that the backend can move this tensor (dtype and device).
  virtual void check_tensor(const Tensor& t, const char* what) const;

 private:
  Work issue(OpKind kind, int64_t payload_bytes, bool async, const std::function<Work()>& start);
  void check_call(OpKind kind, const Tensor* t, int64_t count, int root, int op, int64_t part = -1);

  int rank_;
  int size_;
  std::string name_;
  CommStats stats_;
  bool call_checks_ = true;
  double timeout_s_ = 300;
  int64_t seq_ = 0;
  bool sync_call_ = false;  // set while a blocking call runs through its async form
};

// ---- creating communicators -------------------------------------------------------------------

/// Where this process sits in a multi-process launch, read from the launcher's environment
/// (OpenMPI's OMPI_COMM_WORLD_*, Slurm's SLURM_PROCID/NTASKS/LOCALID, PMI_RANK/PMI_SIZE).
struct LaunchInfo {
  int rank = 0;              ///< global rank
  int world = 1;             ///< number of processes
  int local_rank = 0;        ///< rank among the processes of this node (selects the GPU)
  std::string launcher;      ///< "openmpi", "slurm", "pmi" or "none"
};
/// Reads LaunchInfo from the environment (OpenMPI first, then Slurm, then PMI); launcher "none",
/// rank 0 of 1, when no launcher variables are set.
LaunchInfo detect_launch();

/// The world communicator of a backend. MPI and NCCL initialise MPI if needed (NCCL selects GPU
/// local_rank % device count, then builds its communicator from a unique id broadcast over MPI).
/// Threads gives a one-rank group (use run_threads for more ranks).
std::shared_ptr<Communicator> make_world_communicator(Backend backend);

/// Initialises the distributed runtime for a program and returns its world communicator.
/// The backend comes from `backend`, or when Auto from SGPT_COMM_BACKEND, else the Auto rule.
/// Also calls set_process_rank(), sets the TraceRecorder's rank, and under MPI installs a
/// terminate handler that prints the uncaught exception and calls MPI_Abort, so one failing rank
/// ends the whole job. Safe to call more than once (returns the same world).
std::shared_ptr<Communicator> init_distributed(int& argc, char**& argv, Backend backend = Backend::Auto);

/// Releases the world communicator and finalises MPI (also done at exit).
void finalize_distributed();

/// Runs `fn` on `world` threads, each with its own rank of an in-process (threads backend) group.
/// If a rank throws, the other ranks' pending and later calls throw too (nothing waits forever)
/// and run_threads rethrows the first exception once every thread has ended.
void run_threads(int world, const std::function<void(Communicator&)>& fn);

/// MPI's text for an MPI error code (used by SGPT_MPI_CHECK).
std::string mpi_error_string(int code);

/// Ends every rank of the job now (MPI_Abort under MPI; std::abort otherwise), after printing
/// `why` with the rank prefix.
[[noreturn]] void abort_all(const std::string& why, int exit_code = 1);

/// The default Communicator timeout: SGPT_COMM_TIMEOUT (seconds) when set, else 300.
double default_comm_timeout();

}  // namespace sgpt
