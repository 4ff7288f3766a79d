// Agreement between ranks: strings gathered over a Communicator (as i32 tensors, the one integer
// type every backend moves), setting hashes compared, and set-up failures shared.

#include "comm/agreement.hpp"

#include <algorithm>

#include "core/checksum.hpp"

namespace sgpt {

std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& text) {
  const int p = comm.size();
  const Device dev = comm.preferred_device();
  Tensor len = Tensor::from(std::vector<int32_t>{static_cast<int32_t>(text.size())}, {1}).to(dev);
  Tensor lens = Tensor::zeros({p}, DType::I32, dev);
  comm.all_gather(lens, len);
  std::vector<double> n = lens.to_vector();
  const int64_t longest = static_cast<int64_t>(*std::max_element(n.begin(), n.end()));
  std::vector<std::string> out(p);
  if (longest == 0) return out;
  // One character per i32, each rank's text padded to the longest.
  std::vector<int32_t> mine(longest, 0);
  for (std::size_t i = 0; i < text.size(); ++i) mine[i] = static_cast<unsigned char>(text[i]);
  Tensor in = Tensor::from(mine, {longest}).to(dev);
  Tensor all = Tensor::zeros({p * longest}, DType::I32, dev);
  comm.all_gather(all, in);
  Tensor host = all.to(Device::CPU);
  const int32_t* c = host.data<int32_t>();
  for (int r = 0; r < p; ++r)
    for (int64_t i = 0; i < static_cast<int64_t>(n[r]); ++i) out[r] += static_cast<char>(c[r * longest + i]);
  return out;
}

void check_same_on_all_ranks(Communicator& comm, const std::vector<Setting>& settings, const std::string& what) {
  std::string hashes;
  for (const Setting& s : settings) {
    Checksum64 h;
    h.update_field(s.name);
    h.update_field(s.value);
    hashes += checksum_hex(h.digest());
  }
  const std::vector<std::string> all = all_gather_strings(comm, hashes);
  std::size_t first = settings.size();  // the first setting whose hash differs on some rank
  for (const std::string& other : all) {
    if (other.size() != hashes.size()) {
      first = 0;  // another number of settings: another program; report from the first one
      break;
    }
    for (std::size_t i = 0; i < first; ++i)
      if (other.compare(16 * i, 16, hashes, 16 * i, 16) != 0) first = i;
  }
  if (first == settings.size()) return;
  // Every rank found the same index (they all hold the same hashes); show each rank's value.
  const std::string name = settings.empty() ? std::string("?") : settings[first].name;
  const std::vector<std::string> values = all_gather_strings(comm, settings.empty() ? "" : settings[first].value);
  std::string msg = str("[rank ", comm.rank(), "] the ranks of group '", comm.name(), "' were started with different ",
                        what, ": ", name, " is");
  for (int r = 0; r < comm.size(); ++r) msg += str(r ? "," : "", " '", values[r], "' on rank ", r);
  throw CollectiveError(msg + str(" (every rank must get the same ", what, ")"));
}

void run_on_all_ranks(Communicator* comm, const std::function<void()>& fn) {
  if (!comm || comm->size() == 1) {
    fn();
    return;
  }
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  }
  const std::vector<std::string> all = all_gather_strings(*comm, error);
  for (int r = 0; r < comm->size(); ++r) {
    if (all[r].empty()) continue;
    if (r == comm->rank()) throw CollectiveError(all[r]);  // this rank's own message, as it was
    throw CollectiveError(str("[rank ", comm->rank(), "] rank ", r, " failed: ", all[r]));
  }
}

}  // namespace sgpt
