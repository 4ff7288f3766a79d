// Causal multi-head self-attention (CUDA, f32 storage, matmuls on TF32 tensor cores by default).
//
// Contract (ops.hpp): qkv [B,T,3C] = q | k | v, each [B,T,NH,HS] (HS = C/NH); att [B,NH,T,T];
// out, dout [B,T,C]; dqkv [B,T,3C].
//   forward:  att[b,h] = softmax_causal(q k^T / sqrt(HS)) (zeros above the diagonal);
//             out[b,:,h*HS:(h+1)*HS] = att[b,h] @ v[b,:,h]                         (=)
//   backward: datt = dout @ v^T; dv += att^T @ dout;
//             dpre = att * (datt - rowsum(att * datt)) / sqrt(HS);
//             dq += dpre @ k; dk += dpre^T @ q                                        (+=)
//
// Implementation: the work is cut in chunks of (one b, G heads), G chosen so that a chunk's
// G x T x T scores fit in about a third of L2 (or set by cuda::set_attention_chunk_heads); per
// chunk, strided-batched GEMMs over the G heads (a head's q, k, v are column blocks of qkv with
// row stride 3C, so heads are HS apart) and a causal-softmax kernel (one warp per row) run back
// to back, so the scores are re-read from L2 rather than from memory. The queries are cut in
// up to 4 blocks (cuda::set_attention_query_blocks) and the GEMMs skip the key blocks that the
// causal mask hides, so they do about 5/8 of the full T x T work at T = 1024.
// Column-major view: a row-major [R,K] block with row stride ld is, to cuBLAS, the column-major
// [K,R] matrix with leading dimension ld; each call below says which product it forms.
// Backward scratch: datt/dpre for one chunk, [G,T,T] floats (Scratch::Attention,
// charged to Activations).

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;

constexpr int kRowsPerBlock = 8;  // warps per block, one row each

// att: rows of length T; row r has query position i = r % T. In place: scaled scores -> probs.
__global__ void causal_softmax_forward_kernel(float* __restrict__ att, int64_t rows, int T) {
  int lane = threadIdx.x % kWarp;
  int64_t r = blockIdx.x * (int64_t)kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  int i = static_cast<int>(r % T);
  float* a = att + r * T;
  MaxSum ms{-INFINITY, 0.f};
  for (int j = lane; j <= i; j += kWarp) ms = maxsum_merge(ms, MaxSum{a[j], 1.f});
  ms = warp_maxsum(ms);
  float inv = 1.f / ms.s;
  for (int j = lane; j < T; j += kWarp) a[j] = j <= i ? __expf(a[j] - ms.m) * inv : 0.f;
}

// datt -> dpre in place: dpre[j] = scale * att[j] * (datt[j] - sum_k att[k] datt[k]) for j <= i.
__global__ void causal_softmax_backward_kernel(float* __restrict__ datt, const float* __restrict__ att, int64_t rows,
                                               int T, float scale) {
  int lane = threadIdx.x % kWarp;
  int64_t r = blockIdx.x * (int64_t)kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  int i = static_cast<int>(r % T);
  float* d = datt + r * T;
  const float* a = att + r * T;
  float s = 0.f;
  for (int j = lane; j <= i; j += kWarp) s += a[j] * d[j];
  s = warp_sum(s);
  for (int j = lane; j < T; j += kWarp) d[j] = j <= i ? scale * a[j] * (d[j] - s) : 0.f;
}

// C[h] = alpha * op(A[h]) op(B[h]) + beta * C[h] for the NH heads of one sequence.
void gemm_heads(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* A, int lda,
                int64_t sa, const float* B, int ldb, int64_t sb, float beta, float* C, int ldc, int64_t sc,
                int heads) {
  SGPT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(cublas(), ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, sa, B,
                                               CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, heads,
                                               matmul_compute_type(), CUBLAS_GEMM_DEFAULT));
}

// Heads per chunk: the configured value, else as many heads as fit in about a third of L2.
int chunk_heads(int NH, int T) {
  int g = attention_chunk_heads();
  if (g <= 0) {
    double l2 = device_properties().l2CacheSize > 0 ? device_properties().l2CacheSize : (40 << 20);
    g = static_cast<int>(l2 / 3 / (4.0 * T * T));
  }
  return std::max(1, std::min(g, NH));
}

// Query blocks [start, end): block q needs keys [0, end) only (causal mask).
std::vector<int> query_blocks(int T) {
  int nb = attention_query_blocks();
  if (nb <= 0) nb = T <= 64 ? 1 : std::min(4, (T + 63) / 64);
  int tb = (ceil_div(T, nb) + 31) / 32 * 32;  // multiples of 32 keep the sub-matrices aligned
  std::vector<int> edges{0};
  while (edges.back() < T) edges.push_back(std::min(T, edges.back() + tb));
  return edges;
}

}  // namespace

