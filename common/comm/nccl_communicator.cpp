// The NCCL backend: one GPU per process, device buffers, bootstrapped over MPI.
//
// Rank 0 of a group creates an ncclUniqueId and broadcasts it over the group's MPI communicator;
// every rank then calls ncclCommInitRank. This works wherever MPI does (mpirun, Slurm's srun,
// across nodes). Each communicator owns a non-blocking CUDA stream; a call first makes that stream
// wait for the work already queued on the legacy default stream (where the kernels run), enqueues
// the NCCL operation, and records an event that Work::wait() synchronises on. So when wait()
// returns, the result is in device memory and visible to every later kernel.
//
// NCCL's reduce-scatter and all-gather need equal shards; uneven counts (shard_range) are done as
// grouped calls instead: one ncclReduce per shard root, or one ncclBroadcast per shard owner,
// inside ncclGroupStart/End, which NCCL runs concurrently.

#if SGPT_WITH_NCCL && SGPT_WITH_MPI

#include <cuda_runtime.h>
// Only MPI's C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <nccl.h>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"

namespace sgpt {

namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::I32: return ncclInt32;
    case DType::BF16: return ncclBfloat16;  // NCCL sums bf16 in f32 inside its kernels
    default: SGPT_FAIL("NCCL backend: no NCCL datatype for ", dtype_name(d));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::Avg ? ncclAvg : ncclSum; }

// Polls NCCL's asynchronous error state (a peer that failed, a network error, a timeout inside
// NCCL): a failed communicator is aborted, then the whole job, instead of hanging on the event.
void check_nccl_async(ncclComm_t comm, const std::string& what) {
  ncclResult_t async = ncclSuccess;
  SGPT_NCCL_CHECK(ncclCommGetAsyncError(comm, &async));
  if (async == ncclSuccess || async == ncclInProgress) return;
  ncclCommAbort(comm);
  abort_all(str(what, " failed asynchronously: ", ncclGetErrorString(async), " (", ncclGetLastError(comm),
                "): aborting every rank"));
}

class NcclWork final : public Work::Impl {
 public:
  NcclWork(cudaEvent_t ev, std::vector<Tensor> keep, ncclComm_t comm, double timeout_s, std::string what)
      : ev_(ev), keep_(std::move(keep)), comm_(comm), timeout_s_(timeout_s), what_(std::move(what)) {}
  ~NcclWork() override {
    try {
      wait();
    } catch (...) {
    }
    cudaEventDestroy(ev_);
  }
  // Not cudaEventSynchronize: that would wait forever for a peer that never comes. Poll the event,
  // NCCL's error state and the deadline instead.
  void wait() override {
    if (done_) return;
    detail::PollBackoff backoff;
    while (!test()) {
      if (timeout_s_ > 0 && backoff.elapsed() > timeout_s_) {
        ncclCommAbort(comm_);  // frees the GPU from the stuck kernel before the process ends
        detail::comm_timeout_abort(what_, timeout_s_);
      }
      backoff.pause();
    }
  }
  bool test() override {
    if (done_) return true;
    cudaError_t e = cudaEventQuery(ev_);
    if (e == cudaErrorNotReady) {
      check_nccl_async(comm_, what_);
      return false;
    }
    SGPT_CUDA_CHECK(e);
    done_ = true;
    keep_.clear();
    return true;
  }

