// Fused causal attention (CUDA, f32 storage, TF32 tensor cores with f32 accumulation):
// FlashAttention-2's online softmax in the forward and recomputation in the backward, so the
// [B,NH,T,T] matrix is never stored (Dao, 2023, "FlashAttention-2").
//
// Contract (ops.hpp): qkv [B,T,3C] = q | k | v (head h: channels h*HS.. of each); out, dout
// [B,T,C]; lse [B,NH,T]; dqkv [B,T,3C]. With s_ij = scale * q_i.k_j, scale = 1/sqrt(HS), j <= i:
//   forward:  lse_i = log sum_j exp(s_ij);   out_i = sum_j exp(s_ij - lse_i) v_j              (=)
//   backward: p_ij = exp(s_ij - lse_i);  D_i = dout_i.out_i;  dp_ij = dout_i.v_j;
//             ds_ij = p_ij (dp_ij - D_i);
//             dq_i += scale sum_j ds_ij k_j;  dk_j += scale sum_i ds_ij q_i;
//             dv_j += sum_i p_ij dout_i                                                      (+=)
//
// Tiles of 64 queries x 64 keys, 4 warps per block; warp w owns rows 16w..16w+15 of every
// 64-row tile it multiplies. Products run on WMMA fragments (16x16x8, TF32 operands, f32
// accumulators). Softmax and the element-wise steps work on the score tile in shared memory,
// because a WMMA fragment does not say which element belongs to which row. Head sizes up to
// 128 (multiples of 4) are padded with zero columns to HSP = 32, 64 or 128.
//   forward:       one block per (query tile, b, h), key tiles 0..diagonal;
//   backward:      D first (one warp per row); one block per (key tile, b, h) sums dk, dv over
//                  query tiles diagonal..end; one block per (query tile, b, h) sums dq. The
//                  second kernel recomputes P rather than adding dq with atomics: deterministic.
// Scratch: D, [B,NH,T] floats (Scratch::Attention, charged to Activations).

#include <mma.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;
namespace wmma = nvcuda::wmma;

constexpr int kTile = 64;                  // queries and keys per tile
constexpr int kWarps = 4;                  // 16 rows each
constexpr int kThreads = kWarps * kWarp;
constexpr int kPad = 4;                    // floats of row padding: spreads rows over banks, keeps 16-byte rows
constexpr int kLdS = kTile + kPad;         // row stride of score tiles
constexpr unsigned kFull = 0xffffffffu;

using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
template <class L>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, L>;
template <class L>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, L>;

// Element (r, c) of a matrix stored with leading dimension ld in layout L.
template <class L>
__device__ __forceinline__ int at(int r, int c, int ld) {
  if constexpr (std::is_same_v<L, wmma::row_major>) return r * ld + c;
  else return c * ld + r;
}

template <class Frag>
__device__ __forceinline__ void to_tf32(Frag& f) {
#pragma unroll
  for (int t = 0; t < f.num_elements; ++t) f.x[t] = wmma::__float_to_tf32(f.x[t]);
}

