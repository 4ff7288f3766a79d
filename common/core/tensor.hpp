#pragma once
/// @file tensor.hpp
/// @brief A minimal dense tensor: shape, dtype, device, and storage shared by views.
///
/// A Tensor is a handle. Copying it copies the handle, not the data; `view()` makes a tensor that
/// looks into a range of another one's storage (parameter views of the flat parameter buffer,
/// gradient buckets, ZeRO shards and pipeline stages are all views). Storage is freed, and the
/// memory tracker credited, when the last handle goes away.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/half.hpp"
#include "core/memory.hpp"

namespace sgpt {

/// Element type. BF16 and F16 are 16-bit storage types (core/half.hpp): CPU kernels compute in
/// f32 and round on store.
enum class DType : unsigned char { F32 = 0, F64, BF16, I32, F16 };

/// Bytes per element of `t` (f32 4, f64 8, bf16 2, i32 4, f16 2).
std::size_t dtype_size(DType t);
/// Short name of `t`: "f32", "f64", "bf16", "i32" or "f16" (used in error messages).
const char* dtype_name(DType t);
/// True for the 16-bit floating-point types (BF16, F16).
inline bool is_half(DType t) { return t == DType::BF16 || t == DType::F16; }

/// Maps a C++ type to its DType.
template <class T> struct dtype_of;
/// float is DType::F32.
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
/// double is DType::F64.
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
/// int32_t is DType::I32.
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
/// bf16_t is DType::BF16.
template <> struct dtype_of<bf16_t> { static constexpr DType value = DType::BF16; };
/// f16_t is DType::F16.
template <> struct dtype_of<f16_t> { static constexpr DType value = DType::F16; };
/// @var dtype_of<float>::value
/// DType::F32.
/// @var dtype_of<double>::value
/// DType::F64.
/// @var dtype_of<int32_t>::value
/// DType::I32.
/// @var dtype_of<bf16_t>::value
/// DType::BF16.
/// @var dtype_of<f16_t>::value
/// DType::F16.

/// Dimensions of a tensor, outermost first (row-major); {} is a scalar (one element).
using Shape = std::vector<int64_t>;
/// `s` as text, e.g. "[4, 64, 768]" (for messages).
std::string shape_str(const Shape& s);
/// Number of elements of `s` (the product of its dimensions; 1 for {}). Throws sgpt::Error on a
/// negative dimension.
int64_t shape_numel(const Shape& s);

/// Raw memory on a device, charged to the tracker for its lifetime.
class Storage {
 public:
  /// Allocates `bytes` uninitialised bytes on `device` (host memory 64-byte aligned) and charges
  /// them to `category` in the MemoryTracker; throws sgpt::Error when out of memory or when the
  /// build has no CUDA. Freed, and the tracker credited, by the destructor.
  Storage(std::size_t bytes, Device device, MemCategory category);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  /// Start of the allocation (a device pointer for Device::CUDA); owned by this Storage.
  void* data() const { return data_; }
  /// Size in bytes, as requested (and as charged to the tracker).
  std::size_t bytes() const { return bytes_; }
  /// Device the memory lives on.
  Device device() const { return device_; }
  /// Category the bytes are charged to.
  MemCategory category() const { return category_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_;
  Device device_;
  MemCategory category_;
};

/// A dense, contiguous, row-major tensor (or a view into another tensor's storage).
class Tensor {
 public:
  Tensor() = default;

  /// New uninitialised storage.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU,
                      MemCategory category = MemCategory::Other);
  /// New storage filled with zeros.
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU,
                      MemCategory category = MemCategory::Other);
  /// A CPU tensor holding `values` (for tests and small constants).
  template <class T>
  static Tensor from(const std::vector<T>& values, const Shape& shape,
                     MemCategory category = MemCategory::Other);

  /// A tensor of `shape` that shares storage, starting `offset` elements into this one.
  Tensor view(int64_t offset, const Shape& shape) const;
  /// The same elements with another shape (numel must agree).
  Tensor reshape(const Shape& shape) const { return view(0, shape); }
  /// Rows [begin, end) of the first dimension.
  Tensor slice(int64_t begin, int64_t end) const;

  /// True when the tensor has storage (a default-constructed Tensor is undefined).
  bool defined() const { return storage_ != nullptr; }
  /// The dimensions, outermost first.
  const Shape& shape() const { return shape_; }
  /// Number of dimensions.
  int dim() const { return static_cast<int>(shape_.size()); }
  /// Size of dimension i (negative i counts from the end).
  int64_t size(int i) const;
  /// Number of elements (product of the shape).
  int64_t numel() const { return shape_numel(shape_); }
  /// Bytes of this tensor's elements: numel() * dtype_size(dtype()) (not of the whole storage).
  std::size_t nbytes() const { return numel() * dtype_size(dtype_); }
  /// Element type.
  DType dtype() const { return dtype_; }
  /// Device of the storage (Device::CPU for an undefined tensor).
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  /// Memory category of the storage (MemCategory::Other for an undefined tensor).
  MemCategory category() const { return storage_ ? storage_->category() : MemCategory::Other; }
  /// Offset of the first element into the storage, in elements (0 unless a view).
  int64_t offset() const { return offset_; }

  /// Untyped pointer to the first element (a device pointer on CUDA); throws sgpt::Error when
  /// undefined. The storage owns the memory.
  void* raw() const;
  /// Typed pointer; checks that T matches the dtype.
  template <class T>
  T* data() const {
    SGPT_CHECK(dtype_of<T>::value == dtype_, "tensor holds ", dtype_name(dtype_), ", not ", dtype_name(dtype_of<T>::value));
    return static_cast<T*>(raw());
  }

  /// Sets every element to zero (on its device).
  void zero_();
  /// Copies another tensor's elements (same numel and dtype; any devices).
  void copy_from(const Tensor& src);
  /// A copy on `device` (same dtype and category).
  Tensor to(Device device) const;
  /// A copy with another element type (CPU only; between f32, f64, bf16 and f16; narrowing rounds
  /// to nearest even, through f32 for f64 -> 16 bits).
  Tensor cast(DType dtype) const;
  /// The elements as doubles, copied to the host (for tests and printing).
  std::vector<double> to_vector() const;

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::F32;
};

/// Copies `bytes` between any two devices (synchronous).
void device_memcpy(void* dst, Device dst_dev, const void* src, Device src_dev, std::size_t bytes);
/// Waits until all work queued on `device` has finished (a no-op on the CPU).
void device_synchronize(Device device);
/// True when this build has CUDA and a GPU is visible.
bool cuda_available();

template <class T>
Tensor Tensor::from(const std::vector<T>& values, const Shape& shape, MemCategory category) {
  SGPT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from: ", values.size(),
             " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>::value, Device::CPU, category);
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}

}  // namespace sgpt
