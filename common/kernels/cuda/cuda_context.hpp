#pragma once
/// @file cuda_context.hpp
/// @brief The per-process CUDA context of the CUDA backend: current stream, cuBLAS(Lt) handles,
/// cuBLAS workspace, cached scratch buffers, matmul precision, events.
///
/// One context per process (per rank), created on first use for the device that is current at
/// that moment: select the device (cudaSetDevice, done by the communicator for multi-GPU runs)
/// before the first CUDA op. The context is not thread-safe: issue ops from one host thread.
///
/// Streams. Every launcher of common/kernels/cuda enqueues its kernels and cuBLAS calls on
/// `current_stream()`. The default is the legacy default stream (`cudaStreamLegacy`, "stream 0"),
/// which is ordered with the synchronous `cudaMemcpy` / `cudaMemset` that Tensor::copy_from and
/// Tensor::zero_ use, so tensor copies, zeroing and ops need no extra synchronisation. Code that
/// wants overlap (for example, compute on one stream while NCCL runs on another) switches with
/// `set_current_stream` or the RAII `StreamGuard`, and orders the streams with `Event`s. With a
/// stream created by `create_stream(false)` (a blocking stream) legacy-stream copies still order
/// with it; with a non-blocking stream they do not: call `synchronize()` before Tensor::copy_from
/// or zero_ touches data that an op on that stream produced or will consume.

#include <cstddef>
#include <cstdint>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/memory.hpp"