// acc[n] += A[16,K] @ B[K, 16n..16n+15] for one warp: A and B in shared memory, layouts LA, LB.
template <class LA, class LB, int K, int N>
__device__ __forceinline__ void warp_mma(FragC (&acc)[N / 16], const float* A, int lda, const float* B, int ldb) {
#pragma unroll
  for (int k = 0; k < K / 8; ++k) {
    FragA<LA> a;
    wmma::load_matrix_sync(a, A + at<LA>(0, k * 8, lda), lda);
    to_tf32(a);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      FragB<LB> b;
      wmma::load_matrix_sync(b, B + at<LB>(k * 8, n * 16, ldb), ldb);
      to_tf32(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(FragC (&acc)[N / 16]) {
#pragma unroll
  for (int n = 0; n < N / 16; ++n) wmma::fill_fragment(acc[n], 0.f);
}

template <int N>
__device__ __forceinline__ void store(float* out, int ld, const FragC (&acc)[N / 16]) {
#pragma unroll
  for (int n = 0; n < N / 16; ++n) wmma::store_matrix_sync(out + n * 16, acc[n], ld, wmma::mem_row_major);
}

// dst[64, HSP] (row stride HSP + kPad) = rows r0..r0+63 of src (row stride ld, HS columns);
// rows past T and columns past HS are zeros. All threads of the block.
template <int HSP>
__device__ __forceinline__ void load_tile(float* dst, const float* src, int64_t ld, int r0, int T, int HS) {
  constexpr int LD = HSP + kPad, V = HSP / 4;
  for (int idx = threadIdx.x; idx < kTile * V; idx += kThreads) {
    int r = idx / V, c = idx % V * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r0 + r < T && c < HS) v = *reinterpret_cast<const float4*>(src + (r0 + r) * ld + c);
    *reinterpret_cast<float4*>(dst + r * LD + c) = v;
  }
}

// dst rows r0.. (row stride ld) op= tile rows (first HS columns, rows below T); op is = or +=.
template <int HSP, bool kAdd>
__device__ __forceinline__ void store_tile(float* dst, int64_t ld, const float* tile, int r0, int T, int HS) {
  constexpr int LD = HSP + kPad, V = HSP / 4;
  for (int idx = threadIdx.x; idx < kTile * V; idx += kThreads) {
    int r = idx / V, c = idx % V * 4;
    if (r0 + r >= T || c >= HS) continue;
    float4 v = *reinterpret_cast<const float4*>(tile + r * LD + c);
    float4* d = reinterpret_cast<float4*>(dst + (r0 + r) * ld + c);
    if constexpr (kAdd) {
      float4 o = *d;
      v = make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w);
    }
    *d = v;
  }
}

// ---- forward --------------------------------------------------------------------------------------

template <int HSP>
__global__ void __launch_bounds__(kThreads) attention_fused_forward_kernel(float* __restrict__ out,
                                                                           float* __restrict__ lse,
                                                                           const float* __restrict__ qkv, int T,
                                                                           int C, int NH, int HS, float scale) {
  constexpr int LD = HSP + kPad;
  extern __shared__ __align__(128) float smem[];
  float* Qs = smem;
  float* Ks = Qs + kTile * LD;
  float* Vs = Ks + kTile * LD;
  float* Os = Vs + kTile * LD;
  float* Ss = Os + kTile * LD;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y;  // the longest rows of tiles start first
  const int q0 = qt * kTile, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const float* base = qkv + (int64_t)b * T * C3 + (int64_t)h * HS;
  load_tile<HSP>(Qs, base, C3, q0, T, HS);
  for (int idx = threadIdx.x; idx < kTile * LD; idx += kThreads) Os[idx] = 0.f;
  // Each pair of lanes owns one row: lane/2 within the warp's strip, every other column.
  const int row = warp * 16 + lane / 2, half = lane & 1, i = q0 + row;
  float* srow = Ss + row * kLdS;
  float* orow = Os + row * LD;
  float m = -INFINITY, l = 0.f;
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // the previous tile's K, V are no longer read
    load_tile<HSP>(Ks, base + C, C3, k0, T, HS);
    load_tile<HSP>(Vs, base + 2 * C, C3, k0, T, HS);
    __syncthreads();
    FragC s[kTile / 16];
    zero<kTile>(s);
    warp_mma<wmma::row_major, wmma::col_major, HSP, kTile>(s, Qs + warp * 16 * LD, LD, Ks, LD);  // Q K^T
    store<kTile>(Ss + warp * 16 * kLdS, kLdS, s);
    __syncwarp();
    // Online softmax: new running max, rescale what was summed so far by exp(m_old - m_new).
    const int jmax = min(i, T - 1) - k0;  // >= 0 on every tile up to the diagonal
    float mt = -INFINITY;
    for (int c = half; c < kTile; c += 2) {
      float x = c <= jmax ? srow[c] * scale : -INFINITY;
      srow[c] = x;
      mt = fmaxf(mt, x);
    }
    const float mnew = fmaxf(m, fmaxf(mt, __shfl_xor_sync(kFull, mt, 1)));
    const float alpha = __expf(m - mnew);  // 0 on the first tile (m = -inf)
    float ls = 0.f;
    for (int c = half; c < kTile; c += 2) {
      float p = __expf(srow[c] - mnew);
      srow[c] = p;
      ls += p;
    }
    l = l * alpha + ls + __shfl_xor_sync(kFull, ls, 1);
    m = mnew;
    for (int c = half; c < HSP; c += 2) orow[c] *= alpha;
    __syncwarp();
    FragC o[HSP / 16];
#pragma unroll
    for (int n = 0; n < HSP / 16; ++n)
      wmma::load_matrix_sync(o[n], Os + warp * 16 * LD + n * 16, LD, wmma::mem_row_major);
    warp_mma<wmma::row_major, wmma::row_major, kTile, HSP>(o, Ss + warp * 16 * kLdS, kLdS, Vs, LD);  // += P V
    store<HSP>(Os + warp * 16 * LD, LD, o);
    __syncwarp();
  }
  const float inv = 1.f / l;
  for (int c = half; c < HSP; c += 2) orow[c] *= inv;
  if (half == 0 && i < T) lse[(int64_t)bh * T + i] = m + logf(l);
  __syncthreads();
  store_tile<HSP, false>(out + (int64_t)b * T * C + (int64_t)h * HS, C, Os, q0, T, HS);
}

