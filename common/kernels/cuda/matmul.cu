// Linear layer (CUDA; f32 storage with TF32 tensor cores by default, see MatmulPrecision; or
// bf16 storage).
//
// Contract (ops.hpp): inp [N,C], weight [OC,C], bias [OC] (optional), out [N,OC]
//   forward:  out = inp @ weight^T + bias                                   (=)
//   backward: dinp += dout @ weight;  dweight += dout^T @ inp;  dbias += sum_rows dout  (+=)
//
// Row-major vs cuBLAS's column-major: a row-major [R,K] matrix is, to cuBLAS, the column-major
// [K,R] matrix (its transpose) with leading dimension K. So every product is computed
// transposed, e.g. out^T[OC,N] = (W as column-major [C,OC])^T @ inp^T[C,N]; each call below says
// which product it forms, with m, n, k in cuBLAS terms.
// The forward uses cuBLASLt with the bias fused in the epilogue (CUBLASLT_EPILOGUE_BIAS); the
// backward uses cublasGemmEx with beta = 1 (accumulate); dbias is a deterministic two-pass
// column sum. With MatmulPrecision::BF16 both operands of each product are first cast to bf16
// (scratch CastA, CastB) and the product runs with bf16 inputs, f32 accumulation and an f32
// output: storage, bias and beta = 1 accumulation stay f32.
// bf16 storage (every tensor bf16): the products read the tensors as they are (no casts) and
// write bf16 (cuBLAS accumulates in f32 and rounds once on store, beta = 1 included), whatever
// MatmulPrecision says; the bias is fused in bf16. f32 and bf16 mixed: f32 copies (F32Stage).

#include <map>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.hpp"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

// ---- kernels --------------------------------------------------------------------------------------

// out[n, oc] += bias[oc] (used only when cuBLASLt offers no fused-bias algorithm).
template <class T>
__global__ void add_bias_kernel(T* __restrict__ out, const T* __restrict__ bias, int64_t N, int OC) {
  int64_t n = N * OC;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    st(out + i, ld(out + i) + ld(bias + i % OC));
}

constexpr int kColY = 8;  // rows handled side by side in a column-sum block (block = 32 x kColY)

// partial[blockIdx.y, col] = sum over this block's rows of dout[row, col]. Block (32, kColY).
template <class T>
__global__ void column_sum_partial_kernel(float* __restrict__ partial, const T* __restrict__ dout, int64_t N,
                                          int OC) {
  __shared__ float buf[kColY][kWarp + 1];
  int col = blockIdx.x * kWarp + threadIdx.x;
  float s = 0.f;
  if (col < OC)
    for (int64_t r = blockIdx.y * (int64_t)kColY + threadIdx.y; r < N; r += (int64_t)gridDim.y * kColY)
      s += ld(dout + r * OC + col);
  buf[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && col < OC) {
    for (int y = 1; y < kColY; ++y) s += buf[y][threadIdx.x];
    partial[(int64_t)blockIdx.y * OC + col] = s;
  }
}

template <class T>
__global__ void column_sum_final_kernel(T* __restrict__ dbias, const float* __restrict__ partial, int parts,
                                        int OC) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= OC) return;
  float s = 0.f;
  for (int p = 0; p < parts; ++p) s += partial[(int64_t)p * OC + col];
  st(dbias + col, ld(dbias + col) + s);
}

// ---- cuBLASLt forward with the bias epilogue ------------------------------------------------------

int alignment_of(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 4 && (a % al) != 0) al /= 2;
  return al;
}

struct LtPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // false: no fused algorithm; use cublasGemmEx + add_bias_kernel
};

using LtKey = std::tuple<int64_t, int, int, bool, int, int, int, int, int, int, int>;

// Operands of a product: f32, or bf16 (copies under MatmulPrecision::BF16, or bf16 storage); the
// type of the output (and the bias): f32, or bf16 for bf16 storage.
struct Operands {
  cudaDataType_t type;
  cublasComputeType_t compute;
  cudaDataType_t out = CUDA_R_32F;
};
Operands operands(bool bf16_storage) {
  if (bf16_storage) return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_16BF};
  if (matmul_precision() == MatmulPrecision::BF16) return {CUDA_R_16BF, CUBLAS_COMPUTE_32F};
  return {CUDA_R_32F, matmul_compute_type()};
}

