// The MPI backend: ranks are processes; every call maps onto MPI's non-blocking operations
// (MPI_Iallreduce, MPI_Ireduce_scatter with per-rank counts, MPI_Iallgatherv, MPI_Ibcast,
// MPI_Isend/Irecv, MPI_Ibarrier), and a blocking call is the same followed by a wait.
//
// Device (CUDA) tensors are staged through pinned host buffers unless SGPT_MPI_CUDA_AWARE=1 says
// the MPI library takes device pointers. Every communicator owns a duplicate of its MPI
// communicator with MPI_ERRORS_RETURN set (so failures become sgpt::Error), plus a second
// duplicate reserved for the call check, so the check can never match the user's traffic.

#if SGPT_WITH_MPI

// Only MPI's C API is used; skip the deprecated C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdlib>
#include <cstring>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"

#if SGPT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sgpt {

namespace {

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT;
    case DType::BF16: return MPI_UINT16_T;  // moved as 16-bit patterns; summed by bf16_sum_op()
    default: SGPT_FAIL("MPI backend: no MPI datatype for ", dtype_name(d));
  }
}

// MPI has no bf16 type, so a bf16 reduction is a user-defined op over 16-bit patterns: each
// combine widens both operands to f32, adds, and rounds to nearest even once. A sum of d ranks is
// thus rounded d - 1 times, in the order MPI's algorithm combines the ranks: unlike an f32 sum of
// exactly representable values, the result depends on that order (see communicator.hpp).
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  detail::bf16_accumulate(static_cast<bf16_t*>(inout), static_cast<const bf16_t*>(in), *len);
}

// The reduction op for a dtype: MPI_SUM, or the bf16 op above (created once, after MPI_Init;
// commutative: round(a + b) == round(b + a), so MPI may pair ranks in any order).
MPI_Op mpi_sum_op(DType d) {
  if (d != DType::BF16) return MPI_SUM;
  static MPI_Op op = [] {
    MPI_Op o = MPI_OP_NULL;
    SGPT_MPI_CHECK(MPI_Op_create(&bf16_sum, 1, &o));
    return o;
  }();
  return op;
}

int mpi_count(int64_t n) {
  SGPT_CHECK(n >= 0 && n <= 2147483647LL, "MPI backend: ", n, " elements exceed MPI's int count");
  return static_cast<int>(n);
}

bool cuda_aware_mpi() {
  static const bool aware = detail::env_or("SGPT_MPI_CUDA_AWARE", "0") == "1";
  return aware;
}

// A host buffer for one tensor of one operation: the tensor's own memory when it is on the CPU
// (or MPI is CUDA-aware), else a pinned staging copy that is written back after completion.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(const Tensor& t, bool copy_in) : t_(t) {
    if (t.device() == Device::CPU || cuda_aware_mpi()) {
      ptr_ = t.raw();
      return;
    }
#if SGPT_WITH_CUDA
    bytes_ = t.nbytes();
    SGPT_CUDA_CHECK(cudaMallocHost(&ptr_, std::max<std::size_t>(bytes_, 1)));
    staged_ = true;
    MemoryTracker::instance().on_alloc(Device::CPU, MemCategory::Communication, bytes_);
    if (copy_in) SGPT_CUDA_CHECK(cudaMemcpy(ptr_, t.raw(), bytes_, cudaMemcpyDeviceToHost));
#else
    SGPT_FAIL("MPI backend: a CUDA tensor in a build without CUDA");
#endif
  }
  ~HostBuffer() {
#if SGPT_WITH_CUDA
    if (staged_) {
      cudaFreeHost(ptr_);
      MemoryTracker::instance().on_free(Device::CPU, MemCategory::Communication, bytes_);
    }
#endif
  }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  void* ptr() const { return ptr_; }
  /// Copies a staged buffer back into the device tensor.
  void copy_out() {
#if SGPT_WITH_CUDA
    if (staged_) SGPT_CUDA_CHECK(cudaMemcpy(t_.raw(), ptr_, bytes_, cudaMemcpyHostToDevice));
#endif
  }

 private:
  Tensor t_;
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
  bool staged_ = false;
};

