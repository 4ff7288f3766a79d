#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <limits>

#include <sys/wait.h>

#include "core/checksum.hpp"
#include "core/safetensors.hpp"
#include "test_util.hpp"

using namespace sgpt;
using sgpt::testing::expect_error;
using sgpt::testing::read_bytes;
using sgpt::testing::ScratchDir;
using sgpt::testing::write_bytes;

namespace {

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A safetensors file made by hand: header text (unpadded is fine) and `data_bytes` data bytes.
void write_raw(const std::string& path, const std::string& header, std::size_t data_bytes) {
  write_bytes(path, u64le(header.size()) + header + std::string(data_bytes, '\x11'));
}

}  // namespace

TEST(SafeTensors, RoundTripsEveryDtypeExactlyInOrder) {
  ScratchDir dir;
  const std::string path = dir.file("m.safetensors");
  Tensor f32 = Tensor::from<float>({1.5f, -0.0f, std::numeric_limits<float>::infinity(), 1e-45f, 3.0f, -7.25f}, {2, 3});
  Tensor f64 = Tensor::from<double>({M_PI, -1e300, 5e-324}, {3});
  Tensor i32 = Tensor::from<int32_t>({INT_MIN, -1, 0, INT_MAX}, {2, 1, 2});
  Tensor bf16 = Tensor::empty({5}, DType::BF16);
  const uint16_t bits[5] = {0x3f80, 0xbf80, 0x7f80, 0x0001, 0x7fc1};  // 1, -1, inf, denormal, a NaN
  std::memcpy(bf16.raw(), bits, sizeof bits);
  Tensor scalar = Tensor::from<float>({42.0f}, {});
  Tensor empty = Tensor::empty({0, 4}, DType::F32);
  // Not in alphabetical order, to check that the order is kept.
  std::vector<std::pair<std::string, Tensor>> in{{"zeta", f32}, {"alpha", f64}, {"mid.i32", i32},
                                                  {"b16", bf16}, {"scalar", scalar}, {"nothing", empty}};
  save_safetensors(path, in, {{"format", "pt"}, {"step", "1200"}});

  SafeTensors out = load_safetensors(path);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out.tensors[i].first, in[i].first);
    EXPECT_TRUE(same_bytes(out.tensors[i].second, in[i].second)) << in[i].first;
    EXPECT_EQ(out.tensors[i].second.device(), Device::CPU);
  }
  EXPECT_EQ(out.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"step", "1200"}}));
  EXPECT_TRUE(out.contains("b16"));
  EXPECT_FALSE(out.contains("gamma"));
  EXPECT_EQ(out.at("scalar").shape(), Shape{});
  expect_error([&] { out.at("gamma"); }, {"gamma"});

  // The data section holds the tensors contiguously, in the order given.
  SafeTensorsHeader h = read_safetensors_header(path);
  EXPECT_EQ(h.header_bytes % 8, 0u);
  uint64_t offset = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(h.tensors[i].name, in[i].first);
    EXPECT_EQ(h.tensors[i].begin, offset);
    offset += in[i].second.nbytes();
    EXPECT_EQ(h.tensors[i].end, offset);
  }
  EXPECT_EQ(h.data_bytes, offset);
  EXPECT_EQ(read_bytes(path).size(), 8 + h.header_bytes + h.data_bytes);
}

TEST(SafeTensors, WritesTheExactHuggingFaceLayout) {
  ScratchDir dir;
  const std::string path = dir.file("a.safetensors");
  save_safetensors(path, {{"a", Tensor::from<float>({1.0f, 2.0f}, {2})}});
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f little-endian
  EXPECT_EQ(read_bytes(path), u64le(header.size()) + header + data);

  // With metadata, "__metadata__" comes first, as the reference writer does.
  save_safetensors(path, {{"a", Tensor::from<float>({1.0f, 2.0f}, {2})}}, {{"k", "v"}});
  std::string raw = read_bytes(path);
  EXPECT_EQ(raw.substr(8, 28), R"({"__metadata__":{"k":"v"},"a)");
}