void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head) {
  int B = static_cast<int>(qkv.size(0)), T = static_cast<int>(qkv.size(1));
  int C = static_cast<int>(qkv.size(2) / 3), NH = n_head, HS = C / NH;
  if (B == 0 || T == 0) return;
  const float* qkvp = qkv.data<float>();
  float* attp = att.data<float>();
  float* outp = out.data<float>();
  float scale = 1.f / std::sqrt(static_cast<float>(HS));
  int64_t TT = (int64_t)T * T;
  int G = chunk_heads(NH, T);
  std::vector<int> e = query_blocks(T);
  int nb = static_cast<int>(e.size()) - 1;
  // Chunks of (b, heads h0..h0+g): scores -> softmax -> att @ v while the chunk is in L2.
  for (int b = 0; b < B; ++b) {
    for (int h0 = 0; h0 < NH; h0 += G) {
      int g = std::min(G, NH - h0);
      const float* q = qkvp + (int64_t)b * T * 3 * C + (int64_t)h0 * HS;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* a = attp + ((int64_t)b * NH + h0) * TT;
      float* o = outp + (int64_t)b * T * C + (int64_t)h0 * HS;
      // Queries [r0,r1) against keys [0,r1): scores^T[r1, r1-r0] = K[0:r1] @ Q[r0:r1]^T, stored
      // at att rows r0.. (att row-major [Tq,Tk] is column-major [Tk,Tq] with ld T). K is the
      // column-major [HS,Tk] block (ld 3C), transposed. Entries above the diagonal that the
      // GEMMs leave unwritten are never read: the softmax writes them as zeros.
      for (int i = 0; i < nb; ++i) {
        int r0 = e[i], r1 = e[i + 1];
        gemm_heads(CUBLAS_OP_T, CUBLAS_OP_N, r1, r1 - r0, HS, scale, k, 3 * C, HS, q + (int64_t)r0 * 3 * C, 3 * C,
                   HS, 0.f, a + (int64_t)r0 * T, T, TT, g);
      }
      int64_t rows = (int64_t)g * T;
      causal_softmax_forward_kernel<<<ceil_div(rows, kRowsPerBlock), kRowsPerBlock * kWarp, 0, current_stream()>>>(
          a, rows, T);
      SGPT_CUDA_LAUNCH_CHECK("causal_softmax_forward_kernel");
      // out[r0:r1]^T[HS, r1-r0] = V[0:r1]^T @ att[r0:r1, 0:r1]^T.
      for (int i = 0; i < nb; ++i) {
        int r0 = e[i], r1 = e[i + 1];
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_N, HS, r1 - r0, r1, 1.f, v, 3 * C, HS, a + (int64_t)r0 * T, T, TT, 0.f,
                   o + (int64_t)r0 * C, C, HS, g);
      }
    }
  }
}

void attention_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& att, int n_head) {
  int B = static_cast<int>(qkv.size(0)), T = static_cast<int>(qkv.size(1));
  int C = static_cast<int>(qkv.size(2) / 3), NH = n_head, HS = C / NH;
  if (B == 0 || T == 0) return;
  const float* qkvp = qkv.data<float>();
  const float* attp = att.data<float>();
  const float* doutp = dout.data<float>();
  float* dqkvp = dqkv.data<float>();
  float scale = 1.f / std::sqrt(static_cast<float>(HS));
  int64_t TT = (int64_t)T * T;
  int G = chunk_heads(NH, T);
  std::vector<int> e = query_blocks(T);
  int nb = static_cast<int>(e.size()) - 1;
  float* datt = static_cast<float*>(scratch(Scratch::Attention, sizeof(float) * G * TT, MemCategory::Activations));
  for (int b = 0; b < B; ++b) {
    for (int h0 = 0; h0 < NH; h0 += G) {
      int g = std::min(G, NH - h0);
      int64_t off = (int64_t)b * T * 3 * C + (int64_t)h0 * HS;
      const float* q = qkvp + off;
      const float* k = q + C;
      const float* v = q + 2 * C;
      float* dq = dqkvp + off;
      float* dk = dq + C;
      float* dv = dq + 2 * C;
      const float* a = attp + ((int64_t)b * NH + h0) * TT;
      const float* dy = doutp + (int64_t)b * T * C + (int64_t)h0 * HS;
      for (int i = 0; i < nb; ++i) {
        int r0 = e[i], r1 = e[i + 1];
        // datt[r0:r1, 0:r1]^T = V[0:r1] @ dout[r0:r1]^T: V is the column-major [HS,Tk] block, transposed.
        gemm_heads(CUBLAS_OP_T, CUBLAS_OP_N, r1, r1 - r0, HS, 1.f, v, 3 * C, HS, dy + (int64_t)r0 * C, C, HS, 0.f,
                   datt + (int64_t)r0 * T, T, TT, g);
        // Keys [r0,r1) get gradient from queries [r0,T):
        // dv[r0:r1]^T += dout[r0:T]^T @ att[r0:T, r0:r1]  (att stored column-major as att^T: transposed).
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_T, HS, r1 - r0, T - r0, 1.f, dy + (int64_t)r0 * C, C, HS,
                   a + (int64_t)r0 * T + r0, T, TT, 1.f, dv + (int64_t)r0 * 3 * C, 3 * C, HS, g);
      }
      int64_t rows = (int64_t)g * T;
      causal_softmax_backward_kernel<<<ceil_div(rows, kRowsPerBlock), kRowsPerBlock * kWarp, 0, current_stream()>>>(
          datt, a, rows, T, scale);
      SGPT_CUDA_LAUNCH_CHECK("causal_softmax_backward_kernel");
      for (int i = 0; i < nb; ++i) {
        int r0 = e[i], r1 = e[i + 1];
        // dq[r0:r1]^T += K[0:r1]^T @ dpre[r0:r1, 0:r1]^T  (dpre row-major = column-major dpre^T).
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_N, HS, r1 - r0, r1, 1.f, k, 3 * C, HS, datt + (int64_t)r0 * T, T, TT, 1.f,
                   dq + (int64_t)r0 * 3 * C, 3 * C, HS, g);
        // dk[r0:r1]^T += Q[r0:T]^T @ dpre[r0:T, r0:r1].
        gemm_heads(CUBLAS_OP_N, CUBLAS_OP_T, HS, r1 - r0, T - r0, 1.f, q + (int64_t)r0 * 3 * C, 3 * C, HS,
                   datt + (int64_t)r0 * T + r0, T, TT, 1.f, dk + (int64_t)r0 * 3 * C, 3 * C, HS, g);
      }
    }
  }
}

}  // namespace sgpt::cuda
