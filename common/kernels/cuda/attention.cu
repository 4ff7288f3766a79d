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
// Implementation: one batched GEMM (cublasGemmBatchedEx, pointer arrays filled by a small
// kernel) over all B x NH heads per product, and a causal-softmax kernel (one warp per row)
// over all rows. A head's q, k, v are column blocks of qkv with row stride 3C. The queries are
// cut in 2 blocks (cuda::set_attention_query_blocks) and the GEMMs skip the key block that the
// causal mask hides: 3/4 of the full T x T work. A second path
// (cuda::set_attention_chunk_heads > 0) works on chunks of (one b, G heads) with strided-batched
// GEMMs; it issues many more cuBLAS calls and was slower on H100 (host-bound), kept to compare.
// Column-major view: a row-major [R,K] block with row stride ld is, to cuBLAS, the column-major
// [K,R] matrix with leading dimension ld; each call below says which product it forms.
// Backward scratch: datt/dpre, [B,NH,T,T] floats ([G,T,T] when chunked) (Scratch::Attention,
// charged to Activations).

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
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

// ---- batched over all (b, h): pointer arrays built on the device ----------------------------------

constexpr int kMaxQueryBlocks = 8;
constexpr int kMaxSpecs = 2 + 8 * kMaxQueryBlocks;  // K, V + 8 per query block (backward)
// Each spec describes the B*NH pointers base + b * sb + h * sh (bh = b * NH + h).
struct PtrSpecs {
  const float* base[kMaxSpecs];
  int64_t sb[kMaxSpecs];
  int64_t sh[kMaxSpecs];
};

__global__ void fill_pointers_kernel(const float** out, PtrSpecs s, int nspecs, int NH, int BNH) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= nspecs * BNH) return;
  int spec = idx / BNH, bh = idx % BNH;
  int b = bh / NH, h = bh % NH;
  out[idx] = s.base[spec] + b * s.sb[spec] + h * s.sh[spec];
}

class PtrTable {
 public:
  PtrTable(int B, int NH) : NH_(NH), BNH_(B * NH) {}
  int add(const float* base, int64_t sb, int64_t sh) {
    SGPT_CHECK(n_ < kMaxSpecs, "attention: too many pointer arrays (", n_, ")");
    s_.base[n_] = base;
    s_.sb[n_] = sb;
    s_.sh[n_] = sh;
    return n_++;
  }
  // Fills the arrays on the device (one launch); call after the last add().
  void build() {
    dev_ = static_cast<const float**>(scratch(Scratch::Pointers, sizeof(float*) * n_ * BNH_, MemCategory::Other));
    int total = n_ * BNH_;
    fill_pointers_kernel<<<ceil_div(total, 256), 256, 0, current_stream()>>>(dev_, s_, n_, NH_, BNH_);
    SGPT_CUDA_LAUNCH_CHECK("fill_pointers_kernel");
  }
  const float* const* operator[](int i) const { return dev_ + (int64_t)i * BNH_; }
  float* const* mut(int i) const { return const_cast<float* const*>(dev_ + (int64_t)i * BNH_); }
  int count() const { return BNH_; }

 private:
  PtrSpecs s_{};
  int n_ = 0, NH_, BNH_;
  const float** dev_ = nullptr;
};

void gemm_batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* const* A,
                  int lda, const float* const* B, int ldb, float beta, float* const* C, int ldc, int count) {
  SGPT_CUBLAS_CHECK(cublasGemmBatchedEx(cublas(), ta, tb, m, n, k, &alpha, reinterpret_cast<const void* const*>(A),
                                        CUDA_R_32F, lda, reinterpret_cast<const void* const*>(B), CUDA_R_32F, ldb,
                                        &beta, reinterpret_cast<void* const*>(C), CUDA_R_32F, ldc, count,
                                        matmul_compute_type(), CUBLAS_GEMM_DEFAULT));
}

// Heads per chunk of the chunked path (0: not chunked, the batched path).
int chunk_heads(int NH) {
  int g = attention_chunk_heads();
  return g <= 0 ? 0 : std::min(g, NH);
}

// Query blocks [start, end): block q needs keys [0, end) only (causal mask).
std::vector<int> query_blocks(int T) {
  int nb = attention_query_blocks();
  if (nb <= 0) nb = T <= 64 ? 1 : 2;  // 2 measured best on H100 at T = 1024 (4: +1%, 8: +15%)
  nb = std::min(nb, kMaxQueryBlocks);
  int tb = (ceil_div(T, nb) + 31) / 32 * 32;  // multiples of 32 keep the sub-matrices aligned
  std::vector<int> edges{0};
  while (edges.back() < T) edges.push_back(std::min(T, edges.back() + tb));
  return edges;
}

}  // namespace