TEST(SafeTensors, ReadsAHandWrittenFile) {
  // Written by hand the way other tools write it: spaces, key order, metadata last.
  ScratchDir dir;
  const std::string path = dir.file("h.safetensors");
  std::string header =
      R"({ "b": {"data_offsets": [8, 12], "shape": [1], "dtype": "I32"},  "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"x": "y"} }   )";
  std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40\x07\x00\x00\x00", 12);
  write_bytes(path, u64le(header.size()) + header + data);
  SafeTensors st = load_safetensors(path);
  EXPECT_EQ(st.at("a").to_vector(), (std::vector<double>{1.0, 2.0}));
  EXPECT_EQ(st.at("b").to_vector(), (std::vector<double>{7.0}));
  EXPECT_EQ(st.tensors[0].first, "b");  // header order, not offset order
  EXPECT_EQ(st.metadata.at("x"), "y");
}

TEST(SafeTensors, SaveRejectsBadNames) {
  ScratchDir dir;
  Tensor t = Tensor::zeros({2});
  expect_error([&] { save_safetensors(dir.file("d.st"), {{"w", t}, {"w", t}}); }, {dir.file("d.st"), "duplicate", "'w'"});
  expect_error([&] { save_safetensors(dir.file("d.st"), {{"", t}}); }, {"empty name"});
  expect_error([&] { save_safetensors(dir.file("d.st"), {{"__metadata__", t}}); }, {"reserved"});
  EXPECT_TRUE(dir.entries().empty());
}

TEST(SafeTensors, MissingAndShortFilesAreDetected) {
  ScratchDir dir;
  const std::string p = dir.file("x.safetensors");
  expect_error([&] { load_safetensors(p); }, {p, "cannot open", "No such file"});
  write_bytes(p, std::string("\x05\x00\x00", 3));
  expect_error([&] { load_safetensors(p); }, {p, "too short", "3 bytes"});
  write_bytes(p, u64le(1000) + std::string(50, ' '));
  expect_error([&] { read_safetensors_header(p); }, {p, "header length 1000", "larger than the rest of the file"});
}

TEST(SafeTensors, CorruptHeadersAreDetected) {
  ScratchDir dir;
  const std::string p = dir.file("c.safetensors");
  struct Case {
    std::string header;
    std::size_t data;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases{
      {R"({"a": {"dtype": "F32", )", 8, {"not valid JSON"}},
      {R"([1, 2])", 0, {"not an object"}},
      {R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2, {"tensor 'a'", "unsupported dtype 'F8_E4M3'"}},
      {R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, {"tensor 'a'", "needs 12 bytes", "span 8"}},
      {R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, {"tensor 'a'", "shape"}},
      {R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8, {"tensor 'a'", "out of range", "holds 8 bytes"}},
      {R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8, {"tensor 'a'", "begin > end"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, {"overlaps", "'b'", "'a'"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, {"gap", "[4, 8)"}},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 12, {"do not cover", "4 bytes after offset 8"}},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, {"duplicate name 'a'"}},
      {R"({"a":{"dtype":"F32","shape":[2]}})", 8, {"tensor 'a'", "data_offsets"}},
      {R"({"__metadata__":{"k":3}})", 0, {"metadata value of 'k'"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    write_raw(p, c.header, c.data);
    try {
      load_safetensors(p);
      ADD_FAILURE() << "no error for this header";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << m;
      for (const auto& part : c.expect) EXPECT_NE(m.find(part), std::string::npos) << "missing '" << part << "' in " << m;
    }
  }
  // The same file made valid loads, so the cases above fail for the reason they claim.
  write_raw(p, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8);
  EXPECT_EQ(load_safetensors(p).tensors.size(), 2u);
}

TEST(SafeTensors, FailedWriteLeavesTheOldFileIntact) {
  ScratchDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"w", Tensor::from<float>({1, 2, 3}, {3})}}, {{"step", "1"}});
  const std::string before = read_bytes(path);

  // 1. The disk fills up part-way through a 400 KB tensor.
  sgpt::testing::with_file_size_limit(64 * 1024, [&] {
    expect_error([&] { save_safetensors(path, {{"w", Tensor::zeros({100000})}}, {{"step", "2"}}); },
                 {path, "write failed"});
  });
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});

  // 2. The producer of the bytes fails after writing some of them.
  expect_error(
      [&] {
        write_file_atomic(path, [](const ByteSink& sink) {
          sink("partial", 7);
          SGPT_FAIL("simulated failure while writing");
        });
      },
      {"simulated failure"});
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"ckpt.safetensors"});

  // 3. The destination's directory does not exist.
  expect_error([&] { save_safetensors(dir.file("missing/ckpt.safetensors"), {{"w", Tensor::zeros({1})}}); },
               {"missing/ckpt.safetensors", "does not exist"});

  // 4. The destination is a directory: the rename fails and the directory survives.
  std::filesystem::create_directory(dir.file("adir"));
  expect_error([&] { save_safetensors(dir.file("adir"), {{"w", Tensor::zeros({1})}}); }, {"adir", "rename"});
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("adir")));
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"adir", "ckpt.safetensors"}));

  // And a successful write replaces the file.
  save_safetensors(path, {{"w", Tensor::from<float>({4, 5}, {2})}}, {{"step", "3"}});
  EXPECT_EQ(load_safetensors(path).metadata.at("step"), "3");
}

