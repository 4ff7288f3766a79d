#include "data/token_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/check.hpp"
#include "core/safetensors.hpp"  // write_file_atomic

namespace sgpt {

namespace {

constexpr char kMagic[8] = {'S', 'G', 'P', 'T', 'T', 'O', 'K', '1'};
constexpr int64_t kMaxVocab = int64_t{1} << 31;  // tokens are int32

void put_le(unsigned char* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Index of the first token >= vocab, or -1.
template <class T>
int64_t first_out_of_range(const T* tokens, int64_t n, uint64_t vocab) {
  for (int64_t i = 0; i < n; ++i)
    if (static_cast<uint64_t>(tokens[i]) >= vocab) return i;
  return -1;
}

}  // namespace

int token_width_for_vocab(int64_t vocab_size) {
  SGPT_CHECK(vocab_size >= 1 && vocab_size <= kMaxVocab, "vocab_size ", vocab_size, " is outside [1, 2^31]");
  if (vocab_size <= 256) return 1;
  if (vocab_size <= 65536) return 2;
  return 4;
}

void write_token_file(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size) {
  SGPT_CHECK(vocab_size >= 1 && vocab_size <= kMaxVocab, "cannot write token file '", path, "': vocab_size ",
             vocab_size, " is outside [1, 2^31]");
  const int width = token_width_for_vocab(vocab_size);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    SGPT_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, "cannot write token file '", path, "': token ", tokens[i],
               " at index ", i, " is outside [0, ", vocab_size, ")");

