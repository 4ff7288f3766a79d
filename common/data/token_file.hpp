#pragma once
/// @file token_file.hpp
/// @brief Token files: a fixed 64-byte header followed by the tokens, opened by mmap.
///
/// Layout (all integers little-endian):
///
///     offset  size  field
///          0     8  magic "SGPTTOK1"
///          8     4  version (u32, currently 1)
///         12     1  token width in bytes: 1 (u8), 2 (u16) or 4 (u32)
///         13     3  zero
///         16     4  vocab_size (u32): every token is in [0, vocab_size)
///         20     4  zero
///         24     8  count (u64): number of tokens
///         32    32  zero (reserved)
///         64        count tokens of the given width
///
/// The width is the smallest that holds vocab_size - 1: u8 for the byte tokenizer, u16 for
/// GPT-2's 50257 tokens, u32 beyond. The file size is exactly 64 + count * width.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sgpt {

/// Size of the token-file header in bytes.
inline constexpr std::size_t kTokenFileHeaderBytes = 64;
/// Current token-file version.
inline constexpr uint32_t kTokenFileVersion = 1;

/// Width in bytes (1, 2 or 4) that write_token_file() uses for a vocabulary of `vocab_size`.
int token_width_for_vocab(int64_t vocab_size);

/// Writes `tokens` to `path` atomically (temporary file in the same directory, fsync, rename):
/// on failure, whatever was at `path` stays as it was. Every token must lie in [0, vocab_size);
/// vocab_size must be in [1, 2^31]. Throws sgpt::Error naming the path otherwise.
void write_token_file(const std::string& path, const std::vector<int32_t>& tokens, int64_t vocab_size);

/// A read-only sequence of tokens: a memory-mapped token file, or tokens held in memory.
///
/// Opening a file validates it completely: the header (magic, version, width, vocab size), the
/// size (64 + count * width exactly), and every token against vocab_size (one pass over the file;
/// skipped only when the width cannot hold an out-of-range value, e.g. u8 tokens with vocab 256).
/// Each problem is an sgpt::Error that names the file and what is wrong.
class TokenFile {
 public:
  /// Opens and validates the token file at `path`.
  explicit TokenFile(const std::string& path);
  /// Tokens held in memory (for synthetic data that never touches the disk). `name` appears in
  /// error messages in place of a path. Every token must lie in [0, vocab_size).
  TokenFile(std::vector<int32_t> tokens, int64_t vocab_size, std::string name = "<memory>");
  ~TokenFile();
  /// Takes over `other`'s tokens (and mapping); `other` is left empty.
  TokenFile(TokenFile&& other) noexcept;
  /// Releases this object's tokens, then takes over `other`'s; `other` is left empty.
  TokenFile& operator=(TokenFile&& other) noexcept;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  /// Number of tokens.
  int64_t size() const { return count_; }
  /// Size of the vocabulary recorded in the header.
  int64_t vocab_size() const { return vocab_size_; }
  /// Bytes per token in the file (1, 2 or 4; 4 for in-memory tokens).
  int width() const { return width_; }
  /// The path it was opened from (or the name given to in-memory tokens).
  const std::string& path() const { return path_; }

  /// Token i (no bounds check; see at()).
  int32_t operator[](int64_t i) const {
    switch (width_) {
      case 1: return static_cast<const uint8_t*>(tokens_)[i];
      case 2: return static_cast<const uint16_t*>(tokens_)[i];
      default: return static_cast<int32_t>(static_cast<const uint32_t*>(tokens_)[i]);
    }
  }
  /// Token i, with a bounds check that throws sgpt::Error.
  int32_t at(int64_t i) const;
  /// Copies tokens [begin, begin + n) into `out` as int32 (bounds-checked once).
  void read(int64_t begin, int64_t n, int32_t* out) const;
  /// Tokens [begin, begin + n) as a vector.
  std::vector<int32_t> slice(int64_t begin, int64_t n) const;

 private:
  void release() noexcept;

  std::string path_;
  int64_t count_ = 0;
  int64_t vocab_size_ = 0;
  int width_ = 4;
  const void* tokens_ = nullptr;     // first token (in the mapping or in owned_)
  void* map_ = nullptr;              // the mmap'ed file, or nullptr
  std::size_t map_bytes_ = 0;
  std::vector<int32_t> owned_;       // in-memory tokens
};

}  // namespace sgpt