// ---- backward ---------------------------------------------------------------------------------------

// D[bh, t] = dout[b,t,h,:] . out[b,t,h,:], one warp per (b, t, h).
__global__ void attention_row_dot_kernel(float* __restrict__ D, const float* __restrict__ dout,
                                         const float* __restrict__ out, int64_t rows, int T, int NH, int HS) {
  int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp;
  int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const float* a = dout + r * HS;  // rows of [B,T,NH,HS] are (b, t, h) in order
  const float* o = out + r * HS;
  float s = 0.f;
  for (int d = lane; d < HS; d += kWarp) s += a[d] * o[d];
  s = warp_sum(s);
  int64_t bt = r / NH;
  int h = static_cast<int>(r % NH), t = static_cast<int>(bt % T);
  int64_t b = bt / T;
  if (lane == 0) D[(b * NH + h) * T + t] = s;
}

// Shared by both backward kernels: for the query tile at q0 (Qs, dOs, lse, D in shared memory)
// and the key tile at k0 (Ks, Vs), the warp's rows of P (into Ss) and dS (into dPs).
template <int HSP>
__device__ __forceinline__ void recompute_p_ds(float* Ss, float* dPs, const float* Qs, const float* dOs,
                                               const float* Ks, const float* Vs, const float* lse_s,
                                               const float* D_s, int q0, int k0, int T, float scale) {
  constexpr int LD = HSP + kPad;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  FragC acc[kTile / 16];
  zero<kTile>(acc);
  warp_mma<wmma::row_major, wmma::col_major, HSP, kTile>(acc, Qs + warp * 16 * LD, LD, Ks, LD);  // S = Q K^T
  store<kTile>(Ss + warp * 16 * kLdS, kLdS, acc);
  zero<kTile>(acc);
  warp_mma<wmma::row_major, wmma::col_major, HSP, kTile>(acc, dOs + warp * 16 * LD, LD, Vs, LD);  // dP = dO V^T
  store<kTile>(dPs + warp * 16 * kLdS, kLdS, acc);
  __syncwarp();
  const int row = warp * 16 + lane / 2, i = q0 + row;
  const float li = lse_s[row], Di = D_s[row];
  float* srow = Ss + row * kLdS;
  float* drow = dPs + row * kLdS;
  for (int c = lane & 1; c < kTile; c += 2) {
    const int j = k0 + c;
    const float p = (i < T && j <= i) ? __expf(srow[c] * scale - li) : 0.f;
    drow[c] = p * (drow[c] - Di);
    srow[c] = p;
  }
  __syncwarp();
}

template <int HSP>
__device__ __forceinline__ void load_row_stats(float* lse_s, float* D_s, const float* lse, const float* D,
                                               int64_t bh, int q0, int T) {
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    bool ok = q0 + r < T;
    lse_s[r] = ok ? lse[bh * T + q0 + r] : 0.f;
    D_s[r] = ok ? D[bh * T + q0 + r] : 0.f;
  }
}

