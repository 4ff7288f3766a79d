#include "core/safetensors.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "core/checksum.hpp"

static_assert(std::endian::native == std::endian::little,
              "safetensors and token files are little-endian; this host is not");

namespace sgpt {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads exactly `bytes` bytes at `offset`; false on a short read or an error.
bool pread_all(int fd, void* dst, std::size_t bytes, uint64_t offset) {
  auto* p = static_cast<char*>(dst);
  while (bytes > 0) {
    ssize_t got = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    bytes -= static_cast<std::size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace

// ---- atomic writes ------------------------------------------------------------------------------

void write_file_atomic(const std::string& path, const std::function<void(const ByteSink& sink)>& produce) {
  namespace fs = std::filesystem;
  SGPT_CHECK(!path.empty(), "write_file_atomic: empty path");
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  std::error_code ec;
  SGPT_CHECK(fs::is_directory(dir, ec), "cannot write '", path, "': directory '", dir.string(), "' does not exist");

  // A unique temporary name next to the target, so the final rename stays within one filesystem.
  static std::atomic<uint64_t> counter{0};
  std::string tmp = str(path, ".tmp.", ::getpid(), ".", counter++);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  SGPT_CHECK(fd >= 0, "cannot write '", path, "': creating temporary file '", tmp, "' failed: ", errno_text());

  try {
    Fd guard(fd);
    uint64_t written = 0;
    ByteSink sink = [&](const void* data, std::size_t bytes) {
      const char* p = static_cast<const char*>(data);
      while (bytes > 0) {
        ssize_t n = ::write(fd, p, bytes);
        if (n < 0 && errno == EINTR) continue;
        SGPT_CHECK(n > 0, "cannot write '", path, "': write failed after ", written, " bytes: ",
                   n < 0 ? errno_text() : std::string("no progress"));
        p += n;
        bytes -= static_cast<std::size_t>(n);
        written += static_cast<uint64_t>(n);
      }
    };
    produce(sink);
    SGPT_CHECK(::fsync(fd) == 0, "cannot write '", path, "': fsync failed: ", errno_text());
    guard.fd = -1;
    SGPT_CHECK(::close(fd) == 0, "cannot write '", path, "': close failed: ", errno_text());
    SGPT_CHECK(::rename(tmp.c_str(), path.c_str()) == 0, "cannot write '", path, "': rename from '", tmp,
               "' failed: ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable. A failure here leaves the new file in place, so only warn-free
  // best effort: the data is already complete under its final name.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// ---- safetensors --------------------------------------------------------------------------------

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::F16: return "F16";
  }
  SGPT_FAIL("dtype code ", static_cast<int>(dtype), " has no safetensors name");
}

namespace {

bool dtype_from_name(const std::string& name, DType& out) {
  for (DType d : {DType::F32, DType::F64, DType::BF16, DType::I32, DType::F16}) {
    if (name == safetensors_dtype_name(d)) {
      out = d;
      return true;
    }
  }
  return false;
}

// Largest header we accept: the reference implementation uses the same bound (100 MB), and it
// stops a corrupt length from making us allocate gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

}  // namespace

bool SafeTensors::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
}

const Tensor& SafeTensors::at(const std::string& name) const {
  for (const auto& p : tensors)
    if (p.first == name) return p.second;
  SGPT_FAIL("no tensor named '", name, "' in this safetensors file (", tensors.size(), " tensors)");
}

uint64_t tensor_checksum(const std::string& name, DType dtype, const Shape& shape, const void* data,
                         std::size_t bytes) {
  Checksum64 c;
  c.update_field(name);
  c.update_field(safetensors_dtype_name(dtype));
  c.update_field(shape_str(shape));
  c.update(data, bytes);
  return c.digest();
}

namespace {

constexpr const char* kChecksumsKey = "checksums";
constexpr const char* kMetaChecksumKey = "metadata_checksum";
constexpr const char* kChecksumPrefix = "sgpt64:";

std::string checksum_text(uint64_t v) { return kChecksumPrefix + checksum_hex(v); }

// Parses "sgpt64:<16 hex>"; false for anything else.
bool parse_checksum(const std::string& text, uint64_t& out) {
  const std::string prefix = kChecksumPrefix;
  if (text.size() != prefix.size() + 16 || text.compare(0, prefix.size(), prefix) != 0) return false;
  out = 0;
  for (std::size_t i = prefix.size(); i < text.size(); ++i) {
    const char c = text[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    out = out << 4 | static_cast<uint64_t>(d);
  }
  return true;
}

// Every metadata entry but the metadata checksum itself, in key order (std::map sorts).
uint64_t metadata_checksum(const std::map<std::string, std::string>& metadata) {
  Checksum64 c;
  for (const auto& [k, v] : metadata) {
    if (k == kMetaChecksumKey) continue;
    c.update_field(k);
    c.update_field(v);
  }
  return c.digest();
}

uint64_t checksum_of(const std::string& name, const Tensor& t) {
  if (t.device() == Device::CPU) return tensor_checksum(name, t.dtype(), t.shape(), t.raw(), t.nbytes());
  Tensor host = t.to(Device::CPU);
  return tensor_checksum(name, host.dtype(), host.shape(), host.raw(), host.nbytes());
}

}  // namespace

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata_in, Checksums checksums) {
  std::map<std::string, std::string> metadata = metadata_in;
  if (checksums == Checksums::On) {
    // The checksums go into the header, which precedes the data: compute them first.
    nlohmann::ordered_json sums = nlohmann::ordered_json::object();
    for (const auto& [name, t] : tensors) {
      SGPT_CHECK(t.defined(), "cannot save '", path, "': tensor '", name, "' is undefined");
      sums[name] = checksum_text(checksum_of(name, t));
    }
    metadata[kChecksumsKey] = sums.dump();
    metadata.erase(kMetaChecksumKey);
    metadata[kMetaChecksumKey] = checksum_text(metadata_checksum(metadata));
  } else {
    for (const char* key : {kChecksumsKey, kMetaChecksumKey})
      SGPT_CHECK(!metadata.count(key), "cannot save '", path, "': metadata key '", key,
                 "' is reserved for checksums (save with Checksums::On to recompute them)");
  }
  // Build the header in insertion order (ordered_json keeps keys in the order they were added).
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    SGPT_CHECK(!name.empty(), "cannot save '", path, "': a tensor has an empty name");
    SGPT_CHECK(name != "__metadata__", "cannot save '", path, "': '__metadata__' is reserved, not a tensor name");
    SGPT_CHECK(seen.insert(name).second, "cannot save '", path, "': duplicate tensor name '", name, "'");
    SGPT_CHECK(t.defined(), "cannot save '", path, "': tensor '", name, "' is undefined");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = safetensors_dtype_name(t.dtype());
    entry["shape"] = t.shape();
    uint64_t bytes = t.nbytes();
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = entry;
    offset += bytes;
  }
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t n = json.size();

  write_file_atomic(path, [&](const ByteSink& sink) {
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    sink(len, 8);
    sink(json.data(), json.size());
    for (const auto& [name, t] : tensors) {
      if (t.device() == Device::CPU) {
        sink(t.raw(), t.nbytes());
      } else {
        Tensor host = t.to(Device::CPU);
        sink(host.raw(), host.nbytes());
      }
    }
  });
}

namespace {

// Fills header.checksums from the metadata and checks the metadata checksum (see the header file).
void read_checksums(const std::string& path, SafeTensorsHeader& h) {
  const bool has_list = h.metadata.count(kChecksumsKey), has_meta = h.metadata.count(kMetaChecksumKey);
  if (!has_list && !has_meta) return;
  const std::string where = str("safetensors file '", path, "'");
  SGPT_CHECK(has_list && has_meta, where, ": the metadata has '", has_list ? kChecksumsKey : kMetaChecksumKey,
             "' without '", has_list ? kMetaChecksumKey : kChecksumsKey, "'; the file is damaged");
  uint64_t stored = 0;
  SGPT_CHECK(parse_checksum(h.metadata.at(kMetaChecksumKey), stored), where, ": metadata_checksum '",
             h.metadata.at(kMetaChecksumKey), "' is not of the form ", kChecksumPrefix, "<16 hex digits>");
  const uint64_t computed = metadata_checksum(h.metadata);
  SGPT_CHECK(stored == computed, where, ": the metadata fails its checksum (stored ", checksum_hex(stored),
             ", computed ", checksum_hex(computed), "): a metadata value such as the step or the configuration ",
             "was edited or damaged after the file was written");
  nlohmann::json list = nlohmann::json::parse(h.metadata.at(kChecksumsKey), nullptr, /*allow_exceptions=*/false);
  SGPT_CHECK(list.is_object(), where, ": the 'checksums' metadata is not a JSON object");
  for (const auto& [name, v] : list.items()) {
    uint64_t c = 0;
    SGPT_CHECK(v.is_string() && parse_checksum(v.get<std::string>(), c), where, ": the checksum of tensor '", name,
               "' is not of the form ", kChecksumPrefix, "<16 hex digits>");
    h.checksums[name] = c;
  }
  for (const auto& t : h.tensors)
    SGPT_CHECK(h.checksums.count(t.name), where, ": tensor '", t.name, "' has no checksum (a tensor was added)");
  SGPT_CHECK(h.checksums.size() == h.tensors.size(), where, ": the checksums name ", h.checksums.size(),
             " tensors but the file holds ", h.tensors.size(), " (a tensor was removed)");
  h.checksummed = true;
}

void check_tensor_checksum(const std::string& path, const SafeTensorsHeader& h, const SafeTensorInfo& info,
                           uint64_t computed) {
  const uint64_t stored = h.checksums.at(info.name);
  SGPT_CHECK(stored == computed, "safetensors file '", path, "': tensor '", info.name, "' fails its checksum (stored ",
             checksum_hex(stored), ", computed ", checksum_hex(computed),
             "): its bytes were damaged after the file was written");
}

}  // namespace

SafeTensorsHeader read_safetensors_header(const std::string& path) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SGPT_CHECK(f.fd >= 0, "cannot open safetensors file '", path, "': ", errno_text());
  struct stat st {};
  SGPT_CHECK(::fstat(f.fd, &st) == 0, "cannot stat safetensors file '", path, "': ", errno_text());
  SGPT_CHECK(S_ISREG(st.st_mode), "safetensors file '", path, "' is not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  SGPT_CHECK(file_size >= 8, "safetensors file '", path, "' is too short for the header length: ", file_size,
             " bytes, need at least 8");

  unsigned char len[8];
  SGPT_CHECK(pread_all(f.fd, len, 8, 0), "cannot read safetensors file '", path, "': ", errno_text());
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  SGPT_CHECK(n <= file_size - 8, "safetensors file '", path, "': header length ", n,
             " is larger than the rest of the file (", file_size - 8, " bytes); the file is truncated or not safetensors");
  SGPT_CHECK(n <= kMaxHeaderBytes, "safetensors file '", path, "': header length ", n, " exceeds the limit of ",
             kMaxHeaderBytes, " bytes");

  std::string text(n, '\0');
  SGPT_CHECK(pread_all(f.fd, text.data(), n, 8), "cannot read the header of safetensors file '", path, "': ",
             errno_text());

  // Parse, noting every key of the top-level object: the JSON library keeps only the last of
  // duplicate keys, and a duplicate tensor name must be an error, not a silent overwrite.
  std::vector<std::string> top_keys;
  std::string duplicate;
  nlohmann::ordered_json::parser_callback_t cb = [&](int depth, nlohmann::ordered_json::parse_event_t event,
                                                     nlohmann::ordered_json& parsed) {
    if (event == nlohmann::ordered_json::parse_event_t::key && depth == 1) {
      std::string key = parsed.get<std::string>();
      if (duplicate.empty() && std::find(top_keys.begin(), top_keys.end(), key) != top_keys.end()) duplicate = key;
      top_keys.push_back(key);
    }
    return true;
  };
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(text, cb);
  } catch (const nlohmann::json::exception& e) {
    SGPT_FAIL("safetensors file '", path, "': the header is not valid JSON: ", e.what());
  }
  SGPT_CHECK(header.is_object(), "safetensors file '", path, "': the header is JSON but not an object");
  SGPT_CHECK(duplicate.empty(), "safetensors file '", path, "': duplicate name '", duplicate, "' in the header");