namespace sgpt::cuda {

// ---- streams ------------------------------------------------------------------------------------
/// The stream every CUDA op of ScaleGPT runs on (default: cudaStreamLegacy).
cudaStream_t current_stream();
/// Makes `s` the current stream (cudaStreamLegacy or nullptr selects the legacy default stream).
void set_current_stream(cudaStream_t s);
/// Blocks the host until all work queued on the current stream has finished.
void synchronize();
/// Blocks the host until all work on the device has finished (cudaDeviceSynchronize).
void device_synchronize();
/// A new stream; `non_blocking` streams do not synchronise with the legacy default stream.
/// `priority` as in cudaStreamCreateWithPriority (lower number = higher priority; 0 = default).
cudaStream_t create_stream(bool non_blocking = true, int priority = 0);
/// Destroys a stream made by create_stream (throws sgpt::Error if it is the current stream).
void destroy_stream(cudaStream_t s);

/// Makes `s` current for the lifetime of the guard, then restores the previous stream.
class StreamGuard {
 public:
  /// Remembers the current stream and makes `s` current.
  explicit StreamGuard(cudaStream_t s) : prev_(current_stream()) { set_current_stream(s); }
  ~StreamGuard() { set_current_stream(prev_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t prev_;
};

/// A CUDA event (owning). Default: timing enabled.
class Event {
 public:
  /// Creates the event; `timing` false creates it with cudaEventDisableTiming (cheaper, no
  /// elapsed_ms()).
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  /// Takes over `o`'s event; `o` is left empty.
  Event(Event&& o) noexcept : e_(o.e_) { o.e_ = nullptr; }
  /// Records the event on `s` (default: the current stream).
  void record(cudaStream_t s = current_stream());
  /// Makes stream `s` (default: current) wait for the work recorded before this event.
  void wait(cudaStream_t s = current_stream()) const;
  /// Blocks the host until the event has completed.
  void synchronize() const;
  /// True once the recorded work has completed.
  bool query() const;
  /// Milliseconds between `start` (recorded earlier) and this event; both must have completed.
  float elapsed_ms(const Event& start) const;
  /// The underlying cudaEvent_t (still owned by this Event; nullptr after a move).
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// ---- math libraries -------------------------------------------------------------------------------
/// The cuBLAS handle, bound to the current stream and to the context's workspace.
cublasHandle_t cublas();
/// The cuBLASLt handle (pass current_stream() to cublasLtMatmul).
cublasLtHandle_t cublaslt();
/// The workspace given to cuBLAS and used by cublasLtMatmul (device memory, fixed size).
void* cublas_workspace();
/// Size of cublas_workspace() in bytes (32 MiB).
std::size_t cublas_workspace_bytes();

/// Precision of the f32 matmuls (linear layers and attention products).
enum class MatmulPrecision {
  TF32,  ///< tensor cores, inputs rounded to TF32 (10-bit mantissa), f32 accumulation (default)
  FP32,  ///< full f32 (CUDA cores): slower, bit-for-bit closer to the CPU (the fused
         ///< attention has no FP32 variant: it stays TF32)
  BF16   ///< linear layers and the fused attention: operands rounded to bf16 (8-bit mantissa),
         ///< f32 accumulation and f32 outputs; the unfused attention's products stay TF32
};
/// Sets the precision of the f32 matmuls that follow.
void set_matmul_precision(MatmulPrecision p);
/// The current matmul precision (default MatmulPrecision::TF32).
MatmulPrecision matmul_precision();
/// The cuBLAS compute type of the f32 x f32 products for the current precision (TF32 for BF16,
/// whose bf16 products use CUBLAS_COMPUTE_32F).
cublasComputeType_t matmul_compute_type();

/// How attention batches its GEMMs. 0 (default): one batched GEMM over all B x NH heads
/// (pointer arrays) per query block. `heads` > 0: chunks of (one sequence, `heads` heads), one
/// strided-batched GEMM each (more, smaller calls; measured slower on H100 at GPT-2 shapes, kept
/// for experiments).
void set_attention_chunk_heads(int heads);
/// The value set by set_attention_chunk_heads (default 0).
int attention_chunk_heads();
/// Attention splits the T queries into this many blocks so the GEMMs skip the key blocks that the
/// causal mask hides (about (1 + 1/blocks)/2 of the full T x T work). 0 (default): automatic
/// (1 for T <= 64, else 2); 1 computes the full T x T products; at most 8 are used.
void set_attention_query_blocks(int blocks);
/// The value set by set_attention_query_blocks (default 0: automatic).
int attention_query_blocks();

/// Whether the model uses the fused attention kernels (attention_fused_forward/backward, no
/// [B,NH,T,T] matrix) on CUDA where they apply (default true); false selects the unfused
/// batched-GEMM path, kept to compare.
void set_fused_attention(bool on);
/// The value set by set_fused_attention (default true).
bool fused_attention();

// ---- device facts and scratch memory ------------------------------------------------------------
/// Properties of the context's device.
const cudaDeviceProp& device_properties();
/// Number of streaming multiprocessors.
int sm_count();

/// Named scratch buffers, cached in the context and grown on demand. Each is a Tensor charged to
/// the memory tracker under the category given at the request. A scratch buffer may be reused
/// by the next op on the same stream: use it only within one launcher.
enum class Scratch {
  Reduce = 0,     ///< partial sums of reductions (Other)
  Attention,      ///< datt/dpreatt of attention_backward, D of the fused backward (Activations)
  Pointers,       ///< pointer arrays of batched GEMMs (Other)
  CastA,          ///< bf16 copy of a matmul's first operand (MatmulPrecision::BF16; Other)
  CastB,          ///< bf16 copy of a matmul's second operand (MatmulPrecision::BF16; Other)
  Count
};
/// Device pointer to at least `bytes` bytes of scratch slot `s`.
void* scratch(Scratch s, std::size_t bytes, MemCategory category);
/// Frees every cached scratch buffer (their memory returns to the tracker).
void release_scratch();

/// Pinned host memory of the context (at least `bytes`), for small device-to-host results.
void* pinned_host(std::size_t bytes);

/// Throws sgpt::Error if the last kernel launch failed (name names the kernel in the message).
void check_launch(const char* name);

}  // namespace sgpt::cuda
