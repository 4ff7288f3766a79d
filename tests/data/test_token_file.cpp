#include <gtest/gtest.h>

#include <cstring>

#include "data/token_file.hpp"
#include "test_util.hpp"

using namespace sgpt;
using sgpt::testing::expect_error;
using sgpt::testing::read_bytes;
using sgpt::testing::ScratchDir;
using sgpt::testing::write_bytes;

namespace {

uint64_t le(const std::string& bytes, std::size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  return v;
}

// Tokens spread over the whole vocabulary, including 0 and vocab - 1.
std::vector<int32_t> spread(int64_t vocab, int n) {
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>((static_cast<int64_t>(i) * 7919) % vocab));
  t.push_back(0);
  t.push_back(static_cast<int32_t>(vocab - 1));
  return t;
}

}  // namespace

TEST(TokenFile, WidthIsTheSmallestThatHoldsTheVocabulary) {
  EXPECT_EQ(token_width_for_vocab(2), 1);
  EXPECT_EQ(token_width_for_vocab(256), 1);
  EXPECT_EQ(token_width_for_vocab(257), 2);
  EXPECT_EQ(token_width_for_vocab(50257), 2);
  EXPECT_EQ(token_width_for_vocab(65536), 2);
  EXPECT_EQ(token_width_for_vocab(65537), 4);
}

TEST(TokenFile, RoundTripsEachWidthWithTheDocumentedHeader) {
  ScratchDir dir;
  for (int64_t vocab : {256, 50257, 100000}) {
    const std::string path = dir.file("t" + std::to_string(vocab) + ".bin");
    std::vector<int32_t> tokens = spread(vocab, 1000);
    write_token_file(path, tokens, vocab);
    const int width = token_width_for_vocab(vocab);

    // The header, byte by byte, as the format says.
    std::string raw = read_bytes(path);
    ASSERT_EQ(raw.size(), 64 + tokens.size() * width);
    EXPECT_EQ(raw.substr(0, 8), "SGPTTOK1");
    EXPECT_EQ(le(raw, 8, 4), 1u);
    EXPECT_EQ(le(raw, 12, 1), static_cast<uint64_t>(width));
    EXPECT_EQ(le(raw, 16, 4), static_cast<uint64_t>(vocab));
    EXPECT_EQ(le(raw, 24, 8), tokens.size());
    for (std::size_t i = 32; i < 64; ++i) EXPECT_EQ(raw[i], 0) << "reserved byte " << i;
    EXPECT_EQ(le(raw, 64 + 1 * width, width), static_cast<uint64_t>(tokens[1]));

    TokenFile f(path);
    EXPECT_EQ(f.size(), static_cast<int64_t>(tokens.size()));
    EXPECT_EQ(f.vocab_size(), vocab);
    EXPECT_EQ(f.width(), width);
    EXPECT_EQ(f.path(), path);
    for (std::size_t i = 0; i < tokens.size(); ++i) ASSERT_EQ(f[static_cast<int64_t>(i)], tokens[i]) << i;
    EXPECT_EQ(f.slice(5, 10), std::vector<int32_t>(tokens.begin() + 5, tokens.begin() + 15));
    EXPECT_THROW(f.at(static_cast<int64_t>(tokens.size())), Error);
  }
}

TEST(TokenFile, EmptyFileRoundTrips) {
  ScratchDir dir;
  write_token_file(dir.file("e.bin"), {}, 256);
  TokenFile f(dir.file("e.bin"));
  EXPECT_EQ(f.size(), 0);
  EXPECT_EQ(read_bytes(dir.file("e.bin")).size(), 64u);
}

TEST(TokenFile, MovedFromFileKeepsTheTokens) {
  ScratchDir dir;
  write_token_file(dir.file("m.bin"), {1, 2, 3}, 10);
  TokenFile a(dir.file("m.bin"));
  TokenFile b(std::move(a));
  EXPECT_EQ(b.slice(0, 3), (std::vector<int32_t>{1, 2, 3}));
  TokenFile c({4, 5}, 6);
  c = std::move(b);
  EXPECT_EQ(c.size(), 3);
  EXPECT_EQ(c[2], 3);
}

TEST(TokenFile, WriteRejectsOutOfRangeTokensAndLeavesNothing) {
  ScratchDir dir;
  expect_error([&] { write_token_file(dir.file("bad.bin"), {1, 2, 300}, 256); },
               {dir.file("bad.bin"), "token 300", "index 2"});
  expect_error([&] { write_token_file(dir.file("bad.bin"), {-1}, 256); }, {"token -1"});
  expect_error([&] { write_token_file(dir.file("bad.bin"), {0}, 0); }, {"vocab_size 0"});
  EXPECT_TRUE(dir.entries().empty());
}