  SafeTensorsHeader out;
  out.header_bytes = n;
  out.data_bytes = file_size - 8 - n;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      SGPT_CHECK(entry.is_object(), "safetensors file '", path, "': __metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        SGPT_CHECK(v.is_string(), "safetensors file '", path, "': metadata value of '", k, "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = str("safetensors file '", path, "': tensor '", name, "'");
    SGPT_CHECK(entry.is_object(), where, " is not a JSON object");
    SGPT_CHECK(entry.contains("dtype") && entry["dtype"].is_string(), where, " has no string 'dtype'");
    SGPT_CHECK(entry.contains("shape") && entry["shape"].is_array(), where, " has no array 'shape'");
    SGPT_CHECK(entry.contains("data_offsets") && entry["data_offsets"].is_array() && entry["data_offsets"].size() == 2,
               where, " has no 'data_offsets' pair");
    SafeTensorInfo info;
    info.name = name;
    const std::string dt = entry["dtype"].get<std::string>();
    SGPT_CHECK(dtype_from_name(dt, info.dtype), where, " has unsupported dtype '", dt,
               "' (ScaleGPT reads F32, F64, BF16, F16, I32)");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : entry["shape"]) {
      SGPT_CHECK(d.is_number_unsigned(), where, " has a shape entry that is not a non-negative integer: ", d.dump());
      uint64_t v = d.get<uint64_t>();
      if (v != 0 && numel > UINT64_MAX / v) overflow = true;
      numel *= v;
      info.shape.push_back(static_cast<int64_t>(v));
    }
    for (const auto& o : entry["data_offsets"])
      SGPT_CHECK(o.is_number_unsigned(), where, " has a data offset that is not a non-negative integer: ", o.dump());
    info.begin = entry["data_offsets"][0].get<uint64_t>();
    info.end = entry["data_offsets"][1].get<uint64_t>();
    SGPT_CHECK(info.begin <= info.end, where, " has data_offsets [", info.begin, ", ", info.end, "] with begin > end");
    SGPT_CHECK(info.end <= out.data_bytes, where, " has data_offsets [", info.begin, ", ", info.end,
               "] out of range: the data section holds ", out.data_bytes, " bytes");
    const uint64_t width = dtype_size(info.dtype);
    SGPT_CHECK(!overflow && numel <= UINT64_MAX / width && numel * width == info.end - info.begin, where, ": shape ",
               shape_str(info.shape), " of ", dt, " needs ", overflow ? std::string("too many") : str(numel * width),
               " bytes but data_offsets [", info.begin, ", ", info.end, "] span ", info.end - info.begin);
    out.tensors.push_back(std::move(info));
  }

  // The spans, sorted, must tile the data section exactly.
  std::vector<const SafeTensorInfo*> order;
  for (const auto& t : out.tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const SafeTensorInfo* a, const SafeTensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expect = 0;
  const SafeTensorInfo* prev = nullptr;
  for (const SafeTensorInfo* t : order) {
    SGPT_CHECK(t->begin >= expect, "safetensors file '", path, "': tensor '", t->name, "' [", t->begin, ", ", t->end,
               ") overlaps tensor '", prev ? prev->name : "", "' [", prev ? prev->begin : 0, ", ",
               prev ? prev->end : 0, ")");
    SGPT_CHECK(t->begin == expect, "safetensors file '", path, "': gap in the data section: bytes [", expect, ", ",
               t->begin, ") belong to no tensor (before tensor '", t->name, "')");
    expect = t->end;
    prev = t;
  }
  SGPT_CHECK(expect == out.data_bytes, "safetensors file '", path, "': the tensors do not cover the data section: ",
             out.data_bytes - expect, " bytes after offset ", expect, " belong to no tensor");
  read_checksums(path, out);
  return out;
}