// ---- checksums (Checksums::On) ------------------------------------------------------------------

namespace {

// Byte offset, in the file, of tensor `name`'s data.
uint64_t data_offset(const std::string& path, const std::string& name) {
  SafeTensorsHeader h = read_safetensors_header(path);
  for (const auto& t : h.tensors)
    if (t.name == name) return 8 + h.header_bytes + t.begin;
  throw std::runtime_error("no tensor " + name);
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::string bytes = read_bytes(path);
  bytes.at(offset) ^= 0x01;
  write_bytes(path, bytes);
}

// Replaces the first occurrence of `from` in the file by `to` (same length: the header stays valid).
void edit_file(const std::string& path, const std::string& from, const std::string& to) {
  ASSERT_EQ(from.size(), to.size());
  std::string bytes = read_bytes(path);
  const auto at = bytes.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  bytes.replace(at, from.size(), to);
  write_bytes(path, bytes);
}

std::vector<std::pair<std::string, Tensor>> three_tensors() {
  std::vector<float> big(1000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = 0.25f * static_cast<float>(i);
  return {{"first", Tensor::from<float>({1, 2, 3}, {3})},
          {"second", Tensor::from(big, {10, 100})},
          {"third", Tensor::from<int32_t>({7, 8}, {2})}};
}

}  // namespace

TEST(SafeTensorsChecksums, ChecksumIsIncrementalAndSeesEveryByte) {
  std::vector<unsigned char> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7 + 3);
  const uint64_t whole = checksum64(data.data(), data.size());
  // Any split into pieces gives the same value (pieces of odd sizes cross the 32-byte stripes).
  for (std::size_t a : {0, 1, 5, 31, 32, 33, 999}) {
    Checksum64 c;
    c.update(data.data(), a);
    c.update(data.data() + a, data.size() - a);
    EXPECT_EQ(c.digest(), whole) << "split at " << a;
  }
  // Every single-bit flip, in the stripes and in the tail, changes it; so do length and seed.
  for (std::size_t i = 0; i < data.size(); i += 37) {
    data[i] ^= 0x10;
    EXPECT_NE(checksum64(data.data(), data.size()), whole) << "byte " << i;
    data[i] ^= 0x10;
  }
  EXPECT_NE(checksum64(data.data(), 999), whole);
  EXPECT_NE(checksum64(data.data(), data.size(), 1), whole);
  // Swapping two 8-byte words of a stripe changes it too.
  std::vector<unsigned char> swapped = data;
  std::swap_ranges(swapped.begin(), swapped.begin() + 8, swapped.begin() + 8);
  EXPECT_NE(checksum64(swapped.data(), swapped.size()), whole);
  EXPECT_EQ(checksum_hex(0x0123456789abcdefULL), "0123456789abcdef");
}

