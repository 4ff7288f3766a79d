#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data/synthetic.hpp"
#include "test_util.hpp"

using namespace sgpt;

namespace {
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

TEST(SyntheticText, SameSeedSameBytesDifferentSeedDifferent) {
  const std::string a = synthetic_text(1, 20000);
  EXPECT_EQ(a.size(), 20000u);
  EXPECT_EQ(a, synthetic_text(1, 20000));
  EXPECT_NE(a, synthetic_text(2, 20000));
  EXPECT_NE(a.substr(0, 200), synthetic_text(2, 20000).substr(0, 200));
  // A shorter request is a prefix of a longer one.
  EXPECT_EQ(synthetic_text(1, 777), a.substr(0, 777));
  EXPECT_EQ(synthetic_text(1, 0), "");
}

TEST(SyntheticText, IsStableAcrossMachines) {
  // The generator uses only integer arithmetic on Philox draws, so these bytes are the same on
  // every platform and compiler. If the grammar changes on purpose, update the hash.
  const std::string t = synthetic_text(42, 4096);
  EXPECT_EQ(fnv1a(t), 18319320823205526324ull) << t.substr(0, 300);
}

TEST(SyntheticText, IsPrintableAsciiAndLooksLikeSentences) {
  const std::string t = synthetic_text(3, 100000);
  std::set<char> seen;
  for (char c : t) {
    ASSERT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << "byte " << static_cast<int>(static_cast<unsigned char>(c));
    seen.insert(c);
  }
  for (char c : {'.', ',', '?', '"', '\n', ' ', 'T', 'W'}) EXPECT_TRUE(seen.count(c)) << "no '" << c << "'";
  EXPECT_NE(t.find("The "), std::string::npos);
  EXPECT_NE(t.find("\n\n"), std::string::npos);
  // Sentences start with a capital letter (or an opening quote and a capital).
  for (std::size_t p = t.find(". "); p != std::string::npos && p + 3 < t.size(); p = t.find(". ", p + 1)) {
    char c = t[p + 2] == '"' ? t[p + 3] : t[p + 2];
    ASSERT_TRUE(c >= 'A' && c <= 'Z') << t.substr(p, 40);
  }
  // "a" agrees with the next word: never "a" before a vowel.
  for (const char* bad : {" a a", " a e", " a i", " a o", " a u", "A a", "A e", "A o"})
    EXPECT_EQ(t.find(bad), std::string::npos) << bad;
  const double h = unigram_entropy_bits(t);
  EXPECT_GT(h, 4.2);  // documented: about 4.33 bits/byte
  EXPECT_LT(h, 4.45);
}

TEST(SyntheticPattern, EachByteDeterminesTheNext) {
  for (int period : {2, 7, 16, 36}) {
    const std::string p = synthetic_pattern(5, 1000, period);
    ASSERT_EQ(p.size(), 1000u);
    std::map<char, char> next;
    for (std::size_t i = 0; i + 1 < p.size(); ++i) {
      auto [it, fresh] = next.emplace(p[i], p[i + 1]);
      ASSERT_EQ(it->second, p[i + 1]) << "byte '" << p[i] << "' is followed by two different bytes";
    }
    EXPECT_EQ(static_cast<int>(next.size()), period);
    for (std::size_t i = period; i < p.size(); ++i) ASSERT_EQ(p[i], p[i - period]);
  }
}

TEST(SyntheticPattern, IsDeterministicAndSeeded) {
  EXPECT_EQ(synthetic_pattern(9, 500), synthetic_pattern(9, 500));
  EXPECT_NE(synthetic_pattern(9, 500), synthetic_pattern(10, 500));
  sgpt::testing::expect_error([] { synthetic_pattern(1, 10, 1); }, {"period 1"});
  sgpt::testing::expect_error([] { synthetic_pattern(1, 10, 37); }, {"period 37"});
}

TEST(UnigramEntropy, MatchesHandComputedValues) {
  EXPECT_DOUBLE_EQ(unigram_entropy_bits(""), 0.0);
  EXPECT_DOUBLE_EQ(unigram_entropy_bits("aaaa"), 0.0);
  EXPECT_DOUBLE_EQ(unigram_entropy_bits("abab"), 1.0);
  EXPECT_DOUBLE_EQ(unigram_entropy_bits("abcd"), 2.0);
}
