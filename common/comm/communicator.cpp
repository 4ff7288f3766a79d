// The backend-independent half of Communicator: names, the sharding rule, accounting, tracing and
// the collectives' front doors. The call check is in call_check.cpp, the backends' shared helpers
// in backends.cpp, and the world (launch detection, init, abort) in world.cpp.

#include "comm/communicator.hpp"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>

#include "comm/backends.hpp"
#include "core/trace.hpp"

namespace sgpt {

// ---- names --------------------------------------------------------------------------------------

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::Auto: return "auto";
    case Backend::MPI: return "mpi";
    case Backend::NCCL: return "nccl";
    case Backend::Threads: return "threads";
  }
  return "?";
}

Backend parse_backend(const std::string& name) {
  if (name == "auto") return Backend::Auto;
  if (name == "mpi") return Backend::MPI;
  if (name == "nccl") return Backend::NCCL;
  if (name == "threads") return Backend::Threads;
  SGPT_FAIL("unknown communication backend '", name, "' (expected mpi, nccl, threads or auto)");
}

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::Barrier: return "barrier";
    case OpKind::Broadcast: return "broadcast";
    case OpKind::AllReduce: return "all_reduce";
    case OpKind::ReduceScatter: return "reduce_scatter";
    case OpKind::AllGather: return "all_gather";
    case OpKind::Send: return "send";
    case OpKind::Recv: return "recv";
    case OpKind::Split: return "split";
    case OpKind::Count: break;
  }
  return "?";
}

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "avg"; }

// ---- sharding and accounting --------------------------------------------------------------------

ShardRange shard_range(int64_t n, int world, int rank) {
  SGPT_CHECK(world >= 1, "shard_range: world size must be at least 1, got ", world);
  SGPT_CHECK(rank >= 0 && rank < world, "shard_range: rank ", rank, " outside [0, ", world, ")");
  SGPT_CHECK(n >= 0, "shard_range: negative element count ", n);
  int64_t base = n / world;
  int64_t extra = n % world;
  ShardRange s;
  s.count = base + (rank < extra ? 1 : 0);
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  return s;
}

double bus_bytes(OpKind kind, double payload, int world) {
  double p = world;
  switch (kind) {
    case OpKind::AllReduce: return payload * 2.0 * (p - 1) / p;
    case OpKind::ReduceScatter:
    case OpKind::AllGather: return payload * (p - 1) / p;
    default: return payload;
  }
}

OpStats CommStats::total() const {
  OpStats t;
  for (const auto& s : ops) {
    t.calls += s.calls;
    t.bytes += s.bytes;
  }
  return t;
}

std::string CommStats::report() const {
  std::string out;
  for (int k = 0; k < static_cast<int>(OpKind::Count); ++k) {
    if (ops[k].calls == 0) continue;
    out += str(op_name(static_cast<OpKind>(k)), ": ", ops[k].calls, " calls, ", ops[k].bytes, " bytes\n");
  }
  return out;
}

// ---- Work ---------------------------------------------------------------------------------------

void Work::wait() {
  if (impl_) impl_->wait();
}

bool Work::test() { return impl_ ? impl_->test() : true; }

namespace {

// Wraps a backend's Work so that its completion is recorded as a trace event (async calls).
class TracedWork final : public Work::Impl {
 public:
  TracedWork(Work inner, TraceRecorder* rec, std::string name, double start, std::map<std::string, std::string> args)
      : inner_(std::move(inner)), rec_(rec), name_(std::move(name)), start_(start), args_(std::move(args)) {}
  void wait() override {
    inner_.wait();
    finish();
  }
  bool test() override {
    if (!inner_.test()) return false;
    finish();
    return true;
  }

 private:
  void finish() {
    if (done_) return;
    done_ = true;
    rec_->add(name_, TraceCategory::Comm, start_, rec_->now_us() - start_, args_, 1);
  }
  Work inner_;
  TraceRecorder* rec_;
  std::string name_;
  double start_;
  std::map<std::string, std::string> args_;
  bool done_ = false;
};


}  // namespace

// ---- Communicator -------------------------------------------------------------------------------

double default_comm_timeout() {
  const std::string v = detail::env_or("SGPT_COMM_TIMEOUT", "");
  if (v.empty()) return 300;
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  SGPT_CHECK(end && *end == '\0' && std::isfinite(s) && s >= 0, "SGPT_COMM_TIMEOUT='", v,
             "' is not a number of seconds >= 0");
  return s;
}

Communicator::Communicator(int rank, int size, std::string name) : rank_(rank), size_(size), name_(std::move(name)) {
  SGPT_CHECK(size >= 1 && rank >= 0 && rank < size, "bad communicator rank ", rank, " of ", size);
  call_checks_ = detail::default_call_checks(Backend::Auto);
  timeout_s_ = default_comm_timeout();
}