TEST(SafeTensorsChecksums, AFlippedByteIsFoundAndTheTensorNamed) {
  ScratchDir dir;
  const std::string path = dir.file("c.safetensors");
  save_safetensors(path, three_tensors(), {{"step", "12"}}, Checksums::On);
  SafeTensorsHeader h = verify_safetensors(path);
  EXPECT_TRUE(h.checksummed);
  EXPECT_EQ(h.checksums.size(), 3u);
  EXPECT_EQ(load_safetensors(path).metadata.at("step"), "12");

  // One bit in the middle of "second": both the loader and the verifier name that tensor.
  flip_byte(path, data_offset(path, "second") + 2001);
  expect_error([&] { load_safetensors(path); }, {path, "tensor 'second' fails its checksum"});
  expect_error([&] { verify_safetensors(path); }, {path, "tensor 'second' fails its checksum"});
  // The header alone is intact.
  EXPECT_NO_THROW(read_safetensors_header(path));
  // The first bad tensor in file order is the one named.
  flip_byte(path, data_offset(path, "third"));
  flip_byte(path, data_offset(path, "first") + 4);
  expect_error([&] { verify_safetensors(path); }, {"tensor 'first' fails"});
}

TEST(SafeTensorsChecksums, AnEditedMetadataValueOrShapeIsFound) {
  ScratchDir dir;
  const std::string path = dir.file("c.safetensors");
  save_safetensors(path, three_tensors(), {{"step", "12"}}, Checksums::On);
  const std::string good = read_bytes(path);
  // Another step, same length: a valid file, but not the one that was written.
  edit_file(path, R"("step":"12")", R"("step":"13")");
  expect_error([&] { read_safetensors_header(path); }, {path, "the metadata fails its checksum"});
  expect_error([&] { load_safetensors(path); }, {"the metadata fails its checksum"});
  // A reshaped tensor (same bytes, [10,100] read as [20,50]) fails that tensor's checksum.
  write_bytes(path, good);
  edit_file(path, "[10,100]", "[20, 50]");
  expect_error([&] { load_safetensors(path); }, {"tensor 'second' fails its checksum"});
  // A checksum list that lost its metadata checksum is damage, not "no checksums".
  write_bytes(path, good);
  edit_file(path, "metadata_checksum", "metadata_checksuX");
  expect_error([&] { read_safetensors_header(path); }, {"without 'metadata_checksum'"});
}

TEST(SafeTensorsChecksums, PlainFilesStayPlainAndReservedKeysAreRefused) {
  ScratchDir dir;
  const std::string path = dir.file("p.safetensors");
  save_safetensors(path, three_tensors(), {{"format", "pt"}});
  SafeTensorsHeader h = verify_safetensors(path);  // no checksums: structure only
  EXPECT_FALSE(h.checksummed);
  EXPECT_EQ(h.metadata.size(), 1u);
  // Stale checksums copied from another file cannot be saved without recomputing them.
  save_safetensors(path, three_tensors(), {}, Checksums::On);
  std::map<std::string, std::string> copied = load_safetensors(path).metadata;
  expect_error([&] { save_safetensors(path, three_tensors(), copied); }, {"'checksums' is reserved"});
  copied["step"] = "5";  // re-saving with Checksums::On recomputes them
  save_safetensors(path, three_tensors(), copied, Checksums::On);
  EXPECT_EQ(load_safetensors(path).metadata.at("step"), "5");
}

TEST(SafeTensorsChecksums, OrphanTemporaryFilesOfDeadWritersAreRemoved) {
  ScratchDir dir;
  const std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, three_tensors(), {}, Checksums::On);
  // A process that has ended: its pid is free (until reused, which the test cannot prevent, but
  // a fresh child's pid is not reused within the test).
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ::waitpid(dead, nullptr, 0);
  const std::string orphan = str(path, ".tmp.", dead, ".0"), live = str(path, ".tmp.", ::getppid(), ".3");
  for (const std::string& f : {orphan, live, path + ".tmp.notapid", dir.file("other.bin.tmp.1.0"), path + ".tmp." +
                                                                                                      std::to_string(dead)})
    write_bytes(f, "partial");
  std::vector<std::string> removed = remove_orphan_temp_files(path);
  EXPECT_EQ(removed, std::vector<std::string>{orphan});
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ckpt.safetensors", "ckpt.safetensors.tmp." + std::to_string(::getppid()) + ".3",
                                                     "ckpt.safetensors.tmp." + std::to_string(dead),
                                                     "ckpt.safetensors.tmp.notapid", "other.bin.tmp.1.0"}));
  EXPECT_NO_THROW(verify_safetensors(path));
}
