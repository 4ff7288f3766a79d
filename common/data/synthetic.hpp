#pragma once
/// @file synthetic.hpp
/// @brief Synthetic datasets, generated from a seed with the counter-based RNG: no download.
///
/// Both generators are pure functions of their arguments and use only integer arithmetic on top
/// of sgpt::rng (Philox), so every machine produces the same bytes for the same seed.

#include <cstdint>
#include <string>
#include <string_view>

namespace sgpt {

/// English-like text from a small hand-written grammar: paragraphs about one protagonist
/// ("The old fox sees a small bird near the river. Where is the fox? The fox is by the hill."),
/// with capitals, commas, full stops, question marks, quoted speech and newlines. Only printable
/// ASCII and '\\n'. Exactly `n_bytes` long (the last sentence may be cut off).
///
/// A small byte-level model learns the spelling within a few hundred steps and then the
/// grammar (agreement of "a"/"an", the question-answer pairs that repeat the protagonist), so its
/// samples visibly turn into sentences. The unigram entropy of the bytes is about 4.33 bits/byte
/// (measured with unigram_entropy_bits() on 2 MB, seed 1); a model that only learns byte
/// frequencies reaches a loss of ln 2 * 4.33 = 3.0 nats, and anything lower shows it uses context.
/// (For comparison, Tiny Shakespeare has 4.78 bits/byte.)
std::string synthetic_text(uint64_t seed, int64_t n_bytes);

/// A sequence that a tiny model can learn exactly: a cycle of `period` distinct characters
/// (drawn from a-z, 0-9 by the seed) repeated, starting at a seed-chosen phase, `n` bytes long.
/// Each byte determines the next, so the achievable loss is 0. `period` is in [2, 36].
std::string synthetic_pattern(uint64_t seed, int64_t n, int period = 16);

/// Shannon entropy of the byte frequencies of `bytes`, in bits per byte (0 for empty input).
double unigram_entropy_bits(std::string_view bytes);

}  // namespace sgpt
