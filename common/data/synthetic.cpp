#include "data/synthetic.hpp"

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/rng.hpp"

namespace sgpt {

namespace {

// Draws from one Philox stream: the i-th draw is a pure function of (key, i).
class Draws {
 public:
  explicit Draws(uint64_t key) : key_(key) {}
  // Uniform integer in [0, n), by the multiply-shift method (integer only, so portable).
  uint32_t below(uint32_t n) {
    uint32_t bits = rng::philox4x32(key_, counter_++).v[0];
    return static_cast<uint32_t>((static_cast<uint64_t>(bits) * n) >> 32);
  }
  // True with probability num/den.
  bool chance(uint32_t num, uint32_t den) { return below(den) < num; }
  template <class List>
  typename List::value_type pick(const List& list) {
    return list[below(static_cast<uint32_t>(list.size()))];
  }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

// The word lists. Verbs come in pairs (third person, base form) so questions can use "does".
const std::array kAdjectives{"old", "small", "big", "quiet", "happy", "red", "brown", "little",
                             "young", "clever", "tired", "green", "bright", "angry", "gentle", "grey"};
const std::array kNouns{"fox", "bird", "dog", "cat", "farmer", "child", "king", "horse", "owl",
                        "wolf", "fish", "miller", "girl", "boy", "sailor", "queen"};
const std::array kPlaces{"river", "hill", "forest", "town", "sea", "garden", "road", "house",
                         "bridge", "field", "mill", "castle"};
const std::array kPrepositions{"near", "by", "under", "over", "behind", "across", "in", "beside"};
struct Verb {
  const char* third;
  const char* base;
};
const std::array kTransitive{Verb{"sees", "see"},       Verb{"finds", "find"},   Verb{"follows", "follow"},
                             Verb{"likes", "like"},     Verb{"watches", "watch"}, Verb{"helps", "help"},
                             Verb{"carries", "carry"},  Verb{"meets", "meet"},   Verb{"calls", "call"},
                             Verb{"chases", "chase"}};
const std::array kIntransitive{"sleeps", "runs", "sings", "waits", "swims", "laughs", "rests", "walks"};
const std::array kAdverbs{"slowly", "quietly", "often", "today", "again", "happily"};
const std::array kSpeech{"come here", "look at the sky", "it is late", "i am hungry", "follow me",
                         "what a fine day"};

bool starts_with_vowel(const std::string& w) {
  return !w.empty() && std::string("aeiou").find(w[0]) != std::string::npos;
}

// "a"/"an"/"the"/"one" + optional adjective + noun, with the article agreeing with the next word.
std::string noun_phrase(Draws& d, const char* noun) {
  std::string rest;
  if (d.chance(1, 2)) rest = std::string(d.pick(kAdjectives)) + " ";
  rest += noun;
  uint32_t det = d.below(4);
  if (det == 0) return (starts_with_vowel(rest) ? "an " : "a ") + rest;
  if (det == 1) return "one " + rest;
  return "the " + rest;
}

// Each draw is its own statement: the operands of one expression are evaluated in an unspecified
// order, and the text must not depend on the compiler.
std::string place_phrase(Draws& d) {
  std::string prep = d.pick(kPrepositions);
  return prep + " the " + d.pick(kPlaces);
}

// One sentence about the protagonist `hero` (a noun phrase starting with "the").
std::string sentence(Draws& d, const std::string& hero, const char* hero_noun) {
  const std::string other = noun_phrase(d, d.pick(kNouns));
  switch (d.below(7)) {
    case 0:
    case 1: {
      std::string s = hero + " " + d.pick(kTransitive).third + " " + other;
      if (d.chance(1, 2)) s += " " + place_phrase(d);
      return s + ".";
    }
    case 2: {
      std::string s = hero + " " + d.pick(kIntransitive);
      if (d.chance(1, 2)) s += std::string(" ") + d.pick(kAdverbs);
      if (d.chance(1, 2)) s += " " + place_phrase(d);
      return s + ".";
    }
    case 3: {
      // A question and its answer, which repeats the protagonist.
      return "where is the " + std::string(hero_noun) + "? the " + hero_noun + " is " + place_phrase(d) + ".";
    }
    case 4: {
      const Verb v = d.pick(kTransitive);
      bool yes = d.chance(1, 2);
      return "does the " + std::string(hero_noun) + " " + v.base + " " + other + "? " +
             (yes ? std::string("yes, it ") + v.third + " " + other + "."
                  : std::string("no, it ") + d.pick(kIntransitive) + ".");
    }
    case 5: {
      std::string first = other + " " + d.pick(kIntransitive);
      return first + ", and " + hero + " " + d.pick(kTransitive).third + " it.";
    }
    default: {
      return "\"" + std::string(d.pick(kSpeech)) + ",\" says " + hero + ".";
    }
  }
}

}  // namespace

std::string synthetic_text(uint64_t seed, int64_t n_bytes) {
  SGPT_CHECK(n_bytes >= 0, "synthetic_text: negative length ", n_bytes);
  Draws d(rng::stream_key(seed, "synthetic_text"));
  std::string out;
  out.reserve(static_cast<std::size_t>(n_bytes) + 256);
  while (static_cast<int64_t>(out.size()) < n_bytes) {
    // A paragraph: 3 to 6 sentences about one protagonist, then a blank line.
    const char* hero_noun = d.pick(kNouns);
    std::string hero = "the ";
    if (d.chance(1, 2)) hero += std::string(d.pick(kAdjectives)) + " ";
    hero += hero_noun;
    const uint32_t n_sentences = 3 + d.below(4);
    for (uint32_t i = 0; i < n_sentences; ++i) {
      std::string s = sentence(d, hero, hero_noun);
      // Capitalise the first letter of the sentence (and of an answer after "? ").
      std::size_t first = s[0] == '"' ? 1 : 0;
      s[first] = static_cast<char>(s[first] - 'a' + 'A');
      auto q = s.find("? ");
      if (q != std::string::npos) s[q + 2] = static_cast<char>(s[q + 2] - 'a' + 'A');
      out += s;
      out += (i + 1 == n_sentences) ? "\n\n" : (d.chance(1, 3) ? "\n" : " ");
    }
  }
  out.resize(static_cast<std::size_t>(n_bytes));
  return out;
}

std::string synthetic_pattern(uint64_t seed, int64_t n, int period) {
  SGPT_CHECK(n >= 0, "synthetic_pattern: negative length ", n);
  static const std::string kAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  SGPT_CHECK(period >= 2 && period <= static_cast<int>(kAlphabet.size()), "synthetic_pattern: period ", period,
             " is outside [2, ", kAlphabet.size(), "]");
  Draws d(rng::stream_key(seed, "synthetic_pattern"));
  // Fisher-Yates shuffle of the alphabet; the cycle is its first `period` characters.
  std::string alphabet = kAlphabet;
  for (uint32_t i = static_cast<uint32_t>(alphabet.size()) - 1; i > 0; --i) std::swap(alphabet[i], alphabet[d.below(i + 1)]);
  const uint32_t phase = d.below(static_cast<uint32_t>(period));
  std::string out(static_cast<std::size_t>(n), '\0');
  for (int64_t i = 0; i < n; ++i) out[i] = alphabet[(phase + i) % period];
  return out;
}

double unigram_entropy_bits(std::string_view bytes) {
  if (bytes.empty()) return 0.0;
  std::array<int64_t, 256> counts{};
  for (char c : bytes) ++counts[static_cast<unsigned char>(c)];
  double h = 0.0;
  const double n = static_cast<double>(bytes.size());
  for (int64_t c : counts) {
    if (c == 0) continue;
    double p = static_cast<double>(c) / n;
    h -= p * std::log2(p);
  }
  return h;
}

}  // namespace sgpt