// dk, dv of one key tile: sums over the query tiles from the diagonal to the end.
template <int HSP>
__global__ void __launch_bounds__(kThreads) attention_fused_backward_dkdv_kernel(
    float* __restrict__ dqkv, const float* __restrict__ dout, const float* __restrict__ qkv,
    const float* __restrict__ lse, const float* __restrict__ D, int T, int C, int NH, int HS, float scale) {
  constexpr int LD = HSP + kPad;
  extern __shared__ __align__(128) float smem[];
  float* Ks = smem;
  float* Vs = Ks + kTile * LD;
  float* Qs = Vs + kTile * LD;
  float* dOs = Qs + kTile * LD;
  float* Ss = dOs + kTile * LD;
  float* dPs = Ss + kTile * kLdS;
  float* lse_s = dPs + kTile * kLdS;
  float* D_s = lse_s + kTile;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int kt = blockIdx.y, k0 = kt * kTile, nq = gridDim.y;  // low key tiles see the most queries: first
  const int warp = threadIdx.x / kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const int64_t off = (int64_t)b * T * C3 + (int64_t)h * HS;
  const float* dO = dout + (int64_t)b * T * C + (int64_t)h * HS;
  load_tile<HSP>(Ks, qkv + off + C, C3, k0, T, HS);
  load_tile<HSP>(Vs, qkv + off + 2 * C, C3, k0, T, HS);
  FragC dk[HSP / 16], dv[HSP / 16];
  zero<HSP>(dk);
  zero<HSP>(dv);
  for (int qt = kt; qt < nq; ++qt) {
    const int q0 = qt * kTile;
    __syncthreads();  // the previous query tile is no longer read
    load_tile<HSP>(Qs, qkv + off, C3, q0, T, HS);
    load_tile<HSP>(dOs, dO, C, q0, T, HS);
    load_row_stats<HSP>(lse_s, D_s, lse, D, bh, q0, T);
    __syncthreads();
    recompute_p_ds<HSP>(Ss, dPs, Qs, dOs, Ks, Vs, lse_s, D_s, q0, k0, T, scale);
    __syncthreads();  // dk, dv of a key row need every query row of P and dS
    // The warp's 16 keys are columns of P: P^T's rows are read column-major.
    warp_mma<wmma::col_major, wmma::row_major, kTile, HSP>(dv, Ss + warp * 16, kLdS, dOs, LD);  // dV += P^T dO
    warp_mma<wmma::col_major, wmma::row_major, kTile, HSP>(dk, dPs + warp * 16, kLdS, Qs, LD);  // dK += dS^T Q
  }
#pragma unroll
  for (int n = 0; n < HSP / 16; ++n)
    for (int t = 0; t < dk[n].num_elements; ++t) dk[n].x[t] *= scale;
  __syncthreads();
  store<HSP>(Qs + warp * 16 * LD, LD, dk);
  store<HSP>(dOs + warp * 16 * LD, LD, dv);
  __syncthreads();
  store_tile<HSP, true>(dqkv + off + C, C3, Qs, k0, T, HS);
  store_tile<HSP, true>(dqkv + off + 2 * C, C3, dOs, k0, T, HS);
}

// dq of one query tile: sums over the key tiles up to the diagonal.
template <int HSP>
__global__ void __launch_bounds__(kThreads) attention_fused_backward_dq_kernel(
    float* __restrict__ dqkv, const float* __restrict__ dout, const float* __restrict__ qkv,
    const float* __restrict__ lse, const float* __restrict__ D, int T, int C, int NH, int HS, float scale) {
  constexpr int LD = HSP + kPad;
  extern __shared__ __align__(128) float smem[];
  float* Ks = smem;
  float* Vs = Ks + kTile * LD;
  float* Qs = Vs + kTile * LD;
  float* dOs = Qs + kTile * LD;
  float* Ss = dOs + kTile * LD;
  float* dPs = Ss + kTile * kLdS;
  float* lse_s = dPs + kTile * kLdS;
  float* D_s = lse_s + kTile;
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * kTile;
  const int warp = threadIdx.x / kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const int64_t off = (int64_t)b * T * C3 + (int64_t)h * HS;
  load_tile<HSP>(Qs, qkv + off, C3, q0, T, HS);
  load_tile<HSP>(dOs, dout + (int64_t)b * T * C + (int64_t)h * HS, C, q0, T, HS);
  load_row_stats<HSP>(lse_s, D_s, lse, D, bh, q0, T);
  FragC dq[HSP / 16];
  zero<HSP>(dq);
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();
    load_tile<HSP>(Ks, qkv + off + C, C3, k0, T, HS);
    load_tile<HSP>(Vs, qkv + off + 2 * C, C3, k0, T, HS);
    __syncthreads();
    recompute_p_ds<HSP>(Ss, dPs, Qs, dOs, Ks, Vs, lse_s, D_s, q0, k0, T, scale);
    warp_mma<wmma::row_major, wmma::row_major, kTile, HSP>(dq, dPs + warp * 16 * kLdS, kLdS, Ks, LD);  // dQ += dS K
  }
#pragma unroll
  for (int n = 0; n < HSP / 16; ++n)
    for (int t = 0; t < dq[n].num_elements; ++t) dq[n].x[t] *= scale;
  __syncthreads();
  store<HSP>(Ss + warp * 16 * LD, LD, dq);  // Ss and dPs together hold a [64, LD] tile (LD <= 2 * kLdS)
  __syncthreads();
  store_tile<HSP, true>(dqkv + off, C3, Ss, q0, T, HS);
}

// ---- launchers ------------------------------------------------------------------------------------

template <int HSP>
constexpr int forward_smem_bytes() {
  return (4 * kTile * (HSP + kPad) + kTile * kLdS) * 4;
}
template <int HSP>
constexpr int backward_smem_bytes() {
  return (4 * kTile * (HSP + kPad) + 2 * kTile * kLdS + 2 * kTile) * 4;
}

