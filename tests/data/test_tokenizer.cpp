#include <gtest/gtest.h>

#include "data/tokenizer.hpp"
#include "test_util.hpp"

using namespace sgpt;

TEST(ByteTokenizer, EncodesEachByteAsItsUnsignedValue) {
  ByteTokenizer tok;
  EXPECT_EQ(tok.vocab_size(), 256);
  std::vector<int32_t> t = tok.encode(std::string("Az\n\xff\x80", 5));
  EXPECT_EQ(t, (std::vector<int32_t>{65, 122, 10, 255, 128}));
}

TEST(ByteTokenizer, RoundTripsAllBytesAndUtf8) {
  ByteTokenizer tok;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  all += "na\xc3\xafve caf\xc3\xa9 \xe2\x9c\x93";  // UTF-8 stays one token per byte
  std::vector<int32_t> t = tok.encode(all);
  ASSERT_EQ(t.size(), all.size());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t[b], b);
  EXPECT_EQ(tok.decode(t), all);
  EXPECT_EQ(tok.decode(tok.encode("")), "");
}

TEST(ByteTokenizer, DecodeRejectsTokensOutsideTheVocabulary) {
  ByteTokenizer tok;
  sgpt::testing::expect_error([&] { tok.decode({65, 256}); }, {"token 256", "position 1"});
  sgpt::testing::expect_error([&] { tok.decode({-1}); }, {"token -1"});
}

TEST(ByteTokenizer, EscapeBytesMakesInvisibleBytesVisible) {
  EXPECT_EQ(escape_bytes(std::string("ab c\n\t\\\x01\xff", 9)), "ab c\\n\\t\\\\\\x01\\xff");
  EXPECT_EQ(escape_bytes("Hello, world."), "Hello, world.");
}
