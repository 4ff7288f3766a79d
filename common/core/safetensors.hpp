#pragma once
/// @file safetensors.hpp
/// @brief Reading and writing the Hugging Face safetensors format, and atomic file writes.
///
/// A safetensors file is
///
///     [8 bytes]  N, the header length, unsigned little-endian
///     [N bytes]  a JSON object, padded with spaces to a multiple of 8:
///                {"__metadata__": {"key": "value", ...},
///                 "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
///     [rest]     the data section: each tensor's raw little-endian bytes at [begin, end),
///                offsets relative to the start of the data section
///
/// The tensors fill the data section exactly: no gaps, no overlaps, nothing after the last one.
/// ScaleGPT stores F32, F64, BF16, F16 and I32 tensors. Checkpoints and exported weights use this
/// format, so the files open in the usual Python tools.
///
/// ## Checksums
/// Saved with Checksums::On, a file also carries two metadata entries (plain strings, so other
/// tools read the file as before and simply ignore them):
///
///     "checksums":         {"name": "sgpt64:<16 hex digits>", ...}   one per tensor, as JSON text
///     "metadata_checksum": "sgpt64:<16 hex digits>"
///
/// A tensor's checksum (core/checksum.hpp) covers its name, dtype, shape and bytes; the metadata
/// checksum covers every other metadata key and value (the tensor checksums included), so an
/// edited step or configuration is detected as surely as a flipped bit in a weight. Readers check
/// them whenever they are present: read_safetensors_header() the metadata (cheap),
/// load_safetensors() and verify_safetensors() also every tensor, naming the first bad one.
///
/// Every writer in ScaleGPT goes through write_file_atomic(): the bytes go to a temporary file in
/// the destination's directory, which is flushed to disk and then renamed over the destination.
/// A crash or an error part-way leaves the previous file as it was.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.hpp"

namespace sgpt {

// ---- atomic writes ------------------------------------------------------------------------------

/// Appends bytes to the file being written (throws sgpt::Error when the write fails).
using ByteSink = std::function<void(const void* data, std::size_t bytes)>;

/// Writes a file atomically: `produce` is called once with a sink that appends to a temporary
/// file in the same directory as `path`; then the file is fsync'ed and renamed onto `path`, and
/// the directory is fsync'ed. If anything fails (including an exception thrown by `produce`), the
/// temporary file is removed, whatever was at `path` before is left untouched, and an sgpt::Error
/// naming `path` is thrown.
void write_file_atomic(const std::string& path, const std::function<void(const ByteSink& sink)>& produce);

// ---- safetensors --------------------------------------------------------------------------------

/// The safetensors name of a dtype: "F32", "F64", "BF16", "F16" or "I32".
const char* safetensors_dtype_name(DType dtype);

/// One tensor's entry in a safetensors header.
struct SafeTensorInfo {
  std::string name;     ///< the tensor's name (a key of the header)
  DType dtype;          ///< element type
  Shape shape;          ///< dimensions (empty for a scalar)
  uint64_t begin = 0;   ///< first byte, relative to the data section
  uint64_t end = 0;     ///< one past the last byte, relative to the data section
};

/// A validated safetensors header (see read_safetensors_header()).
struct SafeTensorsHeader {
  std::vector<SafeTensorInfo> tensors;          ///< in the order of the JSON header
  std::map<std::string, std::string> metadata;  ///< the "__metadata__" object (may be empty)
  /// Each tensor's expected checksum, by name (empty when the file carries no checksums).
  std::map<std::string, uint64_t> checksums;
  bool checksummed = false;                     ///< the file carries checksums (see the file comment)
  uint64_t header_bytes = 0;                    ///< N, the JSON length including padding
  uint64_t data_bytes = 0;                      ///< size of the data section
};

/// The contents of a safetensors file: named CPU tensors and the metadata.
struct SafeTensors {
  std::vector<std::pair<std::string, Tensor>> tensors;  ///< in the order of the file's header
  std::map<std::string, std::string> metadata;          ///< the "__metadata__" object

  /// True when a tensor called `name` exists.
  bool contains(const std::string& name) const;
  /// The tensor called `name` (throws sgpt::Error naming the missing tensor).
  const Tensor& at(const std::string& name) const;
};

/// Whether save_safetensors() adds checksums (see the file comment).
enum class Checksums {
  Off,  ///< exactly the tensors and metadata given, byte for byte what other writers produce
  On,   ///< also "checksums" and "metadata_checksum" in the metadata
};

/// Saves `tensors` (any device; copied to the host as needed) and `metadata` to `path`,
/// atomically (see write_file_atomic()). The header lists the tensors in the given order and the
/// data section stores them contiguously in that order. Names must be non-empty, unique and not
/// "__metadata__"; dtypes F32, F64, BF16, F16 and I32 are supported. The metadata keys "checksums" and
/// "metadata_checksum" are reserved: with Checksums::On they are (re)computed, with Off they are
/// an error (stale checksums copied from another file would fail verification).
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {},
                      Checksums checksums = Checksums::Off);

/// Reads and validates only the header of `path` (cheap: the data section is not read).
/// Throws sgpt::Error naming the file when it is missing, too short, has a header length larger
/// than the file, invalid JSON, an unsupported dtype, a shape that disagrees with its byte span,
/// offsets out of range, overlapping or not covering the data section, or duplicate names; and,
/// when the file carries checksums, when the metadata fails its checksum or the checksum list does
/// not name exactly the file's tensors.
SafeTensorsHeader read_safetensors_header(const std::string& path);

/// Loads every tensor of `path` into new CPU tensors of memory category `category`, after the
/// same validation as read_safetensors_header(), and checks every tensor's checksum when the file
/// carries them (throws sgpt::Error naming the first tensor, in file order, that fails).
SafeTensors load_safetensors(const std::string& path, MemCategory category = MemCategory::Other);

/// Checks a file without keeping its tensors: the validation of read_safetensors_header(), then
/// every tensor's checksum (read in chunks, so memory stays small). Returns the header; throws
/// sgpt::Error naming the first bad tensor. A file without checksums passes the structural checks
/// only; the caller decides (header.checksummed) whether that is acceptable.
SafeTensorsHeader verify_safetensors(const std::string& path);

/// The checksum that the "checksums" entry stores for a tensor (name, dtype, shape and bytes).
uint64_t tensor_checksum(const std::string& name, DType dtype, const Shape& shape, const void* data,
                         std::size_t bytes);

/// Removes temporary files that write_file_atomic(`path`) left behind when its process was killed
/// part-way (`path`.tmp.PID.N where no process PID runs on this machine any more). Only files of
/// exactly that pattern are touched; a live writer's temporary file is kept. Returns the removed
/// paths. Throws sgpt::Error when one cannot be removed.
std::vector<std::string> remove_orphan_temp_files(const std::string& path);

}  // namespace sgpt