  unsigned char header[kTokenFileHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  put_le(header + 8, kTokenFileVersion, 4);
  header[12] = static_cast<unsigned char>(width);
  put_le(header + 16, static_cast<uint64_t>(vocab_size), 4);
  put_le(header + 24, tokens.size(), 8);

  write_file_atomic(path, [&](const ByteSink& sink) {
    sink(header, sizeof header);
    // Narrow the tokens in chunks, so a large file needs no second full-size buffer.
    constexpr std::size_t kChunk = 1 << 16;
    std::vector<unsigned char> buf(kChunk * width);
    for (std::size_t begin = 0; begin < tokens.size(); begin += kChunk) {
      std::size_t n = std::min(kChunk, tokens.size() - begin);
      for (std::size_t i = 0; i < n; ++i) put_le(&buf[i * width], static_cast<uint32_t>(tokens[begin + i]), width);
      sink(buf.data(), n * width);
    }
  });
}

TokenFile::TokenFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SGPT_CHECK(fd >= 0, "cannot open token file '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    SGPT_FAIL("token file '", path, "' is not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kTokenFileHeaderBytes) {
    ::close(fd);
    SGPT_FAIL("token file '", path, "' is truncated: ", file_size, " bytes, shorter than the ", kTokenFileHeaderBytes,
              "-byte header");
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int mmap_errno = errno;
  ::close(fd);  // the mapping stays valid without the descriptor
  SGPT_CHECK(map != MAP_FAILED, "cannot mmap token file '", path, "': ", std::strerror(mmap_errno));
  map_ = map;
  map_bytes_ = file_size;

  // From here on the destructor does not run if we throw, so release the mapping by hand.
  try {
    const auto* h = static_cast<const unsigned char*>(map_);
    SGPT_CHECK(std::memcmp(h, kMagic, 8) == 0, "token file '", path,
               "' has the wrong magic (expected \"SGPTTOK1\"): not a ScaleGPT token file, or corrupt");
    const uint64_t version = get_le(h + 8, 4);
    SGPT_CHECK(version == kTokenFileVersion, "token file '", path, "' has unknown version ", version,
               " (this build reads version ", kTokenFileVersion, ")");
    const int width = h[12];
    SGPT_CHECK(width == 1 || width == 2 || width == 4, "token file '", path, "' has unknown token dtype code ", width,
               " (expected 1, 2 or 4 bytes per token)");
    const uint64_t vocab = get_le(h + 16, 4);
    SGPT_CHECK(vocab >= 1 && vocab <= static_cast<uint64_t>(kMaxVocab), "token file '", path, "' has vocab_size ",
               vocab, ", outside [1, 2^31]");
    const uint64_t count = get_le(h + 24, 8);
    const uint64_t max_count = (UINT64_MAX - kTokenFileHeaderBytes) / width;
    SGPT_CHECK(count <= max_count && kTokenFileHeaderBytes + count * width == file_size, "token file '", path,
               "' is ", file_size < kTokenFileHeaderBytes + count * width ? "truncated" : "the wrong size", ": header says ",
               count, " tokens of ", width, " bytes, so ", kTokenFileHeaderBytes + count * width,
               " bytes, but the file has ", file_size);
    width_ = width;
    vocab_size_ = static_cast<int64_t>(vocab);
    count_ = static_cast<int64_t>(count);
    tokens_ = h + kTokenFileHeaderBytes;

    // Every token must be in range. When the width cannot express an out-of-range token there is
    // nothing to check; otherwise one linear pass (the files this course uses are small).
    if (vocab < (uint64_t{1} << (8 * width))) {
      int64_t bad = -1;
      switch (width) {
        case 1: bad = first_out_of_range(static_cast<const uint8_t*>(tokens_), count_, vocab); break;
        case 2: bad = first_out_of_range(static_cast<const uint16_t*>(tokens_), count_, vocab); break;
        default: bad = first_out_of_range(static_cast<const uint32_t*>(tokens_), count_, vocab); break;
      }
      SGPT_CHECK(bad < 0, "token file '", path, "': token ", bad < 0 ? 0 : (*this)[bad], " at index ", bad,
                 " is out of range for vocab_size ", vocab);
    }
  } catch (...) {
    release();
    throw;
  }
}

TokenFile::TokenFile(std::vector<int32_t> tokens, int64_t vocab_size, std::string name)
    : path_(std::move(name)), owned_(std::move(tokens)) {
  SGPT_CHECK(vocab_size >= 1 && vocab_size <= kMaxVocab, "tokens '", path_, "': vocab_size ", vocab_size,
             " is outside [1, 2^31]");
  for (std::size_t i = 0; i < owned_.size(); ++i)
    SGPT_CHECK(owned_[i] >= 0 && owned_[i] < vocab_size, "tokens '", path_, "': token ", owned_[i], " at index ", i,
               " is out of range for vocab_size ", vocab_size);
  vocab_size_ = vocab_size;
  count_ = static_cast<int64_t>(owned_.size());
  width_ = 4;
  tokens_ = owned_.data();
}

TokenFile::~TokenFile() { release(); }

void TokenFile::release() noexcept {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
  count_ = 0;
}

TokenFile::TokenFile(TokenFile&& other) noexcept { *this = std::move(other); }

TokenFile& TokenFile::operator=(TokenFile&& other) noexcept {
  if (this == &other) return *this;
  release();
  path_ = std::move(other.path_);
  count_ = other.count_;
  vocab_size_ = other.vocab_size_;
  width_ = other.width_;
  map_ = other.map_;
  map_bytes_ = other.map_bytes_;
  owned_ = std::move(other.owned_);
  tokens_ = map_ != nullptr ? other.tokens_ : owned_.data();
  other.map_ = nullptr;
  other.map_bytes_ = 0;
  other.tokens_ = nullptr;
  other.count_ = 0;
  return *this;
}

int32_t TokenFile::at(int64_t i) const {
  SGPT_CHECK(i >= 0 && i < count_, "token index ", i, " out of range for '", path_, "' with ", count_, " tokens");
  return (*this)[i];
}

void TokenFile::read(int64_t begin, int64_t n, int32_t* out) const {
  SGPT_CHECK(begin >= 0 && n >= 0 && begin + n <= count_, "tokens [", begin, ", ", begin + n, ") out of range for '",
             path_, "' with ", count_, " tokens");
  switch (width_) {
    case 1: {
      const auto* p = static_cast<const uint8_t*>(tokens_) + begin;
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    }
    case 2: {
      const auto* p = static_cast<const uint16_t*>(tokens_) + begin;
      for (int64_t i = 0; i < n; ++i) out[i] = p[i];
      break;
    }
    default: {
      const auto* p = static_cast<const uint32_t*>(tokens_) + begin;
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(p[i]);
      break;
    }
  }
}

std::vector<int32_t> TokenFile::slice(int64_t begin, int64_t n) const {
  std::vector<int32_t> out(static_cast<std::size_t>(std::max<int64_t>(n, 0)));
  read(begin, n, out.data());
  return out;
}

}  // namespace sgpt
