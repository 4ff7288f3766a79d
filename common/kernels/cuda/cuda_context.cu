// The per-process CUDA context (see cuda_context.hpp): current stream, cuBLAS/cuBLASLt handles,
// cuBLAS workspace, scratch buffers. Host code only.

#include "kernels/cuda/cuda_context.hpp"

#include <array>
#include <vector>

#include "core/check.hpp"
#include "core/tensor.hpp"

namespace sgpt::cuda {

namespace {

constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLAS/cuBLASLt workspace (Hopper: 32 MiB)

struct Context {
  int device = 0;
  cudaDeviceProp props{};
  cudaStream_t stream = cudaStreamLegacy;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t blaslt = nullptr;
  void* workspace = nullptr;
  MatmulPrecision precision = MatmulPrecision::TF32;
  int attention_chunk_heads = 0;
  int attention_query_blocks = 0;
  bool fused_attention = true;
  std::array<Tensor, static_cast<int>(Scratch::Count)> scratch;
  void* pinned = nullptr;
  std::size_t pinned_bytes = 0;

  Context() {
    SGPT_CUDA_CHECK(cudaGetDevice(&device));
    SGPT_CUDA_CHECK(cudaGetDeviceProperties(&props, device));
    SGPT_CUBLAS_CHECK(cublasCreate(&blas));
    SGPT_CUBLAS_CHECK(cublasLtCreate(&blaslt));
    SGPT_CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
    SGPT_CUBLAS_CHECK(cublasSetWorkspace(blas, workspace, kWorkspaceBytes));
    SGPT_CUBLAS_CHECK(cublasSetStream(blas, stream));
  }
};

// Created on first use and deliberately never destroyed: destroying cuBLAS handles and device
// memory from a static destructor races with the CUDA runtime's own teardown at exit.
Context& ctx() {
  static Context* c = new Context();
  return *c;
}

}  // namespace

cudaStream_t current_stream() { return ctx().stream; }

void set_current_stream(cudaStream_t s) {
  Context& c = ctx();
  c.stream = s == nullptr ? cudaStreamLegacy : s;
  SGPT_CUBLAS_CHECK(cublasSetStream(c.blas, c.stream));
}

void synchronize() { SGPT_CUDA_CHECK(cudaStreamSynchronize(ctx().stream)); }

void device_synchronize() { SGPT_CUDA_CHECK(cudaDeviceSynchronize()); }

cudaStream_t create_stream(bool non_blocking, int priority) {
  cudaStream_t s = nullptr;
  SGPT_CUDA_CHECK(cudaStreamCreateWithPriority(&s, non_blocking ? cudaStreamNonBlocking : cudaStreamDefault,
                                               priority));
  return s;
}

void destroy_stream(cudaStream_t s) {
  SGPT_CHECK(s != ctx().stream, "destroy_stream: the stream is the current stream");
  SGPT_CUDA_CHECK(cudaStreamDestroy(s));
}

Event::Event(bool timing) {
  SGPT_CUDA_CHECK(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
}
Event::~Event() {
  if (e_) cudaEventDestroy(e_);
}
void Event::record(cudaStream_t s) { SGPT_CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::wait(cudaStream_t s) const { SGPT_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }
void Event::synchronize() const { SGPT_CUDA_CHECK(cudaEventSynchronize(e_)); }
bool Event::query() const {
  cudaError_t r = cudaEventQuery(e_);
  if (r == cudaErrorNotReady) return false;
  SGPT_CUDA_CHECK(r);
  return true;
}
float Event::elapsed_ms(const Event& start) const {
  float ms = 0.f;
  SGPT_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e_, e_));
  return ms;
}

cublasHandle_t cublas() {
  // Bound to the current stream by set_current_stream; nothing to do per call.
  return ctx().blas;
}
cublasLtHandle_t cublaslt() { return ctx().blaslt; }
void* cublas_workspace() { return ctx().workspace; }
std::size_t cublas_workspace_bytes() { return kWorkspaceBytes; }

void set_matmul_precision(MatmulPrecision p) { ctx().precision = p; }
MatmulPrecision matmul_precision() { return ctx().precision; }
cublasComputeType_t matmul_compute_type() {
  return ctx().precision == MatmulPrecision::FP32 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

void set_attention_chunk_heads(int heads) {
  SGPT_CHECK(heads >= 0, "set_attention_chunk_heads: heads must be >= 0, got ", heads);
  ctx().attention_chunk_heads = heads;
}
int attention_chunk_heads() { return ctx().attention_chunk_heads; }
void set_attention_query_blocks(int blocks) {
  SGPT_CHECK(blocks >= 0, "set_attention_query_blocks: blocks must be >= 0, got ", blocks);
  ctx().attention_query_blocks = blocks;
}
int attention_query_blocks() { return ctx().attention_query_blocks; }
void set_fused_attention(bool on) { ctx().fused_attention = on; }
bool fused_attention() { return ctx().fused_attention; }

const cudaDeviceProp& device_properties() { return ctx().props; }
int sm_count() { return ctx().props.multiProcessorCount; }

void* scratch(Scratch s, std::size_t bytes, MemCategory category) {
  Tensor& t = ctx().scratch[static_cast<int>(s)];
  if (!t.defined() || t.nbytes() < bytes || t.category() != category) {
    if (t.defined()) {
      // The old buffer may still be read by queued kernels: wait before freeing it.
      synchronize();
      t = Tensor();
    }
    int64_t n = static_cast<int64_t>((bytes + 255) / 256 * 64);  // whole 256-byte units, as f32
    t = Tensor::empty({n}, DType::F32, Device::CUDA, category);
  }
  return t.raw();
}

void release_scratch() {
  synchronize();
  for (Tensor& t : ctx().scratch) t = Tensor();
}

void* pinned_host(std::size_t bytes) {
  Context& c = ctx();
  if (c.pinned_bytes < bytes) {
    if (c.pinned) {
      synchronize();
      SGPT_CUDA_CHECK(cudaFreeHost(c.pinned));
    }
    SGPT_CUDA_CHECK(cudaMallocHost(&c.pinned, bytes));
    c.pinned_bytes = bytes;
  }
  return c.pinned;
}

void check_launch(const char* name) {
  cudaError_t e = cudaGetLastError();
  SGPT_CHECK(e == cudaSuccess, "launch of CUDA kernel ", name, " failed: ", cudaGetErrorString(e));
}

}  // namespace sgpt::cuda
