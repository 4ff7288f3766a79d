// scalegpt-data: the command-line side of the data pipeline.
//
//   scalegpt-data tokenize --in input.txt --out data/tinyshakespeare [--val-fraction 0.1]
//   scalegpt-data synth --out data/synthetic [--bytes 1000000] [--seed 1] [--kind text|pattern]
//   scalegpt-data info data/tinyshakespeare/train.bin [--show 200]
//
// tokenize and synth write DIR/train.bin and DIR/val.bin (the validation split is the last
// fraction of the text, so the two never share a byte). Every error prints one line and exits 1.

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "core/main.hpp"
#include "core/check.hpp"
#include "data/synthetic.hpp"
#include "data/token_file.hpp"
#include "data/tokenizer.hpp"

namespace fs = std::filesystem;
using namespace sgpt;

namespace {

std::string read_whole_file(const std::string& path) {
  std::error_code ec;
  SGPT_CHECK(fs::is_regular_file(path, ec), "input '", path, "' does not exist or is not a regular file");
  std::ifstream in(path, std::ios::binary);
  SGPT_CHECK(in.good(), "cannot open input '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  SGPT_CHECK(!in.bad(), "cannot read input '", path, "'");
  return ss.str();
}

// Byte-tokenizes `text` and writes the train/val split into `dir`.
void write_split(const std::string& text, const std::string& dir, double val_fraction) {
  SGPT_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, "--val-fraction ", val_fraction, " is outside [0, 1)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  SGPT_CHECK(!ec && fs::is_directory(dir), "cannot create output directory '", dir, "': ", ec.message());
  ByteTokenizer tok;
  std::vector<int32_t> tokens = tok.encode(text);
  const auto n = static_cast<int64_t>(tokens.size());
  const auto n_val = static_cast<int64_t>(std::llround(val_fraction * static_cast<double>(n)));
  std::vector<int32_t> train(tokens.begin(), tokens.end() - n_val);
  std::vector<int32_t> val(tokens.end() - n_val, tokens.end());
  const std::string train_path = (fs::path(dir) / "train.bin").string();
  const std::string val_path = (fs::path(dir) / "val.bin").string();
  write_token_file(train_path, train, tok.vocab_size());
  write_token_file(val_path, val, tok.vocab_size());
  std::printf("wrote %s (%lld tokens) and %s (%lld tokens), vocab %d, unigram entropy %.3f bits/byte\n",
              train_path.c_str(), static_cast<long long>(train.size()), val_path.c_str(),
              static_cast<long long>(val.size()), tok.vocab_size(), unigram_entropy_bits(text));
}

void info(const std::string& path, int64_t show) {
  TokenFile f(path);
  const int width = f.width();
  std::printf("file        %s\n", path.c_str());
  std::printf("version     %u\n", kTokenFileVersion);
  std::printf("dtype       u%d\n", 8 * width);
  std::printf("vocab_size  %lld\n", static_cast<long long>(f.vocab_size()));
  std::printf("tokens      %lld\n", static_cast<long long>(f.size()));
  std::printf("bytes       %lld (header %zu + %lld x %d)\n",
              static_cast<long long>(kTokenFileHeaderBytes + f.size() * width), kTokenFileHeaderBytes,
              static_cast<long long>(f.size()), width);
  const int64_t n = std::min<int64_t>(show, f.size());
  std::vector<int32_t> head = f.slice(0, n);
  std::printf("first %lld tokens:", static_cast<long long>(n));
  for (int64_t i = 0; i < std::min<int64_t>(n, 16); ++i) std::printf(" %d", head[i]);
  std::printf(n > 16 ? " ...\n" : "\n");
  if (f.vocab_size() <= ByteTokenizer::kVocabSize) {
    std::string text = ByteTokenizer().decode(head);
    std::printf("decoded (bytes): %s\n", escape_bytes(text).c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"scalegpt-data: prepare and inspect ScaleGPT token files"};
  app.require_subcommand(1);

  std::string in_path, out_dir;
  double val_fraction = 0.1;
  auto* tokenize = app.add_subcommand("tokenize", "byte-tokenize a text file into DIR/train.bin and DIR/val.bin");
  tokenize->add_option("--in", in_path, "input text file")->required();
  tokenize->add_option("--out", out_dir, "output directory (created if missing)")->required();
  tokenize->add_option("--val-fraction", val_fraction, "fraction at the end kept for validation")
      ->capture_default_str();

  int64_t n_bytes = 1'000'000;
  uint64_t seed = 1;
  std::string kind = "text";
  double synth_val_fraction = 0.1;
  auto* synth = app.add_subcommand("synth", "generate a synthetic dataset into DIR/train.bin and DIR/val.bin");
  synth->add_option("--out", out_dir, "output directory (created if missing)")->required();
  synth->add_option("--bytes", n_bytes, "length in bytes")->capture_default_str()->check(CLI::PositiveNumber);
  synth->add_option("--seed", seed, "generator seed")->capture_default_str();
  synth->add_option("--kind", kind, "text (English-like grammar) or pattern (exactly learnable cycle)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "pattern"}));
  synth->add_option("--val-fraction", synth_val_fraction, "fraction at the end kept for validation")
      ->capture_default_str();

  std::string info_path;
  int64_t show = 200;
  auto* info_cmd = app.add_subcommand("info", "print a token file's header and its first tokens, decoded");
  info_cmd->add_option("file", info_path, "token file")->required();
  info_cmd->add_option("--show", show, "how many tokens to decode")->capture_default_str()->check(CLI::NonNegativeNumber);

  CLI11_PARSE(app, argc, argv);

  return sgpt::run_guarded("scalegpt-data", [&] {
    if (*tokenize) {
      write_split(read_whole_file(in_path), out_dir, val_fraction);
    } else if (*synth) {
      std::string text = kind == "text" ? synthetic_text(seed, n_bytes) : synthetic_pattern(seed, n_bytes);
      write_split(text, out_dir, synth_val_fraction);
    } else if (*info_cmd) {
      info(info_path, show);
    }
    return 0;
  });
}