void Communicator::set_timeout(double seconds) {
  SGPT_CHECK(std::isfinite(seconds) && seconds >= 0, "communication timeout must be a number of seconds >= 0, got ",
             seconds);
  timeout_s_ = seconds;
}

std::string Communicator::describe_call(const char* op) const {
  return str(op, " on group '", name_, "' (call #", stats_.total().calls, ")");
}

Communicator::~Communicator() = default;

Work Communicator::issue(OpKind kind, int64_t payload_bytes, bool async, const std::function<Work()>& start) {
  OpStats& s = stats_[kind];
  s.calls += 1;
  s.bytes += payload_bytes;
  TraceRecorder& rec = TraceRecorder::current();
  if (!rec.enabled()) {
    Work w = start();
    if (!async) w.wait();
    return w;
  }
  std::map<std::string, std::string> args{{"group", name_}, {"bytes", std::to_string(payload_bytes)}};
  double t0 = rec.now_us();
  Work w = start();
  if (!async) {
    w.wait();
    rec.add(op_name(kind), TraceCategory::Comm, t0, rec.now_us() - t0, std::move(args), 0);
    return w;
  }
  return Work(std::make_shared<TracedWork>(std::move(w), &rec, str(op_name(kind), "_async"), t0, std::move(args)));
}

void Communicator::barrier() {
  check_call(OpKind::Barrier, nullptr, 0, -1, -1);
  issue(OpKind::Barrier, 0, false, [&] { return start_barrier(); });
}

Work Communicator::broadcast_async(Tensor& t, int root) {
  check_call(OpKind::Broadcast, &t, t.defined() ? t.numel() : -1, root, -1);
  check_tensor(t, "broadcast tensor");
  SGPT_CHECK(root >= 0 && root < size_, "broadcast root ", root, " is not a rank of group '", name_, "' (size ",
             size_, ")");
  return issue(OpKind::Broadcast, t.nbytes(), !sync_call_, [&] { return start_broadcast(t, root); });
}

Work Communicator::all_reduce_async(Tensor& t, ReduceOp op) {
  check_call(OpKind::AllReduce, &t, t.defined() ? t.numel() : -1, -1, static_cast<int>(op));
  check_tensor(t, "all_reduce tensor");
  SGPT_CHECK(op != ReduceOp::Avg || t.dtype() != DType::I32, "all_reduce: Avg needs a floating-point tensor, got i32");
  return issue(OpKind::AllReduce, t.nbytes(), !sync_call_, [&] { return start_all_reduce(t, op); });
}

Work Communicator::reduce_scatter_async(Tensor& out, const Tensor& in, ReduceOp op) {
  check_call(OpKind::ReduceScatter, &in, in.defined() ? in.numel() : -1, -1, static_cast<int>(op),
             out.defined() ? out.numel() : -1);
  check_tensor(in, "reduce_scatter input");
  check_tensor(out, "reduce_scatter output");
  SGPT_CHECK(in.dtype() == out.dtype(), "reduce_scatter: input is ", dtype_name(in.dtype()), " but output is ",
             dtype_name(out.dtype()));
  SGPT_CHECK(in.device() == out.device(), "reduce_scatter: input and output live on different devices");
  SGPT_CHECK(op != ReduceOp::Avg || in.dtype() != DType::I32, "reduce_scatter: Avg needs a floating-point tensor");
  ShardRange sh = shard_range(in.numel(), size_, rank_);
  SGPT_CHECK(out.numel() == sh.count, "reduce_scatter on group '", name_, "': output has ", out.numel(),
             " elements but rank ", rank_, "'s shard of ", in.numel(), " elements over ", size_, " ranks has ",
             sh.count, " (see shard_range)");
  return issue(OpKind::ReduceScatter, in.nbytes(), !sync_call_, [&] { return start_reduce_scatter(out, in, op); });
}

Work Communicator::all_gather_async(Tensor& out, const Tensor& in) {
  check_call(OpKind::AllGather, &out, out.defined() ? out.numel() : -1, -1, -1, in.defined() ? in.numel() : -1);
  check_tensor(in, "all_gather input");
  check_tensor(out, "all_gather output");
  SGPT_CHECK(in.dtype() == out.dtype(), "all_gather: input is ", dtype_name(in.dtype()), " but output is ",
             dtype_name(out.dtype()));
  SGPT_CHECK(in.device() == out.device(), "all_gather: input and output live on different devices");
  ShardRange sh = shard_range(out.numel(), size_, rank_);
  SGPT_CHECK(in.numel() == sh.count, "all_gather on group '", name_, "': input has ", in.numel(),
             " elements but rank ", rank_, "'s shard of ", out.numel(), " elements over ", size_, " ranks has ",
             sh.count, " (see shard_range)");
  return issue(OpKind::AllGather, out.nbytes(), !sync_call_, [&] { return start_all_gather(out, in); });
}