// A bf16 copy of n floats in scratch slot s (for MatmulPrecision::BF16).
const void* as_bf16(Scratch s, const float* src, int64_t n) {
  auto* dst = static_cast<__nv_bfloat16*>(scratch(s, sizeof(__nv_bfloat16) * n, MemCategory::Other));
  f32_to_bf16(dst, src, n);
  return dst;
}

// Plans are cached per (shape, bias, alignments, operand and compute type), for the process lifetime.
const LtPlan& lt_plan(int64_t N, int C, int OC, const void* A, const void* Bm, const void* D, const void* bias,
                      Operands ops) {
  static std::map<LtKey, LtPlan> cache;
  cublasComputeType_t ct = ops.compute;
  LtKey key{N, C, OC, bias != nullptr, alignment_of(A), alignment_of(Bm), alignment_of(D),
            bias ? alignment_of(bias) : 256, static_cast<int>(ct), static_cast<int>(ops.type), static_cast<int>(ops.out)};
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  LtPlan p;
  SGPT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, ct, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  SGPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  SGPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  SGPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
  if (bias)
    SGPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  // A = weight: column-major [C, OC], ld C, transposed -> [OC, C]. B = inp: column-major [C, N].
  // D = out: column-major [OC, N], ld OC.  m = OC, n = N, k = C.
  SGPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, ops.type, C, OC, C));
  SGPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, ops.type, C, N, C));
  SGPT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, ops.out, OC, N, OC));
  cublasLtMatmulPreference_t pref = nullptr;
  SGPT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  std::size_t ws = cublas_workspace_bytes();
  SGPT_CUBLAS_CHECK(
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  uint32_t al_a = std::get<4>(key), al_b = std::get<5>(key), al_d = std::get<6>(key);
  SGPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a,
                                                         sizeof(al_a)));
  SGPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b,
                                                         sizeof(al_b)));
  SGPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d,
                                                         sizeof(al_d)));
  SGPT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d,
                                                         sizeof(al_d)));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  cublasStatus_t st =
      cublasLtMatmulAlgoGetHeuristic(cublaslt(), p.op, p.a, p.b, p.d, p.d, pref, 1, &heur, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && (!bias || std::get<7>(key) >= 16)) {
    p.algo = heur.algo;
    p.ok = true;
  }
  return cache.emplace(key, p).first->second;
}

void gemm_ex(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* A, int lda,
             const void* B, int ldb, float beta, void* C, int ldc, Operands ops) {
  const float alpha = 1.f;
  SGPT_CUBLAS_CHECK(cublasGemmEx(cublas(), ta, tb, m, n, k, &alpha, A, ops.type, lda, B, ops.type, ldb, &beta, C,
                                 ops.out, ldc, ops.compute, CUBLAS_GEMM_DEFAULT));
}

// dbias[OC] += column sums of dout [N, OC] (deterministic: fixed partials, then one sum per column).
template <class T>
void column_sum(T* dbias, const T* dout, int64_t N, int OC) {
  dim3 grid(ceil_div(OC, kWarp), 1);
  int parts = std::max(1, std::min(ceil_div(4 * sm_count(), grid.x), ceil_div(N, kColY)));
  grid.y = parts;
  float* partial = static_cast<float*>(scratch(Scratch::Reduce, sizeof(float) * parts * OC, MemCategory::Other));
  column_sum_partial_kernel<T><<<grid, dim3(kWarp, kColY), 0, current_stream()>>>(partial, dout, N, OC);
  SGPT_CUDA_LAUNCH_CHECK("column_sum_partial_kernel");
  column_sum_final_kernel<T><<<ceil_div(OC, 256), 256, 0, current_stream()>>>(dbias, partial, parts, OC);
  SGPT_CUDA_LAUNCH_CHECK("column_sum_final_kernel");
}

}  // namespace