 private:
  cudaEvent_t ev_;
  std::vector<Tensor> keep_;
  ncclComm_t comm_;
  double timeout_s_;
  std::string what_;
  bool done_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of `mpi` (a communicator of the same ranks, used to bootstrap and check).
  NcclCommunicator(MPI_Comm mpi, const std::string& name) : Communicator(mpi_rank(mpi), mpi_size(mpi), name), mpi_(mpi) {
    SGPT_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
    ncclUniqueId id;
    if (rank() == 0) SGPT_NCCL_CHECK(ncclGetUniqueId(&id));
    // Timed: ncclCommInitRank waits for every rank with no deadline, so make sure they all got
    // here (the broadcast of the id does that) before calling it.
    MPI_Request req;
    SGPT_MPI_CHECK(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, mpi_, &req));
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(),
                                        str("NCCL set-up of group '", name, "' (broadcast of the unique id)")));
    SGPT_CUDA_CHECK(cudaGetDevice(&device_));
    SGPT_NCCL_CHECK(ncclCommInitRank(&nccl_, size(), id, rank()));
    SGPT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    SGPT_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    if (nccl_) ncclCommDestroy(nccl_);
    if (stream_) cudaStreamDestroy(stream_);
    if (ready_) cudaEventDestroy(ready_);
    if (detail::mpi_active()) MPI_Comm_free(&mpi_);
  }

  Backend backend() const override { return Backend::NCCL; }
  Device preferred_device() const override { return Device::CUDA; }

 protected:
  void check_tensor(const Tensor& t, const char* what) const override {
    Communicator::check_tensor(t, what);
    SGPT_CHECK(t.device() == Device::CUDA, "group '", name(), "': ", what,
               " is on the CPU; the NCCL backend moves CUDA tensors (use the MPI backend for host buffers)");
  }

  std::vector<CallSignature> exchange_signatures(const CallSignature& mine) override {
    std::vector<CallSignature> all(size());
    const int bytes = static_cast<int>(sizeof(CallSignature));
    MPI_Request req;
    SGPT_MPI_CHECK(MPI_Iallgather(&mine, bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, mpi_, &req));
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(),
                                        str("NCCL call check of ", op_name(static_cast<OpKind>(mine.kind)),
                                            " on group '", name(), "' (collective #", mine.seq, ")")));
    return all;
  }

  Work start_barrier() override {
    // Everything queued before the barrier must be done, on every rank.
    SGPT_CUDA_CHECK(cudaDeviceSynchronize());
    MPI_Request req;
    SGPT_MPI_CHECK(MPI_Ibarrier(mpi_, &req));
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(), "NCCL " + describe_call("barrier")));
    return Work();
  }

  Work start_broadcast(Tensor& t, int root) override {
    begin();
    SGPT_NCCL_CHECK(ncclBroadcast(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), root, nccl_, stream_));
    return end("broadcast", {t});
  }

  Work start_all_reduce(Tensor& t, ReduceOp op) override {
    begin();
    SGPT_NCCL_CHECK(ncclAllReduce(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), nccl_op(op), nccl_, stream_));
    return end("all_reduce", {t});
  }

  Work start_reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) override {
    begin();
    int64_t n = in.numel();
    int p = size();
    ncclDataType_t dt = nccl_type(in.dtype());
    std::size_t es = dtype_size(in.dtype());
    if (n % p == 0) {
      SGPT_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), n / p, dt, nccl_op(op), nccl_, stream_));
    } else {
      const char* src = static_cast<const char*>(in.raw());
      SGPT_NCCL_CHECK(ncclGroupStart());
      for (int r = 0; r < p; ++r) {
        ShardRange s = shard_range(n, p, r);
        void* recv = r == rank() ? out.raw() : nullptr;
        SGPT_NCCL_CHECK(ncclReduce(src + s.begin * es, recv, s.count, dt, nccl_op(op), r, nccl_, stream_));
      }
      SGPT_NCCL_CHECK(ncclGroupEnd());
    }
    return end("reduce_scatter", {out, in});
  }

  Work start_all_gather(Tensor& out, const Tensor& in) override {
    begin();
    int64_t n = out.numel();
    int p = size();
    ncclDataType_t dt = nccl_type(out.dtype());
    std::size_t es = dtype_size(out.dtype());
    if (n % p == 0) {
      SGPT_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), n / p, dt, nccl_, stream_));
    } else {
      char* dst = static_cast<char*>(out.raw());
      SGPT_NCCL_CHECK(ncclGroupStart());
      for (int r = 0; r < p; ++r) {
        ShardRange s = shard_range(n, p, r);
        const void* send = r == rank() ? in.raw() : nullptr;
        SGPT_NCCL_CHECK(ncclBroadcast(send, dst + s.begin * es, s.count, dt, r, nccl_, stream_));
      }
      SGPT_NCCL_CHECK(ncclGroupEnd());
    }
    return end("all_gather", {out, in});
  }

  Work start_send(const Tensor& t, int dst, int tag) override {
    SGPT_CHECK(tag == 0, "NCCL backend: send/recv have no tags (got tag ", tag, "); messages match in order");
    begin();
    SGPT_NCCL_CHECK(ncclSend(t.raw(), t.numel(), nccl_type(t.dtype()), dst, nccl_, stream_));
    return end("send", {t});
  }

  Work start_recv(Tensor& t, int src, int tag) override {
    SGPT_CHECK(tag == 0, "NCCL backend: send/recv have no tags (got tag ", tag, "); messages match in order");
    begin();
    SGPT_NCCL_CHECK(ncclRecv(t.raw(), t.numel(), nccl_type(t.dtype()), src, nccl_, stream_));
    return end("recv", {t});
  }

  Work start_send_recv(const Tensor& out, int dst, Tensor& in, int src, int tag) override {
    SGPT_CHECK(tag == 0, "NCCL backend: send/recv have no tags (got tag ", tag, "); messages match in order");
    begin();
    SGPT_NCCL_CHECK(ncclGroupStart());
    SGPT_NCCL_CHECK(ncclSend(out.raw(), out.numel(), nccl_type(out.dtype()), dst, nccl_, stream_));
    SGPT_NCCL_CHECK(ncclRecv(in.raw(), in.numel(), nccl_type(in.dtype()), src, nccl_, stream_));
    SGPT_NCCL_CHECK(ncclGroupEnd());
    return end("send_recv", {out, in});
  }

  std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) override {
    MPI_Request req;  // MPI_Comm_split has no deadline: a timed barrier first
    SGPT_MPI_CHECK(MPI_Ibarrier(mpi_, &req));
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(), "NCCL " + describe_call("split")));
    MPI_Comm sub = MPI_COMM_NULL;
    SGPT_MPI_CHECK(MPI_Comm_split(mpi_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    return std::make_shared<NcclCommunicator>(sub, name);
  }

 private:
  static int mpi_rank(MPI_Comm c) {
    int r = 0;
    MPI_Comm_rank(c, &r);
    return r;
  }
  static int mpi_size(MPI_Comm c) {
    int n = 0;
    MPI_Comm_size(c, &n);
    return n;
  }
  // Orders the communication after the kernels already queued on the default stream.
  void begin() {
    SGPT_CUDA_CHECK(cudaEventRecord(ready_, cudaStreamLegacy));
    SGPT_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }
  Work end(const char* op, std::vector<Tensor> keep) {
    cudaEvent_t ev;
    SGPT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    SGPT_CUDA_CHECK(cudaEventRecord(ev, stream_));
    return Work(std::make_shared<NcclWork>(ev, std::move(keep), nccl_, timeout(), "NCCL " + describe_call(op)));
  }

  MPI_Comm mpi_;
  ncclComm_t nccl_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  int device_ = 0;
};

}  // namespace

namespace detail {

std::shared_ptr<Communicator> make_nccl_world() {
  int ndev = 0;
  SGPT_CUDA_CHECK(cudaGetDeviceCount(&ndev));
  SGPT_CHECK(ndev > 0, "NCCL backend: no GPU visible");
  LaunchInfo info = detect_launch();
  SGPT_CUDA_CHECK(cudaSetDevice(info.local_rank % ndev));
  MPI_Comm world = MPI_COMM_NULL;
  SGPT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  return std::make_shared<NcclCommunicator>(world, "world");
}

}  // namespace detail

}  // namespace sgpt

#endif  // SGPT_WITH_NCCL && SGPT_WITH_MPI
