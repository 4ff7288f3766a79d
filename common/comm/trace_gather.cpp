#include "comm/trace_gather.hpp"

#include <cstring>
#include <string>

#include "core/check.hpp"

namespace sgpt {

std::vector<TraceEvent> gather_trace(Communicator& comm, const TraceRecorder& recorder, int root) {
  SGPT_CHECK(root >= 0 && root < comm.size(), "gather_trace: root ", root, " is not a rank of group '",
             comm.name(), "' (size ", comm.size(), ")");
  // The events travel as JSON text packed into an i32 tensor (length first, then the bytes).
  Device dev = comm.preferred_device();
  // NCCL has no tags (messages match in order); MPI gets tags of their own for these messages.
  const bool nccl = comm.backend() == Backend::NCCL;
  const int len_tag = nccl ? 0 : 7001, body_tag = nccl ? 0 : 7002;
  if (comm.rank() != root) {
    std::string text = trace_to_json(recorder.events());
    int64_t words = (static_cast<int64_t>(text.size()) + 3) / 4;
    Tensor len = Tensor::from(std::vector<int32_t>{static_cast<int32_t>(text.size())}, {1}).to(dev);
    Tensor body = Tensor::zeros({words}, DType::I32);
    std::memcpy(body.raw(), text.data(), text.size());
    body = body.to(dev);
    comm.send(len, root, len_tag);
    comm.send(body, root, body_tag);
    return {};
  }
  std::vector<TraceEvent> all;
  for (int r = 0; r < comm.size(); ++r) {
    std::vector<TraceEvent> part;
    if (r == root) {
      part = recorder.events();
    } else {
      Tensor len = Tensor::empty({1}, DType::I32, dev);
      comm.recv(len, r, len_tag);
      int64_t bytes = static_cast<int64_t>(len.to_vector()[0]);
      Tensor body = Tensor::empty({(bytes + 3) / 4}, DType::I32, dev);
      comm.recv(body, r, body_tag);
      Tensor host = body.to(Device::CPU);
      part = trace_from_json(std::string(static_cast<const char*>(host.raw()), static_cast<std::size_t>(bytes)));
    }
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

void align_trace_clocks(Communicator& comm, TraceRecorder& recorder) {
  comm.barrier();
  recorder.reset_origin();
}

}  // namespace sgpt