TEST(TokenFile, MissingFileErrorNamesThePath) {
  ScratchDir dir;
  expect_error([&] { TokenFile f(dir.file("nope.bin")); }, {dir.file("nope.bin"), "cannot open", "No such file"});
}

TEST(TokenFile, TruncatedFileIsDetected) {
  ScratchDir dir;
  const std::string path = dir.file("t.bin");
  write_token_file(path, spread(50257, 100), 50257);
  std::string raw = read_bytes(path);
  write_bytes(path, raw.substr(0, raw.size() - 1));
  expect_error([&] { TokenFile f(path); }, {path, "truncated", "102 tokens"});
  write_bytes(path, raw.substr(0, 40));
  expect_error([&] { TokenFile f(path); }, {path, "truncated", "header"});
  write_bytes(path, "");
  expect_error([&] { TokenFile f(path); }, {path, "truncated"});
}

TEST(TokenFile, TrailingBytesAreDetected) {
  ScratchDir dir;
  const std::string path = dir.file("t.bin");
  write_token_file(path, {1, 2, 3}, 256);
  write_bytes(path, read_bytes(path) + "x");
  expect_error([&] { TokenFile f(path); }, {path, "wrong size"});
}

TEST(TokenFile, CorruptHeaderFieldsAreDetected) {
  ScratchDir dir;
  const std::string path = dir.file("t.bin");
  write_token_file(path, {1, 2, 3}, 256);
  const std::string good = read_bytes(path);

  std::string bad = good;
  bad[0] ^= 0x20;  // "sGPTTOK1"
  write_bytes(path, bad);
  expect_error([&] { TokenFile f(path); }, {path, "wrong magic"});

  bad = good;
  bad[8] = 2;  // version 2
  write_bytes(path, bad);
  expect_error([&] { TokenFile f(path); }, {path, "unknown version 2"});

  bad = good;
  bad[12] = 3;  // 3-byte tokens do not exist
  write_bytes(path, bad);
  expect_error([&] { TokenFile f(path); }, {path, "unknown token dtype code 3"});

  bad = good;
  bad[16] = bad[17] = 0;  // vocab 0
  write_bytes(path, bad);
  expect_error([&] { TokenFile f(path); }, {path, "vocab_size 0"});
}

TEST(TokenFile, OutOfRangeTokenIsDetectedOnOpen) {
  ScratchDir dir;
  const std::string path = dir.file("t.bin");
  // u16 tokens with vocab 300: patch token 5 to 300.
  std::vector<int32_t> tokens(10, 7);
  write_token_file(path, tokens, 300);
  std::string raw = read_bytes(path);
  raw[64 + 2 * 5] = static_cast<char>(300 & 0xff);
  raw[64 + 2 * 5 + 1] = static_cast<char>(300 >> 8);
  write_bytes(path, raw);
  expect_error([&] { TokenFile f(path); }, {path, "token 300", "index 5", "out of range"});

  // u8 tokens with a header vocab of 100: token 200 is out of range even though it fits a byte.
  write_token_file(path, {1, 200, 3}, 256);
  raw = read_bytes(path);
  raw[16] = 100;
  raw[17] = 0;
  write_bytes(path, raw);
  expect_error([&] { TokenFile f(path); }, {path, "token 200", "index 1"});
}

TEST(TokenFile, FailedWriteKeepsThePreviousFile) {
  ScratchDir dir;
  const std::string path = dir.file("t.bin");
  write_token_file(path, {1, 2, 3}, 256);
  const std::string before = read_bytes(path);
  // A "full disk" after 4 KiB: the 100 KiB write fails part-way.
  sgpt::testing::with_file_size_limit(4096, [&] {
    expect_error([&] { write_token_file(path, std::vector<int32_t>(100000, 9), 256); }, {path, "write failed"});
  });
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"t.bin"});  // the temporary file is gone
  // And a directory that does not exist is an error naming the path.
  expect_error([&] { write_token_file(dir.file("no/such/dir/t.bin"), {1}, 256); }, {"no/such/dir/t.bin", "does not exist"});
}

TEST(TokenFile, InMemoryTokensValidate) {
  TokenFile m({0, 5, 9}, 10, "synthetic");
  EXPECT_EQ(m.size(), 3);
  EXPECT_EQ(m[1], 5);
  EXPECT_EQ(m.path(), "synthetic");
  expect_error([] { TokenFile bad({0, 10}, 10, "mine"); }, {"mine", "token 10", "index 1"});
}