SafeTensors load_safetensors(const std::string& path, MemCategory category) {
  SafeTensorsHeader header = read_safetensors_header(path);
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SGPT_CHECK(f.fd >= 0, "cannot open safetensors file '", path, "': ", errno_text());
  SafeTensors out;
  out.metadata = std::move(header.metadata);
  const uint64_t data_start = 8 + header.header_bytes;
  for (const auto& info : header.tensors) {
    Tensor t = Tensor::empty(info.shape, info.dtype, Device::CPU, category);
    SGPT_CHECK(pread_all(f.fd, t.raw(), info.end - info.begin, data_start + info.begin),
               "safetensors file '", path, "': cannot read tensor '", info.name, "' (file changed while reading?)");
    if (header.checksummed)
      check_tensor_checksum(path, header, info, tensor_checksum(info.name, info.dtype, info.shape, t.raw(), t.nbytes()));
    out.tensors.emplace_back(info.name, std::move(t));
  }
  return out;
}

SafeTensorsHeader verify_safetensors(const std::string& path) {
  SafeTensorsHeader header = read_safetensors_header(path);
  if (!header.checksummed) return header;
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  SGPT_CHECK(f.fd >= 0, "cannot open safetensors file '", path, "': ", errno_text());
  const uint64_t data_start = 8 + header.header_bytes;
  std::vector<char> chunk(8 << 20);
  for (const auto& info : header.tensors) {
    Checksum64 c;
    c.update_field(info.name);
    c.update_field(safetensors_dtype_name(info.dtype));
    c.update_field(shape_str(info.shape));
    for (uint64_t at = info.begin; at < info.end;) {
      const std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(chunk.size(), info.end - at));
      SGPT_CHECK(pread_all(f.fd, chunk.data(), n, data_start + at), "safetensors file '", path,
                 "': cannot read tensor '", info.name, "' (file changed while reading?)");
      c.update(chunk.data(), n);
      at += n;
    }
    check_tensor_checksum(path, header, info, c.digest());
  }
  return header;
}

std::vector<std::string> remove_orphan_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp.";
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    // The rest must be exactly PID.N (write_file_atomic's pattern), digits only.
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    auto digits = [](const std::string& s) {
      return !s.empty() && s.size() < 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (dot == std::string::npos || !digits(rest.substr(0, dot)) || !digits(rest.substr(dot + 1))) continue;
    const long long pid = std::stoll(rest.substr(0, dot));
    if (pid <= 0 || pid == ::getpid()) continue;
    // kill(pid, 0) fails with ESRCH when no such process exists: its writer is gone.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    if (!entry.is_regular_file(ec)) continue;
    SGPT_CHECK(fs::remove(entry.path(), ec) && !ec, "cannot remove the orphan temporary file '",
               entry.path().string(), "': ", ec.message());
    removed.push_back(entry.path().string());
  }
  SGPT_CHECK(!ec, "cannot list directory '", dir.string(), "': ", ec.message());
  return removed;
}

}  // namespace sgpt
