#pragma once
/// @file tokenizer.hpp
/// @brief The byte tokenizer: each byte of the text is one token, vocabulary 256.
///
/// Byte-level tokens need no vocabulary file and no training, round-trip any input exactly
/// (UTF-8 included, one token per byte), and keep the data pipeline about the systems, not the
/// linguistics. A GPT-2 BPE tokenizer could later sit behind the same two calls.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sgpt {

/// Tokens are bytes: token t is the byte with value t, for t in [0, 256).
class ByteTokenizer {
 public:
  /// Number of distinct tokens (256).
  static constexpr int32_t kVocabSize = 256;

  /// Size of the vocabulary (256).
  int32_t vocab_size() const { return kVocabSize; }

  /// One token per byte of `text`, the byte's unsigned value.
  std::vector<int32_t> encode(std::string_view text) const;

  /// The bytes the tokens stand for, as they are. Throws sgpt::Error on a token outside [0, 256).
  std::string decode(const std::vector<int32_t>& tokens) const;
  /// As decode(const std::vector<int32_t>&), for a range of tokens.
  std::string decode(const int32_t* tokens, std::size_t count) const;
};

/// Makes text safe to print on one terminal line: printable ASCII is kept, '\\' becomes "\\\\",
/// newline "\\n", tab "\\t", and every other byte "\\xHH".
std::string escape_bytes(std::string_view bytes);

}  // namespace sgpt