void attention_forward(Tensor& out, Tensor& att, const Tensor& qkv, int n_head) {
  if (!all_dtype(DType::F32, {&out, &att, &qkv})) {  // bf16 storage: f32 copies (the fused path is bf16's)
    F32Stage s;
    Tensor o = s.out(out, false), a = s.out(att, false);
    cuda::attention_forward(o, a, s.in(qkv), n_head);
    return s.store();
  }
  int B = static_cast<int>(qkv.size(0)), T = static_cast<int>(qkv.size(1));
  int C = static_cast<int>(qkv.size(2) / 3), NH = n_head, HS = C / NH;
  if (B == 0 || T == 0) return;
  const float* qkvp = qkv.data<float>();
  float* attp = att.data<float>();
  float* outp = out.data<float>();
  float scale = 1.f / std::sqrt(static_cast<float>(HS));
  int64_t TT = (int64_t)T * T;
  std::vector<int> e = query_blocks(T);
  int nb = static_cast<int>(e.size()) - 1;
  int G = chunk_heads(NH);
  if (G == 0) {
    // One batched GEMM over all B*NH heads per query block (same products as the chunked path below).
    PtrTable p(B, NH);
    const int64_t sq = (int64_t)T * 3 * C, sa = (int64_t)NH * TT, so = (int64_t)T * C;
    int K = p.add(qkvp + C, sq, HS), Vv = p.add(qkvp + 2 * C, sq, HS);
    std::vector<int> Q(nb), A(nb), O(nb);
    for (int i = 0; i < nb; ++i) {
      Q[i] = p.add(qkvp + (int64_t)e[i] * 3 * C, sq, HS);
      A[i] = p.add(attp + (int64_t)e[i] * T, sa, TT);
      O[i] = p.add(outp + (int64_t)e[i] * C, so, HS);
    }
    p.build();
    for (int i = 0; i < nb; ++i) {
      int r0 = e[i], r1 = e[i + 1];
      gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, r1, r1 - r0, HS, scale, p[K], 3 * C, p[Q[i]], 3 * C, 0.f, p.mut(A[i]), T,
                   p.count());
    }
    int64_t rows = (int64_t)B * NH * T;
    causal_softmax_forward_kernel<<<ceil_div(rows, kRowsPerBlock), kRowsPerBlock * kWarp, 0, current_stream()>>>(
        attp, rows, T);
    SGPT_CUDA_LAUNCH_CHECK("causal_softmax_forward_kernel");
    for (int i = 0; i < nb; ++i) {
      int r0 = e[i], r1 = e[i + 1];
      gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, r1 - r0, r1, 1.f, p[Vv], 3 * C, p[A[i]], T, 0.f, p.mut(O[i]), C,
                   p.count());
    }
    return;
  }
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
  if (!all_dtype(DType::F32, {&dqkv, &dout, &qkv, &att})) {  // bf16 storage: f32 copies
    F32Stage s;
    Tensor d = s.out(dqkv, true);
    cuda::attention_backward(d, s.in(dout), s.in(qkv), s.in(att), n_head);
    return s.store();
  }
  int B = static_cast<int>(qkv.size(0)), T = static_cast<int>(qkv.size(1));
  int C = static_cast<int>(qkv.size(2) / 3), NH = n_head, HS = C / NH;
  if (B == 0 || T == 0) return;
  const float* qkvp = qkv.data<float>();
  const float* attp = att.data<float>();
  const float* doutp = dout.data<float>();
  float* dqkvp = dqkv.data<float>();
  float scale = 1.f / std::sqrt(static_cast<float>(HS));
  int64_t TT = (int64_t)T * T;
  std::vector<int> e = query_blocks(T);
  int nb = static_cast<int>(e.size()) - 1;
  int G = chunk_heads(NH);
  if (G == 0) {
    // Batched over all B*NH heads; the same products as the chunked path below.
    float* datt =
        static_cast<float*>(scratch(Scratch::Attention, sizeof(float) * B * NH * TT, MemCategory::Activations));
    PtrTable p(B, NH);
    const int64_t sq = (int64_t)T * 3 * C, sa = (int64_t)NH * TT, so = (int64_t)T * C;
    int K = p.add(qkvp + C, sq, HS), Vv = p.add(qkvp + 2 * C, sq, HS);
    std::vector<int> Q(nb), DY(nb), D(nb), Dd(nb), Ad(nb), DQ(nb), DK(nb), DV(nb);
    for (int i = 0; i < nb; ++i) {
      int64_t r0 = e[i];
      Q[i] = p.add(qkvp + r0 * 3 * C, sq, HS);
      DY[i] = p.add(doutp + r0 * C, so, HS);
      D[i] = p.add(datt + r0 * T, sa, TT);
      Dd[i] = p.add(datt + r0 * T + r0, sa, TT);
      Ad[i] = p.add(attp + r0 * T + r0, sa, TT);
      DQ[i] = p.add(dqkvp + r0 * 3 * C, sq, HS);
      DK[i] = p.add(dqkvp + C + r0 * 3 * C, sq, HS);
      DV[i] = p.add(dqkvp + 2 * C + r0 * 3 * C, sq, HS);
    }
    p.build();
    const int n = p.count();
    for (int i = 0; i < nb; ++i) {
      int r0 = e[i], r1 = e[i + 1];
      gemm_batched(CUBLAS_OP_T, CUBLAS_OP_N, r1, r1 - r0, HS, 1.f, p[Vv], 3 * C, p[DY[i]], C, 0.f, p.mut(D[i]), T, n);
      gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, r1 - r0, T - r0, 1.f, p[DY[i]], C, p[Ad[i]], T, 1.f, p.mut(DV[i]),
                   3 * C, n);
    }
    int64_t rows = (int64_t)B * NH * T;
    causal_softmax_backward_kernel<<<ceil_div(rows, kRowsPerBlock), kRowsPerBlock * kWarp, 0, current_stream()>>>(
        datt, attp, rows, T, scale);
    SGPT_CUDA_LAUNCH_CHECK("causal_softmax_backward_kernel");
    for (int i = 0; i < nb; ++i) {
      int r0 = e[i], r1 = e[i + 1];
      gemm_batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, r1 - r0, r1, 1.f, p[K], 3 * C, p[D[i]], T, 1.f, p.mut(DQ[i]), 3 * C, n);
      gemm_batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, r1 - r0, T - r0, 1.f, p[Q[i]], 3 * C, p[Dd[i]], T, 1.f, p.mut(DK[i]),
                   3 * C, n);
    }
    return;
  }
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