bool overlaps(const void* a, std::size_t an, const void* b, std::size_t bn) {
  auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return an > 0 && bn > 0 && pa < pb + bn && pb < pa + an;
}

// Requests of one operation, the buffers they use, and what to do once they complete.
class MpiWork final : public Work::Impl {
 public:
  std::vector<MPI_Request> reqs;
  std::vector<std::unique_ptr<HostBuffer>> buffers;
  std::vector<int> counts, displs;   // must outlive the requests
  std::vector<char> scratch;         // temporary input or output
  std::function<void(const std::vector<MPI_Status>&)> after;
  std::string what;
  double timeout_s = 0;  // the communicator's timeout when the operation started

  ~MpiWork() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (finished_) return;
    std::vector<MPI_Status> st(reqs.size());
    int rc = reqs.empty() ? MPI_SUCCESS
                          : detail::mpi_wait_all(static_cast<int>(reqs.size()), reqs.data(), st.data(), timeout_s, what);
    complete(rc, st);
  }
  bool test() override {
    if (finished_) return true;
    int flag = 0;
    std::vector<MPI_Status> st(reqs.size());
    int rc = reqs.empty() ? MPI_SUCCESS : MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, st.data());
    if (reqs.empty()) flag = 1;
    if (rc == MPI_SUCCESS && !flag) return false;
    complete(rc, st);
    return true;
  }

 private:
  void complete(int rc, const std::vector<MPI_Status>& st) {
    finished_ = true;
    if (rc == MPI_ERR_IN_STATUS) {
      for (const auto& s : st)
        if (s.MPI_ERROR != MPI_SUCCESS) SGPT_FAIL(what, " failed: ", mpi_error_string(s.MPI_ERROR));
    }
    SGPT_CHECK(rc == MPI_SUCCESS, what, " failed: ", mpi_error_string(rc));
    if (after) after(st);
    buffers.clear();
  }
  bool finished_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, int rank, int size, const std::string& name)
      : Communicator(rank, size, name), comm_(comm) {
    SGPT_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    SGPT_MPI_CHECK(MPI_Comm_dup(comm_, &check_comm_));
    SGPT_MPI_CHECK(MPI_Comm_set_errhandler(check_comm_, MPI_ERRORS_RETURN));
  }
  ~MpiCommunicator() override {
    if (detail::mpi_active()) {
      MPI_Comm_free(&check_comm_);
      MPI_Comm_free(&comm_);
    }
  }

  Backend backend() const override { return Backend::MPI; }

 protected:
  void check_tensor(const Tensor& t, const char* what) const override {
    Communicator::check_tensor(t, what);
#if !SGPT_WITH_CUDA
    SGPT_CHECK(t.device() == Device::CPU, "group '", name(), "': ", what, " is on the GPU in a build without CUDA");
#endif
  }

  std::vector<CallSignature> exchange_signatures(const CallSignature& mine) override {
    std::vector<CallSignature> all(size());
    const int bytes = static_cast<int>(sizeof(CallSignature));
    // Non-blocking and timed: the check is where a stalled rank is usually noticed first.
    MPI_Request req;
    SGPT_MPI_CHECK(MPI_Iallgather(&mine, bytes, MPI_BYTE, all.data(), bytes, MPI_BYTE, check_comm_, &req));
    const std::string what = str("MPI call check of ", op_name(static_cast<OpKind>(mine.kind)), " on group '", name(),
                                 "' (collective #", mine.seq, ")");
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(), what));
    return all;
  }

  Work start_barrier() override {
    auto w = make_work("barrier");
    w->reqs.resize(1);
    SGPT_MPI_CHECK(MPI_Ibarrier(comm_, &w->reqs[0]));
    return Work(w);
  }

  Work start_broadcast(Tensor& t, int root) override {
    auto w = make_work("broadcast");
    auto& buf = add_buffer(*w, t, rank() == root);
    w->reqs.resize(1);
    SGPT_MPI_CHECK(MPI_Ibcast(buf.ptr(), mpi_count(t.numel()), mpi_type(t.dtype()), root, comm_, &w->reqs[0]));
    HostBuffer* b = &buf;
    w->after = [b](const std::vector<MPI_Status>&) { b->copy_out(); };
    return Work(w);
  }

  Work start_all_reduce(Tensor& t, ReduceOp op) override {
    auto w = make_work("all_reduce");
    auto& buf = add_buffer(*w, t, true);
    w->reqs.resize(1);
    SGPT_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf.ptr(), mpi_count(t.numel()), mpi_type(t.dtype()),
                                  mpi_sum_op(t.dtype()), comm_,
                                  &w->reqs[0]));
    HostBuffer* b = &buf;
    DType dt = t.dtype();
    int64_t n = t.numel();
    int p = size();
    w->after = [=](const std::vector<MPI_Status>&) {
      if (op == ReduceOp::Avg) detail::host_divide(b->ptr(), dt, n, p);
      b->copy_out();
    };
    return Work(w);
  }

  Work start_reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) override {
    auto w = make_work("reduce_scatter");
    auto& ib = add_buffer(*w, in, true);
    auto& ob = add_buffer(*w, out, false);
    int64_t n = in.numel();
    for (int r = 0; r < size(); ++r) w->counts.push_back(mpi_count(shard_range(n, size(), r).count));
    std::size_t out_bytes = out.nbytes();
    // MPI forbids the output overlapping the input; receive into scratch then (e.g. the output is
    // the view of the input at this rank's shard, as ZeRO does).
    bool alias = overlaps(ib.ptr(), in.nbytes(), ob.ptr(), out_bytes);
    void* recv = ob.ptr();
    if (alias) {
      w->scratch.resize(std::max<std::size_t>(out_bytes, 1));
      recv = w->scratch.data();
    }
    w->reqs.resize(1);
    SGPT_MPI_CHECK(MPI_Ireduce_scatter(ib.ptr(), recv, w->counts.data(), mpi_type(in.dtype()),
                                       mpi_sum_op(in.dtype()), comm_, &w->reqs[0]));
    HostBuffer* o = &ob;
    DType dt = in.dtype();
    int64_t cnt = out.numel();
    int p = size();
    MpiWork* self = w.get();
    w->after = [=](const std::vector<MPI_Status>&) {
      if (alias && out_bytes) std::memcpy(o->ptr(), self->scratch.data(), out_bytes);
      if (op == ReduceOp::Avg) detail::host_divide(o->ptr(), dt, cnt, p);
      o->copy_out();
    };
    return Work(w);
  }

  Work start_all_gather(Tensor& out, const Tensor& in) override {
    auto w = make_work("all_gather");
    auto& ib = add_buffer(*w, in, true);
    auto& ob = add_buffer(*w, out, false);
    int64_t n = out.numel();
    std::size_t es = dtype_size(out.dtype());
    for (int r = 0; r < size(); ++r) {
      ShardRange s = shard_range(n, size(), r);
      w->counts.push_back(mpi_count(s.count));
      w->displs.push_back(mpi_count(s.begin));
    }
    ShardRange mine = shard_range(n, size(), rank());
    const void* send = ib.ptr();
    char* own_slot = static_cast<char*>(ob.ptr()) + mine.begin * es;
    if (send == own_slot) {
      send = MPI_IN_PLACE;  // the input already sits at its place in the output
    } else if (overlaps(send, in.nbytes(), ob.ptr(), out.nbytes())) {
      w->scratch.assign(static_cast<const char*>(send), static_cast<const char*>(send) + in.nbytes());
      send = w->scratch.data();
    }
    w->reqs.resize(1);
    MPI_Datatype dt = mpi_type(out.dtype());
    SGPT_MPI_CHECK(MPI_Iallgatherv(send, mpi_count(in.numel()), dt, ob.ptr(), w->counts.data(), w->displs.data(), dt,
                                   comm_, &w->reqs[0]));
    HostBuffer* o = &ob;
    w->after = [o](const std::vector<MPI_Status>&) { o->copy_out(); };
    return Work(w);
  }

  Work start_send(const Tensor& t, int dst, int tag) override {
    auto w = make_work(str("send to rank ", dst, " tag ", tag));
    auto& buf = add_buffer(*w, t, true);
    w->reqs.resize(1);
    // SGPT_SYNC_SEND=1: synchronous mode (completes once the matching receive has started), the
    // semantics of NCCL's send, so an order that relies on buffered sends deadlocks here too.
    const char* sync_env = std::getenv("SGPT_SYNC_SEND");
    const bool sync = sync_env && std::string(sync_env) != "0";
    SGPT_MPI_CHECK((sync ? MPI_Issend : MPI_Isend)(buf.ptr(), mpi_count(t.numel()), mpi_type(t.dtype()), dst, tag,
                                                  comm_, &w->reqs[0]));
    return Work(w);
  }

  Work start_recv(Tensor& t, int src, int tag) override {
    auto w = make_work(str("recv from rank ", src, " tag ", tag));
    auto& buf = add_buffer(*w, t, false);
    w->reqs.resize(1);
    MPI_Datatype dt = mpi_type(t.dtype());
    int want = mpi_count(t.numel());
    SGPT_MPI_CHECK(MPI_Irecv(buf.ptr(), want, dt, src, tag, comm_, &w->reqs[0]));
    HostBuffer* b = &buf;
    std::string what = w->what;
    w->after = [=](const std::vector<MPI_Status>& st) {
      int got = 0;
      MPI_Status s = st[0];
      MPI_Get_count(&s, dt, &got);
      SGPT_CHECK(got == want, what, ": expected ", want, " elements but the matching send had ", got);
      b->copy_out();
    };
    return Work(w);
  }

  std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) override {
    // MPI_Comm_split blocks with no deadline; a timed barrier first makes sure every rank is here.
    MPI_Request req;
    SGPT_MPI_CHECK(MPI_Ibarrier(check_comm_, &req));
    SGPT_MPI_CHECK(detail::mpi_wait_all(1, &req, MPI_STATUS_IGNORE, timeout(), "MPI " + describe_call("split")));
    MPI_Comm sub = MPI_COMM_NULL;
    SGPT_MPI_CHECK(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    int r = 0, n = 0;
    MPI_Comm_rank(sub, &r);
    MPI_Comm_size(sub, &n);
    return std::make_shared<MpiCommunicator>(sub, r, n, name);
  }

 private:
  std::shared_ptr<MpiWork> make_work(const std::string& what) {
    auto w = std::make_shared<MpiWork>();
    w->what = "MPI " + describe_call(what.c_str());
    w->timeout_s = timeout();
    return w;
  }
  static HostBuffer& add_buffer(MpiWork& w, const Tensor& t, bool copy_in) {
    w.buffers.push_back(std::make_unique<HostBuffer>(t, copy_in));
    return *w.buffers.back();
  }

  MPI_Comm comm_;
  MPI_Comm check_comm_ = MPI_COMM_NULL;
};