// Raises a kernel's dynamic shared-memory limit once (the default is 48 KiB).
template <class K>
void allow_smem(K kernel, int bytes) {
  SGPT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

struct Dims {
  int B, T, C, NH, HS;
  float scale;
};

Dims dims_of(const Tensor& qkv, int n_head) {
  Dims d{static_cast<int>(qkv.size(0)), static_cast<int>(qkv.size(1)), static_cast<int>(qkv.size(2) / 3), n_head, 0,
         0.f};
  d.HS = d.C / n_head;
  d.scale = 1.f / std::sqrt(static_cast<float>(d.HS));
  SGPT_CHECK(attention_fused_supported(d.HS), "attention_fused: head size ", d.HS,
             " is not supported (a multiple of 4, at most 128)");
  return d;
}

template <int HSP>
void forward_hsp(float* out, float* lse, const float* qkv, const Dims& d) {
  static const bool once = (allow_smem(attention_fused_forward_kernel<HSP>, forward_smem_bytes<HSP>()), true);
  (void)once;
  dim3 grid(d.B * d.NH, ceil_div(d.T, kTile));
  attention_fused_forward_kernel<HSP><<<grid, kThreads, forward_smem_bytes<HSP>(), current_stream()>>>(
      out, lse, qkv, d.T, d.C, d.NH, d.HS, d.scale);
  SGPT_CUDA_LAUNCH_CHECK("attention_fused_forward_kernel");
}

template <int HSP>
void backward_hsp(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D, const Dims& d) {
  static const bool once = (allow_smem(attention_fused_backward_dkdv_kernel<HSP>, backward_smem_bytes<HSP>()),
                            allow_smem(attention_fused_backward_dq_kernel<HSP>, backward_smem_bytes<HSP>()), true);
  (void)once;
  dim3 grid(d.B * d.NH, ceil_div(d.T, kTile));
  attention_fused_backward_dkdv_kernel<HSP><<<grid, kThreads, backward_smem_bytes<HSP>(), current_stream()>>>(
      dqkv, dout, qkv, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
  SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dkdv_kernel");
  attention_fused_backward_dq_kernel<HSP><<<grid, kThreads, backward_smem_bytes<HSP>(), current_stream()>>>(
      dqkv, dout, qkv, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
  SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dq_kernel");
}

void check_aligned(const char* op, const void* p, const char* name) {
  SGPT_CHECK(aligned16(p), op, ": tensor '", name, "' must be 16-byte aligned (float4 loads)");
}

}  // namespace

bool attention_fused_supported(int head_size) { return head_size > 0 && head_size % 4 == 0 && head_size <= 128; }

void attention_fused_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int n_head) {
  const Dims d = dims_of(qkv, n_head);
  if (d.B == 0 || d.T == 0) return;
  check_aligned("attention_fused_forward", qkv.raw(), "qkv");
  check_aligned("attention_fused_forward", out.raw(), "out");
  float* o = out.data<float>();
  float* l = lse.data<float>();
  const float* q = qkv.data<float>();
  if (d.HS <= 32) forward_hsp<32>(o, l, q, d);
  else if (d.HS <= 64) forward_hsp<64>(o, l, q, d);
  else forward_hsp<128>(o, l, q, d);
}

void attention_fused_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                              const Tensor& lse, int n_head) {
  const Dims d = dims_of(qkv, n_head);
  if (d.B == 0 || d.T == 0) return;
  check_aligned("attention_fused_backward", dqkv.raw(), "dqkv");
  check_aligned("attention_fused_backward", dout.raw(), "dout");
  check_aligned("attention_fused_backward", qkv.raw(), "qkv");
  const int64_t rows = (int64_t)d.B * d.T * d.NH;
  float* D = static_cast<float*>(scratch(Scratch::Attention, sizeof(float) * rows, MemCategory::Activations));
  const int threads = 256;
  attention_row_dot_kernel<<<ceil_div(rows * kWarp, threads), threads, 0, current_stream()>>>(
      D, dout.data<float>(), out.data<float>(), rows, d.T, d.NH, d.HS);
  SGPT_CUDA_LAUNCH_CHECK("attention_row_dot_kernel");
  float* g = dqkv.data<float>();
  const float* dy = dout.data<float>();
  const float* q = qkv.data<float>();
  const float* l = lse.data<float>();
  if (d.HS <= 32) backward_hsp<32>(g, dy, q, l, D, d);
  else if (d.HS <= 64) backward_hsp<64>(g, dy, q, l, D, d);
  else backward_hsp<128>(g, dy, q, l, D, d);
}

}  // namespace sgpt::cuda
