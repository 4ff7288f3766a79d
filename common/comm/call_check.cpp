// The call check: before each collective, the ranks of a group exchange the call's signature
// (kind, dtype, count, root, reduce op, shard, sequence number), so that mismatched calls fail on
// every rank with a message naming each rank's call instead of hanging or corrupting data.

#include <string>
#include <vector>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"

namespace sgpt {

namespace detail {

bool default_call_checks(Backend b) {
  std::string v = detail::env_or("SGPT_COMM_CHECK", "");
  if (v == "0" || v == "off") return false;
  if (v == "1" || v == "on") return true;
  return b != Backend::NCCL;
}

}  // namespace detail

void Communicator::check_tensor(const Tensor& t, const char* what) const {
  SGPT_CHECK(t.defined(), "group '", name_, "': ", what, " is an undefined tensor");
  DType d = t.dtype();
  SGPT_CHECK(d == DType::F32 || d == DType::F64 || d == DType::I32 || d == DType::BF16, "group '", name_, "': ", what,
             " has dtype ", dtype_name(d), "; communication supports f32, f64, i32 and bf16");
}

void Communicator::check_call(OpKind kind, const Tensor* t, int64_t count, int root, int op, int64_t part) {
  CallSignature mine;
  mine.kind = static_cast<int32_t>(kind);
  mine.dtype = t && t->defined() ? static_cast<int32_t>(t->dtype()) : -1;
  mine.root = root;
  mine.op = op;
  mine.count = count;
  mine.seq = seq_++;
  mine.part = part;
  if (!call_checks_ || size_ == 1) return;
  std::vector<CallSignature> all = exchange_signatures(mine);
  auto describe = [](const CallSignature& s) {
    std::string d = op_name(static_cast<OpKind>(s.kind));
    if (s.dtype >= 0) d += str(" ", dtype_name(static_cast<DType>(s.dtype)), " x ", s.count);
    if (s.root >= 0) d += str(" root ", s.root);
    if (s.op >= 0) d += str(" ", reduce_op_name(static_cast<ReduceOp>(s.op)));
    if (s.part >= 0) d += str(" shard ", s.part);
    return d + str(" (call #", s.seq, ")");
  };
  bool same = true;
  for (const auto& s : all) {
    same = same && s.kind == all[0].kind && s.dtype == all[0].dtype && s.root == all[0].root && s.op == all[0].op &&
           s.count == all[0].count && s.seq == all[0].seq;
  }
  // Sharded calls: every rank's shard must be the one shard_range gives it.
  for (std::size_t r = 0; r < all.size() && same; ++r) {
    if (all[r].part >= 0 && all[r].count >= 0)
      same = all[r].part == shard_range(all[r].count, size_, static_cast<int>(r)).count;
  }
  if (!same) {
    std::string msg = str("mismatched collective calls on group '", name_, "' of ", size_, " ranks:");
    for (std::size_t r = 0; r < all.size(); ++r) msg += str(" rank ", r, ": ", describe(all[r]), ";");
    SGPT_FAIL(msg);
  }
}

}  // namespace sgpt