Work Communicator::send_async(const Tensor& t, int dst, int tag) {
  check_tensor(t, "send tensor");
  SGPT_CHECK(dst >= 0 && dst < size_, "send: destination ", dst, " is not a rank of group '", name_, "' (size ",
             size_, ")");
  SGPT_CHECK(tag >= 0, "send: tags must be non-negative, got ", tag);
  return issue(OpKind::Send, t.nbytes(), !sync_call_, [&] { return start_send(t, dst, tag); });
}

Work Communicator::recv_async(Tensor& t, int src, int tag) {
  check_tensor(t, "recv tensor");
  SGPT_CHECK(src >= 0 && src < size_, "recv: source ", src, " is not a rank of group '", name_, "' (size ", size_,
             ")");
  SGPT_CHECK(tag >= 0, "recv: tags must be non-negative, got ", tag);
  return issue(OpKind::Recv, t.nbytes(), !sync_call_, [&] { return start_recv(t, src, tag); });
}

// A blocking call is its async form, issued with sync_call_ set so that issue() waits and traces it
// as a blocking call.
namespace {
struct SyncCall {
  explicit SyncCall(bool& flag) : flag_(flag) { flag_ = true; }
  ~SyncCall() { flag_ = false; }
  bool& flag_;
};
}  // namespace

namespace {
// Two operations that complete together.
class PairWork final : public Work::Impl {
 public:
  PairWork(Work a, Work b) : a_(std::move(a)), b_(std::move(b)) {}
  void wait() override {
    a_.wait();
    b_.wait();
  }
  bool test() override {
    bool a = a_.test();
    bool b = b_.test();
    return a && b;
  }

 private:
  Work a_, b_;
};
}  // namespace

Work Communicator::start_send_recv(const Tensor& out, int dst, Tensor& in, int src, int tag) {
  Work r = start_recv(in, src, tag);
  Work s = start_send(out, dst, tag);
  return Work(std::make_shared<PairWork>(std::move(s), std::move(r)));
}

Work Communicator::send_recv_async(const Tensor& out, int dst, Tensor& in, int src, int tag) {
  check_tensor(out, "send_recv output");
  check_tensor(in, "send_recv input");
  SGPT_CHECK(dst >= 0 && dst < size_, "send_recv: destination ", dst, " is not a rank of group '", name_, "' (size ",
             size_, ")");
  SGPT_CHECK(src >= 0 && src < size_, "send_recv: source ", src, " is not a rank of group '", name_, "' (size ",
             size_, ")");
  SGPT_CHECK(tag >= 0, "send_recv: tags must be non-negative, got ", tag);
  stats_[OpKind::Recv].calls += 1;
  stats_[OpKind::Recv].bytes += in.nbytes();
  return issue(OpKind::Send, out.nbytes(), !sync_call_, [&] { return start_send_recv(out, dst, in, src, tag); });
}

void Communicator::send_recv(const Tensor& out, int dst, Tensor& in, int src, int tag) {
  SyncCall s(sync_call_);
  send_recv_async(out, dst, in, src, tag);
}

void Communicator::broadcast(Tensor& t, int root) {
  SyncCall s(sync_call_);
  broadcast_async(t, root);
}
void Communicator::all_reduce(Tensor& t, ReduceOp op) {
  SyncCall s(sync_call_);
  all_reduce_async(t, op);
}
void Communicator::reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) {
  SyncCall s(sync_call_);
  reduce_scatter_async(out, in, op);
}
void Communicator::all_gather(Tensor& out, const Tensor& in) {
  SyncCall s(sync_call_);
  all_gather_async(out, in);
}
void Communicator::send(const Tensor& t, int dst, int tag) {
  SyncCall s(sync_call_);
  send_async(t, dst, tag);
}
void Communicator::recv(Tensor& t, int src, int tag) {
  SyncCall s(sync_call_);
  recv_async(t, src, tag);
}

std::shared_ptr<Communicator> Communicator::split(int color, int key, const std::string& name) {
  check_call(OpKind::Split, nullptr, 0, -1, -1);
  stats_[OpKind::Split].calls += 1;
  std::string n = name.empty() ? str(name_, "/", color) : name;
  auto sub = do_split(color, key, n);
  if (sub) sub->call_checks_ = call_checks_, sub->timeout_s_ = timeout_s_;
  return sub;
}

}  // namespace sgpt
