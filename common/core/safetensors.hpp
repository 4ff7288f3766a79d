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

/// Saves `tensors` (any device; copied to the host as needed) and `metadata` to `path`,
/// atomically (see write_file_atomic()). The header lists the tensors in the given order and the
/// data section stores them contiguously in that order. Names must be non-empty, unique and not
/// "__metadata__"; dtypes F32, F64, BF16, F16 and I32 are supported.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads and validates only the header of `path` (cheap: the data section is not read).
/// Throws sgpt::Error naming the file when it is missing, too short, has a header length larger
/// than the file, invalid JSON, an unsupported dtype, a shape that disagrees with its byte span,
/// offsets out of range, overlapping or not covering the data section, or duplicate names.
SafeTensorsHeader read_safetensors_header(const std::string& path);

/// Loads every tensor of `path` into new CPU tensors of memory category `category`, after the
/// same validation as read_safetensors_header().
SafeTensors load_safetensors(const std::string& path, MemCategory category = MemCategory::Other);

}  // namespace sgpt