void finalize_at_exit() { finalize_distributed(); }

}  // namespace

namespace detail {

int mpi_wait_all(int n, MPI_Request* reqs, MPI_Status* statuses, double timeout_s, const std::string& what) {
  if (timeout_s <= 0) return MPI_Waitall(n, reqs, statuses);
  PollBackoff backoff;
  for (;;) {
    int done = 0;
    const int rc = MPI_Testall(n, reqs, &done, statuses);  // also drives MPI's progress
    if (rc != MPI_SUCCESS || done) return rc;
    if (backoff.elapsed() > timeout_s) comm_timeout_abort(what, timeout_s);
    backoff.pause();
  }
}

bool mpi_active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

void mpi_ensure_init(int* argc, char*** argv) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  SGPT_CHECK(!fin, "MPI was already finalised; communicators cannot be created any more");
  if (init) return;
  int provided = 0;
  SGPT_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  std::atexit(finalize_at_exit);
}

std::shared_ptr<Communicator> make_mpi_world() {
  MPI_Comm world = MPI_COMM_NULL;
  SGPT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world));
  int r = 0, n = 0;
  MPI_Comm_rank(world, &r);
  MPI_Comm_size(world, &n);
  return std::make_shared<MpiCommunicator>(world, r, n, "world");
}

}  // namespace detail

}  // namespace sgpt

#endif  // SGPT_WITH_MPI
