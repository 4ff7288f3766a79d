#include "data/tokenizer.hpp"

#include "core/check.hpp"

namespace sgpt {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& tokens) const {
  return decode(tokens.data(), tokens.size());
}

std::string ByteTokenizer::decode(const int32_t* tokens, std::size_t count) const {
  std::string out(count, '\0');
  for (std::size_t i = 0; i < count; ++i) {
    SGPT_CHECK(tokens[i] >= 0 && tokens[i] < kVocabSize, "byte tokenizer: token ", tokens[i], " at position ", i,
               " is outside [0, ", kVocabSize, ")");
    out[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
  }
  return out;
}

std::string escape_bytes(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size());
  for (char ch : bytes) {
    auto b = static_cast<unsigned char>(ch);
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\n') {
      out += "\\n";
    } else if (b == '\t') {
      out += "\\t";
    } else if (b >= 0x20 && b < 0x7f) {
      out += static_cast<char>(b);
    } else {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 15];
    }
  }
  return out;
}

}  // namespace sgpt