void matmul_forward(Tensor& out, const Tensor& inp, const Tensor& weight, const Tensor& bias) {
  int C = static_cast<int>(inp.size(-1));
  int OC = static_cast<int>(weight.size(0));
  int64_t N = inp.numel() / C;
  if (N == 0 || OC == 0) return;
  SGPT_CHECK(N <= INT32_MAX, "matmul_forward: N = ", N, " rows is more than cuBLAS takes");
  if (!all_dtype(weight.dtype(), {&out, &inp, &bias})) {  // f32 and bf16 mixed
    F32Stage s;
    Tensor o = s.out(out, false);
    cuda::matmul_forward(o, s.in(inp), s.in(weight), s.in(bias));
    return s.store();
  }
  const bool bf16_storage = weight.dtype() == DType::BF16;
  const Operands ops = operands(bf16_storage);
  const void* A = weight.raw();
  const void* Bm = inp.raw();
  if (ops.type == CUDA_R_16BF && !bf16_storage) {  // f32 storage, bf16 products: cast first
    A = as_bf16(Scratch::CastA, weight.data<float>(), (int64_t)OC * C);
    Bm = as_bf16(Scratch::CastB, inp.data<float>(), N * C);
  }
  void* D = out.raw();
  const void* b = bias.defined() ? bias.raw() : nullptr;
  const LtPlan& p = lt_plan(N, C, OC, A, Bm, D, b, ops);
  if (p.ok) {
    if (b)
      SGPT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof(b)));
    const float alpha = 1.f, beta = 0.f;
    SGPT_CUBLAS_CHECK(cublasLtMatmul(cublaslt(), p.op, &alpha, A, p.a, Bm, p.b, &beta, D, p.d, D, p.d, &p.algo,
                                     cublas_workspace(), cublas_workspace_bytes(), current_stream()));
    return;
  }
  // Fallback: plain GEMM, then the bias.   out^T[OC,N] = (W col-major [C,OC])^T @ inp^T[C,N]
  gemm_ex(CUBLAS_OP_T, CUBLAS_OP_N, OC, static_cast<int>(N), C, A, C, Bm, C, 0.f, D, OC, ops);
  if (b) {
    by_storage(weight.dtype(), [&]<class T>() {
      add_bias_kernel<T><<<grid_for(N * OC, 256), 256, 0, current_stream()>>>(ptr<T>(out), ptr<T>(bias), N, OC);
      SGPT_CUDA_LAUNCH_CHECK("add_bias_kernel");
    });
  }
}

void matmul_backward(Tensor& dinp, Tensor& dweight, Tensor& dbias, const Tensor& dout, const Tensor& inp,
                     const Tensor& weight) {
  int C = static_cast<int>(inp.size(-1));
  int OC = static_cast<int>(weight.size(0));
  int64_t N = inp.numel() / C;
  if (N == 0 || OC == 0) return;
  SGPT_CHECK(N <= INT32_MAX, "matmul_backward: N = ", N, " rows is more than cuBLAS takes");
  if (!all_dtype(weight.dtype(), {&dinp, &dweight, &dbias, &dout, &inp})) {  // f32 and bf16 mixed
    F32Stage s;
    Tensor di = s.out(dinp, true), dw = s.out(dweight, true), db = s.out(dbias, true);
    cuda::matmul_backward(di, dw, db, s.in(dout), s.in(inp), s.in(weight));
    return s.store();
  }
  int n = static_cast<int>(N);
  const bool bf16_storage = weight.dtype() == DType::BF16;
  const Operands ops = operands(bf16_storage);
  const bool cast = ops.type == CUDA_R_16BF && !bf16_storage;  // f32 storage, bf16 products
  // Stream order makes reusing CastA safe: the second cast runs after the first product.
  const void* g = cast ? as_bf16(Scratch::CastB, dout.data<float>(), N * OC) : dout.raw();
  // dinp^T[C,N] += W^T[C,OC] @ dout^T[OC,N]: W is column-major [C,OC] as stored, dout [OC,N].
  if (dinp.defined()) {
    const void* w = cast ? as_bf16(Scratch::CastA, weight.data<float>(), (int64_t)OC * C) : weight.raw();
    gemm_ex(CUBLAS_OP_N, CUBLAS_OP_N, C, n, OC, w, C, g, OC, 1.f, dinp.raw(), C, ops);
  }
  // dW^T[C,OC] += inp^T[C,N] @ dout[N,OC]: inp is column-major [C,N]; dout column-major [OC,N], transposed.
  const void* x = cast ? as_bf16(Scratch::CastA, inp.data<float>(), N * C) : inp.raw();
  gemm_ex(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, n, x, C, g, OC, 1.f, dweight.raw(), C, ops);
  if (dbias.defined())
    by_storage(weight.dtype(), [&]<class T>() { column_sum<T>(ptr<T>(dbias), ptr<T>(dout), N, OC); });
}

}  // namespace sgpt::cuda
