// Fused causal attention (CUDA, f32 or bf16 storage, tensor cores with f32 accumulation): FlashAttention-2's
// online softmax in the forward and recomputation in the backward, so the [B,NH,T,T] matrix is
// never stored (Dao, 2023, "FlashAttention-2").
//
// Contract (ops.hpp): qkv [B,T,3C] = q | k | v (head h: channels h*HS.. of each); out, dout
// [B,T,C]; lse [B,NH,T]; dqkv [B,T,3C]. With s_ij = scale * q_i.k_j, scale = 1/sqrt(HS), j <= i:
//   forward:  lse_i = log sum_j exp(s_ij);   out_i = sum_j exp(s_ij - lse_i) v_j              (=)
//   backward: p_ij = exp(s_ij - lse_i);  D_i = dout_i.out_i;  dp_ij = dout_i.v_j;
//             ds_ij = p_ij (dp_ij - D_i);
//             dq_i += scale sum_j ds_ij k_j;  dk_j += scale sum_i ds_ij q_i;
//             dv_j += sum_i p_ij dout_i                                                      (+=)
//
// Storage: qkv, out, dout, dqkv all f32 or all bf16 (lse f32; other mixes run on f32 copies).
// Two implementations of that contract, chosen by the matmul precision (bf16 storage: always mma):
//  - TF32 (the default): WMMA fragments (16x16x8, f32 operands rounded to TF32). WMMA hides
//    which fragment element belongs to which row, so every score tile goes through shared
//    memory for the softmax.
//  - bf16 (MatmulPrecision::BF16): mma.sync.m16n8k16 with register-resident tiles (namespace
//    mma below): q, k, v and dout are first packed to bf16, one head after another; tiles stream
//    through shared memory with cp.async, two buffers deep; S, P, dP, dS and the accumulators
//    never leave the registers.
// Both: tiles of 64 queries x 64 keys, 4 warps per block; warp w owns rows 16w..16w+15 of every
// 64-row tile it multiplies; f32 accumulation and softmax. Head sizes up to 128 (multiples of 4)
// are padded with zero columns to HSP = 32, 64 or 128.
//   forward:       one block per (query tile, b, h), key tiles 0..diagonal;
//   backward:      D first (one warp per row); one block per (key tile, b, h) sums dk, dv over
//                  query tiles diagonal..end; one block per (query tile, b, h) sums dq. The
//                  second kernel recomputes P rather than adding dq with atomics: deterministic.
// Scratch: D, [B,NH,T] floats (Scratch::Attention, charged to Activations); bf16 only: the
// packed q, k, v ([3,B*NH,T,HSP]) and dout ([B*NH,T,HSP]) in the matmuls' cast scratch
// (Scratch::CastA, CastB; Other), which the lm_head's casts already make larger.

#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/stage.hpp"
#include "kernels/cuda_ops.hpp"

namespace sgpt::cuda {
namespace {

using namespace detail;
namespace wmma = nvcuda::wmma;

constexpr int kTile = 64;                  // queries and keys per tile
constexpr int kWarps = 4;                  // 16 rows each
constexpr int kThreads = kWarps * kWarp;
constexpr int kPad = 4;                    // floats of row padding: spreads rows over banks, keeps 16-byte rows
constexpr int kLdS = kTile + kPad;         // row stride of f32 score tiles
constexpr unsigned kFull = 0xffffffffu;

// The operand type E of the products: its WMMA shape (16x16xK), precision tag and row padding.
// Only E = float (TF32) is defined: bf16 runs on the mma.sync kernels further down (the WMMA
// kernels once ran bf16 too, docs/cuda.md row 4; their bf16 branches are kept generic in E).
template <class E>
struct Op;
template <>
struct Op<float> {  // TF32: f32 in memory, rounded to a 10-bit mantissa in the fragment
  static constexpr int K = 8, Pad = 4;
  using Prec = wmma::precision::tf32;
};
template <class E>
constexpr bool kF32 = std::is_same_v<E, float>;
template <class E>
constexpr int kLdP = kF32<E> ? kLdS : kTile + Op<E>::Pad;  // row stride of the P and dS tiles

template <class E>
using FragC = wmma::fragment<wmma::accumulator, 16, 16, Op<E>::K, float>;
template <class E, class L>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, Op<E>::K, typename Op<E>::Prec, L>;
template <class E, class L>
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, Op<E>::K, typename Op<E>::Prec, L>;

template <class E>
__device__ __forceinline__ E to_op(float x) {
  if constexpr (kF32<E>) return x;
  else return __float2bfloat16_rn(x);
}

// Element (r, c) of a matrix stored with leading dimension ld in layout L.
template <class L>
__device__ __forceinline__ int at(int r, int c, int ld) {
  if constexpr (std::is_same_v<L, wmma::row_major>) return r * ld + c;
  else return c * ld + r;
}

// TF32 fragments hold f32 bits; without this the tensor cores truncate them (round toward zero),
// which doubles the error. bf16 fragments were rounded when the tile was stored.
template <class E, class Frag>
__device__ __forceinline__ void round_operand(Frag& f) {
  if constexpr (kF32<E>) {
#pragma unroll
    for (int t = 0; t < f.num_elements; ++t) f.x[t] = wmma::__float_to_tf32(f.x[t]);
  }
}

// acc[n] += A[16,K] @ B[K, 16n..16n+15] for one warp: A and B in shared memory, layouts LA, LB.
template <class E, class LA, class LB, int K, int N>
__device__ __forceinline__ void warp_mma(FragC<E> (&acc)[N / 16], const E* A, int lda, const E* B, int ldb) {
#pragma unroll
  for (int k = 0; k < K / Op<E>::K; ++k) {
    FragA<E, LA> a;
    wmma::load_matrix_sync(a, A + at<LA>(0, k * Op<E>::K, lda), lda);
    round_operand<E>(a);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      FragB<E, LB> b;
      wmma::load_matrix_sync(b, B + at<LB>(k * Op<E>::K, n * 16, ldb), ldb);
      round_operand<E>(b);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

template <class E, int N>
__device__ __forceinline__ void zero(FragC<E> (&acc)[N / 16]) {
#pragma unroll
  for (int n = 0; n < N / 16; ++n) wmma::fill_fragment(acc[n], 0.f);
}

template <class E, int N>
__device__ __forceinline__ void store(float* out, int ld, const FragC<E> (&acc)[N / 16]) {
#pragma unroll
  for (int n = 0; n < N / 16; ++n) wmma::store_matrix_sync(out + n * 16, acc[n], ld, wmma::mem_row_major);
}

template <class E, int N>
__device__ __forceinline__ void scale_acc(FragC<E> (&acc)[N / 16], float s) {
#pragma unroll
  for (int n = 0; n < N / 16; ++n)
    for (int t = 0; t < acc[n].num_elements; ++t) acc[n].x[t] *= s;
}

// dst[64, HSP] (row stride HSP + pad, type E) = rows r0..r0+63 of src (row stride ld, HS
// columns); rows past T and columns past HS are zeros. All threads of the block.
template <int HSP, class E>
__device__ __forceinline__ void load_tile(E* dst, const float* src, int64_t ld, int r0, int T, int HS) {
  constexpr int LD = HSP + Op<E>::Pad, V = HSP / 4;
  for (int idx = threadIdx.x; idx < kTile * V; idx += kThreads) {
    int r = idx / V, c = idx % V * 4;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r0 + r < T && c < HS) v = *reinterpret_cast<const float4*>(src + (r0 + r) * ld + c);
    if constexpr (kF32<E>) {
      *reinterpret_cast<float4*>(dst + r * LD + c) = v;
    } else {
      __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(dst + r * LD + c);
      d[0] = __floats2bfloat162_rn(v.x, v.y);
      d[1] = __floats2bfloat162_rn(v.z, v.w);
    }
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

// Shared-memory layout of the forward, in bytes: q, k, v tiles (E), the f32 output
// accumulator O, the f32 scores S and, for bf16, P as bf16.
template <int HSP, class E>
struct FwdSmem {
  static constexpr int LD = HSP + Op<E>::Pad, LDO = HSP + kPad;
  static constexpr int tile = kTile * LD * sizeof(E);
  static constexpr int q = 0, k = q + tile, v = k + tile, o = v + tile, s = o + kTile * LDO * 4;
  static constexpr int p = s + kTile * kLdS * 4;
  static constexpr int bytes = p + (kF32<E> ? 0 : kTile * kLdP<E> * (int)sizeof(E));
};

template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) attention_fused_forward_kernel(float* __restrict__ out,
                                                                           float* __restrict__ lse,
                                                                           const float* __restrict__ qkv, int T,
                                                                           int C, int NH, int HS, float scale) {
  using M = FwdSmem<HSP, E>;
  constexpr int LD = M::LD, LDO = M::LDO, LDP = kLdP<E>;
  extern __shared__ __align__(128) unsigned char smem[];
  E* Qs = reinterpret_cast<E*>(smem + M::q);
  E* Ks = reinterpret_cast<E*>(smem + M::k);
  E* Vs = reinterpret_cast<E*>(smem + M::v);
  float* Os = reinterpret_cast<float*>(smem + M::o);
  float* Ss = reinterpret_cast<float*>(smem + M::s);
  E* Ps = kF32<E> ? reinterpret_cast<E*>(Ss) : reinterpret_cast<E*>(smem + M::p);  // f32: P overwrites S
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y;  // the longest rows of tiles start first
  const int q0 = qt * kTile, warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const float* base = qkv + (int64_t)b * T * C3 + (int64_t)h * HS;
  load_tile<HSP>(Qs, base, C3, q0, T, HS);
  for (int idx = threadIdx.x; idx < kTile * LDO; idx += kThreads) Os[idx] = 0.f;
  // Each pair of lanes owns one row: lane/2 within the warp's strip, every other column.
  const int row = warp * 16 + lane / 2, half = lane & 1, i = q0 + row;
  float* srow = Ss + row * kLdS;
  E* prow = Ps + row * LDP;
  float* orow = Os + row * LDO;
  float m = -INFINITY, l = 0.f;
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();  // the previous tile's K, V are no longer read
    load_tile<HSP>(Ks, base + C, C3, k0, T, HS);
    load_tile<HSP>(Vs, base + 2 * C, C3, k0, T, HS);
    __syncthreads();
    FragC<E> s[kTile / 16];
    zero<E, kTile>(s);
    warp_mma<E, wmma::row_major, wmma::col_major, HSP, kTile>(s, Qs + warp * 16 * LD, LD, Ks, LD);  // Q K^T
    store<E, kTile>(Ss + warp * 16 * kLdS, kLdS, s);
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
      prow[c] = to_op<E>(p);
      ls += p;
    }
    l = l * alpha + ls + __shfl_xor_sync(kFull, ls, 1);
    m = mnew;
    for (int c = half; c < HSP; c += 2) orow[c] *= alpha;
    __syncwarp();
    FragC<E> o[HSP / 16];
#pragma unroll
    for (int n = 0; n < HSP / 16; ++n)
      wmma::load_matrix_sync(o[n], Os + warp * 16 * LDO + n * 16, LDO, wmma::mem_row_major);
    warp_mma<E, wmma::row_major, wmma::row_major, kTile, HSP>(o, Ps + warp * 16 * LDP, LDP, Vs, LD);  // += P V
    store<E, HSP>(Os + warp * 16 * LDO, LDO, o);
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

// Shared-memory layout of both backward kernels, in bytes: k, v, q, dout tiles (E), the f32
// S and dP tiles, P and dS as bf16 (f32: in place of S and dP), and lse, D of the query tile.
template <int HSP, class E>
struct BwdSmem {
  static constexpr int LD = HSP + Op<E>::Pad;
  static constexpr int tile = kTile * LD * sizeof(E), score = kTile * kLdS * 4;
  static constexpr int op = kF32<E> ? 0 : kTile * kLdP<E> * (int)sizeof(E);
  static constexpr int k = 0, v = k + tile, q = v + tile, dout = q + tile, s = dout + tile, dp = s + score;
  static constexpr int p = dp + score, ds = p + op, lse = ds + op, d = lse + kTile * 4, bytes = d + kTile * 4;
};

template <int HSP, class E>
struct BwdTiles {
  E *Ks, *Vs, *Qs, *dOs, *Ps, *dSs;
  float *Ss, *dPs, *lse_s, *D_s;
  __device__ explicit BwdTiles(unsigned char* smem) {
    using M = BwdSmem<HSP, E>;
    Ks = reinterpret_cast<E*>(smem + M::k);
    Vs = reinterpret_cast<E*>(smem + M::v);
    Qs = reinterpret_cast<E*>(smem + M::q);
    dOs = reinterpret_cast<E*>(smem + M::dout);
    Ss = reinterpret_cast<float*>(smem + M::s);
    dPs = reinterpret_cast<float*>(smem + M::dp);
    Ps = kF32<E> ? reinterpret_cast<E*>(Ss) : reinterpret_cast<E*>(smem + M::p);
    dSs = kF32<E> ? reinterpret_cast<E*>(dPs) : reinterpret_cast<E*>(smem + M::ds);
    lse_s = reinterpret_cast<float*>(smem + M::lse);
    D_s = reinterpret_cast<float*>(smem + M::d);
  }
};

// Shared by both backward kernels: for the query tile at q0 (Qs, dOs, lse, D in shared memory)
// and the key tile at k0 (Ks, Vs), the warp's rows of P (into Ps) and dS (into dSs).
template <int HSP, class E>
__device__ __forceinline__ void recompute_p_ds(const BwdTiles<HSP, E>& t, int q0, int k0, int T, float scale) {
  constexpr int LD = BwdSmem<HSP, E>::LD, LDP = kLdP<E>;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  FragC<E> acc[kTile / 16];
  zero<E, kTile>(acc);
  warp_mma<E, wmma::row_major, wmma::col_major, HSP, kTile>(acc, t.Qs + warp * 16 * LD, LD, t.Ks, LD);  // S = Q K^T
  store<E, kTile>(t.Ss + warp * 16 * kLdS, kLdS, acc);
  zero<E, kTile>(acc);
  warp_mma<E, wmma::row_major, wmma::col_major, HSP, kTile>(acc, t.dOs + warp * 16 * LD, LD, t.Vs, LD);  // dP = dO V^T
  store<E, kTile>(t.dPs + warp * 16 * kLdS, kLdS, acc);
  __syncwarp();
  const int row = warp * 16 + lane / 2, i = q0 + row;
  const float li = t.lse_s[row], Di = t.D_s[row];
  const float* srow = t.Ss + row * kLdS;
  const float* drow = t.dPs + row * kLdS;
  E* prow = t.Ps + row * LDP;
  E* dsrow = t.dSs + row * LDP;
  for (int c = lane & 1; c < kTile; c += 2) {
    const int j = k0 + c;
    const float p = (i < T && j <= i) ? __expf(srow[c] * scale - li) : 0.f;
    const float ds = p * (drow[c] - Di);
    prow[c] = to_op<E>(p);
    dsrow[c] = to_op<E>(ds);
  }
  __syncwarp();
}

// lse and D of the query tile at q0 into shared memory (0 past T). All threads of the block.
__device__ __forceinline__ void load_row_stats(float* lse_s, float* D_s, const float* lse, const float* D,
                                               int64_t bh, int q0, int T) {
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    bool ok = q0 + r < T;
    lse_s[r] = ok ? lse[bh * T + q0 + r] : 0.f;
    D_s[r] = ok ? D[bh * T + q0 + r] : 0.f;
  }
}

// dst rows r0.. += the warps' accumulators (rows 16w.., HSP columns), staged through the f32
// S and dP tiles, which together hold [64, HSP + kPad] floats. Ends with the block in sync.
template <int HSP, class E>
__device__ __forceinline__ void add_acc_to(float* dst, int64_t ld, const FragC<E> (&acc)[HSP / 16],
                                           const BwdTiles<HSP, E>& t, int r0, int T, int HS) {
  static_assert(kTile * (HSP + kPad) <= 2 * kTile * kLdS, "staging area too small");
  const int warp = threadIdx.x / kWarp;
  __syncthreads();  // S and dP are no longer read
  store<E, HSP>(t.Ss + warp * 16 * (HSP + kPad), HSP + kPad, acc);
  __syncthreads();
  store_tile<HSP, true>(dst, ld, t.Ss, r0, T, HS);
  __syncthreads();
}

// dk, dv of one key tile: sums over the query tiles from the diagonal to the end.
template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) attention_fused_backward_dkdv_kernel(
    float* __restrict__ dqkv, const float* __restrict__ dout, const float* __restrict__ qkv,
    const float* __restrict__ lse, const float* __restrict__ D, int T, int C, int NH, int HS, float scale) {
  constexpr int LD = BwdSmem<HSP, E>::LD, LDP = kLdP<E>;
  extern __shared__ __align__(128) unsigned char smem[];
  const BwdTiles<HSP, E> t(smem);
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int kt = blockIdx.y, k0 = kt * kTile, nq = gridDim.y;  // low key tiles see the most queries: first
  const int warp = threadIdx.x / kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const int64_t off = (int64_t)b * T * C3 + (int64_t)h * HS;
  const float* dO = dout + (int64_t)b * T * C + (int64_t)h * HS;
  load_tile<HSP>(t.Ks, qkv + off + C, C3, k0, T, HS);
  load_tile<HSP>(t.Vs, qkv + off + 2 * C, C3, k0, T, HS);
  FragC<E> dk[HSP / 16], dv[HSP / 16];
  zero<E, HSP>(dk);
  zero<E, HSP>(dv);
  for (int qt = kt; qt < nq; ++qt) {
    const int q0 = qt * kTile;
    __syncthreads();  // the previous query tile is no longer read
    load_tile<HSP>(t.Qs, qkv + off, C3, q0, T, HS);
    load_tile<HSP>(t.dOs, dO, C, q0, T, HS);
    load_row_stats(t.lse_s, t.D_s, lse, D, bh, q0, T);
    __syncthreads();
    recompute_p_ds<HSP, E>(t, q0, k0, T, scale);
    __syncthreads();  // dk, dv of a key row need every query row of P and dS
    // The warp's 16 keys are columns of P: P^T's rows are read column-major.
    warp_mma<E, wmma::col_major, wmma::row_major, kTile, HSP>(dv, t.Ps + warp * 16, LDP, t.dOs, LD);  // dV += P^T dO
    warp_mma<E, wmma::col_major, wmma::row_major, kTile, HSP>(dk, t.dSs + warp * 16, LDP, t.Qs, LD);  // dK += dS^T Q
  }
  scale_acc<E, HSP>(dk, scale);
  add_acc_to<HSP, E>(dqkv + off + C, C3, dk, t, k0, T, HS);
  add_acc_to<HSP, E>(dqkv + off + 2 * C, C3, dv, t, k0, T, HS);
}

// dq of one query tile: sums over the key tiles up to the diagonal.
template <int HSP, class E>
__global__ void __launch_bounds__(kThreads) attention_fused_backward_dq_kernel(
    float* __restrict__ dqkv, const float* __restrict__ dout, const float* __restrict__ qkv,
    const float* __restrict__ lse, const float* __restrict__ D, int T, int C, int NH, int HS, float scale) {
  constexpr int LD = BwdSmem<HSP, E>::LD, LDP = kLdP<E>;
  extern __shared__ __align__(128) unsigned char smem[];
  const BwdTiles<HSP, E> t(smem);
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * kTile;
  const int warp = threadIdx.x / kWarp;
  const int64_t C3 = 3 * (int64_t)C;
  const int64_t off = (int64_t)b * T * C3 + (int64_t)h * HS;
  load_tile<HSP>(t.Qs, qkv + off, C3, q0, T, HS);
  load_tile<HSP>(t.dOs, dout + (int64_t)b * T * C + (int64_t)h * HS, C, q0, T, HS);
  load_row_stats(t.lse_s, t.D_s, lse, D, bh, q0, T);
  FragC<E> dq[HSP / 16];
  zero<E, HSP>(dq);
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kTile;
    __syncthreads();
    load_tile<HSP>(t.Ks, qkv + off + C, C3, k0, T, HS);
    load_tile<HSP>(t.Vs, qkv + off + 2 * C, C3, k0, T, HS);
    __syncthreads();
    recompute_p_ds<HSP, E>(t, q0, k0, T, scale);
    warp_mma<E, wmma::row_major, wmma::row_major, kTile, HSP>(dq, t.dSs + warp * 16 * LDP, LDP, t.Ks, LD);  // dQ += dS K
  }
  scale_acc<E, HSP>(dq, scale);
  add_acc_to<HSP, E>(dqkv + off, C3, dq, t, q0, T, HS);
}

// ---- bf16 on mma.sync: every tile product stays in registers ----------------------------------------
//
// The bf16 path. WMMA hides which fragment element is which row, so the kernels above store every
// score tile to shared memory for the softmax. The PTX instruction mma.sync.m16n8k16 documents its
// layout instead: with g = lane / 4 and t = lane % 4, an f32 accumulator holds rows g and g + 8,
// columns 2t and 2t + 1 of a 16x8 tile, and an A operand holds rows g, g + 8 and columns 2t, 2t + 1,
// 2t + 8, 2t + 9 of a 16x16 tile -- so two accumulator tiles of scores ARE, packed to bf16, the
// A operand of the next product (P V, P^T dO, dS K, ...). Scores, probabilities and the running
// output never leave the registers; a thread knows its rows, so the softmax statistics of a row
// are reduced over the 4 lanes of a quad with two shuffles. B operands come from shared memory
// through ldmatrix (four 8x8 bf16 matrices a warp; .trans transposes them on the way).
//   forward:  block = 64 queries (warp w: rows 16w..16w+15), loops over key tiles of 64;
//   dq:       block = 64 queries, loops over key tiles (recomputes S, dP);
//   dk, dv:   block = 64 keys (warp w: keys 16w..), loops over query tiles of kBq from the diagonal.
// Exponentials are base 2 (ex2.approx) with log2(e) folded into the scale.

namespace mma {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low 16 bits: the lower column
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ float exp2(float x) {  // 2^x; -inf gives 0
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// d += a b on the tensor cores: a 16x16, b 16x8 (two registers), d 16x8 f32.
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <bool kTrans>
__device__ __forceinline__ void ldmatrix4(uint32_t (&r)[4], const __nv_bfloat16* p) {
  const auto a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

// A operand: rows r0..r0+15, columns c0..c0+15 of a row-major tile s (leading dimension ld).
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const __nv_bfloat16* s, int ld, int r0, int c0) {
  const int lane = threadIdx.x % kWarp, m = lane / 8, r = lane % 8;
  ldmatrix4<false>(a, s + (r0 + r + (m & 1) * 8) * ld + c0 + (m >> 1) * 8);
}

// B operands of two n-tiles (n0.., n0+8..) over k = k0..k0+15, b[0..1] for the first, b[2..3]
// for the second. kByN: the tile is stored one row per n (K for Q K^T); otherwise one row per k
// (V for P V), read transposed.
template <bool kByN>
__device__ __forceinline__ void load_b(uint32_t (&b)[4], const __nv_bfloat16* s, int ld, int k0, int n0) {
  const int lane = threadIdx.x % kWarp, m = lane / 8, r = lane % 8;
  if constexpr (kByN) ldmatrix4<false>(b, s + (n0 + r + (m >> 1) * 8) * ld + k0 + (m & 1) * 8);
  else ldmatrix4<true>(b, s + (k0 + r + (m & 1) * 8) * ld + n0 + (m >> 1) * 8);
}

// acc[N/8] += A (16 x K, fragments a[K/16]) @ B (K x N from shared memory, see load_b).
template <bool kByN, int K, int N>
__device__ __forceinline__ void gemm(float (&acc)[N / 8][4], const uint32_t (&a)[K / 16][4], const __nv_bfloat16* s,
                                     int ld) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk)
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      load_b<kByN>(b, s, ld, kk * 16, np * 16);
      mma(acc[2 * np], a[kk], b[0], b[1]);
      mma(acc[2 * np + 1], a[kk], b[2], b[3]);
    }
}

// Accumulator tiles (16 x N, f32) as A operands (16 x N, bf16): the register layouts agree.
template <int N>
__device__ __forceinline__ void to_a(uint32_t (&a)[N / 16][4], const float (&c)[N / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    a[kk][0] = pack(c[2 * kk][0], c[2 * kk][1]);
    a[kk][1] = pack(c[2 * kk][2], c[2 * kk][3]);
    a[kk][2] = pack(c[2 * kk + 1][0], c[2 * kk + 1][1]);
    a[kk][3] = pack(c[2 * kk + 1][2], c[2 * kk + 1][3]);
  }
}

// Element e of accumulator tile n (the layout of to_a's input), read back from the packed A
// operand as f32 (the bf16 value to_a rounded it to).
template <int N>
__device__ __forceinline__ float unpack_a(const uint32_t (&a)[N / 16][4], int n, int e) {
  const uint32_t w = a[n / 2][(n & 1) * 2 + (e >> 1)];
  return __uint_as_float((e & 1) ? (w & 0xffff0000u) : (w << 16));
}

// acc += A B (B as in gemm), A being the warp's 16 rows from r0 of the row-major tile As (K + 8
// columns a row): the fragments a, loaded once by the caller (kFromSmem false), or ldmatrix at
// each k step (kFromSmem true: K/4 fewer registers held across the loop, a few more shared-memory
// reads).
template <bool kByN, int K, int N, bool kFromSmem, int KA>
__device__ __forceinline__ void gemm_rows(float (&acc)[N / 8][4], const uint32_t (&a)[KA][4], const __nv_bfloat16* As,
                                          int r0, const __nv_bfloat16* s, int ld) {
  if constexpr (!kFromSmem) {
    gemm<kByN, K, N>(acc, a, s, ld);
  } else {
#pragma unroll
    for (int kk = 0; kk < K / 16; ++kk) {
      uint32_t ak[4];
      load_a(ak, As, K + 8, r0, kk * 16);
#pragma unroll
      for (int np = 0; np < N / 16; ++np) {
        uint32_t b[4];
        load_b<kByN>(b, s, ld, kk * 16, np * 16);
        mma(acc[2 * np], ak, b[0], b[1]);
        mma(acc[2 * np + 1], ak, b[2], b[3]);
      }
    }
  }
}

template <int N>
__device__ __forceinline__ void zero(float (&c)[N / 8][4]) {
#pragma unroll
  for (int n = 0; n < N / 8; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.f;
}

// dst row r (row stride ld) op= s * the warp's accumulator rows (16 rows from r0, HS columns,
// rows below T); op is = or +=. Each lane writes pairs of columns (float2).
template <int HSP, bool kAdd, class TO>
__device__ __forceinline__ void store_rows(TO* dst, int64_t ld, const float (&c)[HSP / 8][4], int r0, int T,
                                           int HS, float s0, float s1) {
  const int lane = threadIdx.x % kWarp, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = r0 + g + 8 * h;
    if (r >= T) continue;
    const float s = h ? s1 : s0;
    TO* row = dst + r * ld;
#pragma unroll
    for (int n = 0; n < HSP / 8; ++n) {
      const int col = n * 8 + 2 * t;
      if (col >= HS) continue;  // HS is a multiple of 4: col + 1 < HS too
      float2 v = make_float2(c[n][2 * h] * s, c[n][2 * h + 1] * s);
      if constexpr (std::is_same_v<TO, float>) {
        float2* d = reinterpret_cast<float2*>(row + col);
        if constexpr (kAdd) {
          const float2 o = *d;
          v.x += o.x;
          v.y += o.y;
        }
        *d = v;
      } else {  // bf16 storage: add in f32, round once
        __nv_bfloat162* d = reinterpret_cast<__nv_bfloat162*>(row + col);
        if constexpr (kAdd) {
          const float2 o = __bfloat1622float2(*d);
          v.x += o.x;
          v.y += o.y;
        }
        *d = __floats2bfloat162_rn(v.x, v.y);
      }
    }
  }
}

// ---- packed bf16 inputs and asynchronous tile loads ----
//
// The kernels read q, k, v and dout as bf16 rows of HSP columns, each row contiguous 16-byte
// chunks that cp.async copies to shared memory while the warps compute on the previous tile
// (two buffers). With f32 storage (or a head size that needs padding) they are bf16 copies packed
// one head after another, [BNH, T, HSP] with zero columns past HS ("pack" kernels below, once
// per call, in the matmuls' cast scratch); with bf16 storage and HS = HSP the kernels read qkv
// and dout where they are (rows 3C and C apart), and no pass precedes them.

using bf16 = __nv_bfloat16;

// qkv [B,T,3C] (f32 or bf16) -> packed [3][B*NH][T][HSP] bf16 (q, k, v), zeros past HS. 4 columns a thread.
template <class TI>
__global__ void pack_qkv_kernel(bf16* __restrict__ dst, const TI* __restrict__ qkv, int B, int T, int C, int NH,
                                int HS, int HSP) {
  const int V = HSP / 4;
  const int64_t n = 3 * (int64_t)B * NH * T * V;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    const int c = static_cast<int>(idx % V) * 4;
    const int64_t row = idx / V;  // ((which * B + b) * NH + h) * T + t
    const int t = static_cast<int>(row % T), h = static_cast<int>(row / T % NH);
    const int64_t b = row / ((int64_t)T * NH) % B;
    const int which = static_cast<int>(row / ((int64_t)T * NH * B));
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (c < HS) v = load4(qkv + (b * T + t) * 3 * C + which * C + h * HS + c);
    uint2 o;
    o.x = pack(v.x, v.y);
    o.y = pack(v.z, v.w);
    *reinterpret_cast<uint2*>(dst + row * HSP + c) = o;
  }
}

// D[bh, t] = dout[b,t,h,:] . out[b,t,h,:] and (when dpack is not null) dout packed as [B*NH][T][HSP]
// bf16; one warp per (b, t, h). dout and out f32 or bf16 (TD).
template <class TD>
__global__ void row_dot_pack_kernel(float* __restrict__ D, bf16* __restrict__ dpack, const TD* __restrict__ dout,
                                    const TD* __restrict__ out, int64_t rows, int T, int NH, int HS, int HSP) {
  const int64_t r = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const TD* a = dout + r * HS;  // rows of [B,T,NH,HS] are (b, t, h) in order
  const TD* o = out + r * HS;
  const int64_t bt = r / NH, b = bt / T;
  const int h = static_cast<int>(r % NH), t = static_cast<int>(bt % T);
  const int64_t prow = (b * NH + h) * T + t;
  float s = 0.f;
  for (int d = lane; d < HSP; d += kWarp) {
    const float x = d < HS ? ld(a + d) : 0.f;
    if (d < HS) s += x * ld(o + d);
    if (dpack) dpack[prow * HSP + d] = __float2bfloat16_rn(x);
  }
  s = warp_sum(s);
  if (lane == 0) D[prow] = s;
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool ok) {
  const auto s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int bytes = ok ? 16 : 0;  // 0: fill the 16 bytes with zeros
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {  // all but the N most recent groups have landed
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying rows r0..r0+ROWS-1 of a head (src: its row 0, row stride ld) to dst (row stride
// HSP + 8); rows past T become zeros. All threads of the block.
template <int HSP, int ROWS>
__device__ __forceinline__ void load_async(bf16* dst, const bf16* src, int64_t ld, int r0, int T) {
  constexpr int LD = HSP + 8, V = HSP / 8;
  static_assert(ROWS * V % kThreads == 0, "tile not a whole number of 16-byte chunks per thread");
#pragma unroll
  for (int it = 0; it < ROWS * V / kThreads; ++it) {
    const int idx = threadIdx.x + it * kThreads, r = idx / V, c = idx % V * 8;
    const bool ok = r0 + r < T;
    cp_async16(dst + r * LD + c, src + (int64_t)(ok ? r0 + r : 0) * ld + c, ok);
  }
}

constexpr int kRows = 64;                    // queries (forward, dq) or keys (dk, dv) per block
template <int HSP>
constexpr int kBq = HSP > 64 ? 32 : 64;      // query tile of the dk, dv kernel (registers at HSP 128)
template <int HSP>
constexpr int kTileElems = kRows * (HSP + 8);

// Inputs of the kernels: where head (b, h) of q, k, v starts (p + b sb + h sh, rows ld apart) and
// likewise for dout (dsb, dsh, dld): packed heads (see pack_qkv_kernel) or qkv and dout in place.
struct Packed {
  const bf16 *q, *k, *v, *dout;
  int64_t sb, sh, ld, dsb, dsh, dld;
  int NH;
  __device__ const bf16* head(const bf16* p, int bh) const { return p + (bh / NH) * sb + (bh % NH) * sh; }
  __device__ const bf16* dhead(int bh) const { return dout + (bh / NH) * dsb + (bh % NH) * dsh; }
};

template <int HSP, class TO>
__global__ void __launch_bounds__(kThreads, HSP <= 64 ? 4 : 1) forward_kernel(TO* __restrict__ out, float* __restrict__ lse, Packed in,
                                                           int T, int C, int NH, int HS, float scale) {
  constexpr int LD = HSP + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTileElems<HSP>;        // two buffers
  bf16* Vs = Ks + 2 * kTileElems<HSP>;    // two buffers
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * kRows;  // the longest rows start first
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, g = lane / 4, t = lane % 4;
  const bf16 *q = in.head(in.q, bh), *k = in.head(in.k, bh), *v = in.head(in.v, bh);
  const int64_t ld = in.ld;
  load_async<HSP, kRows>(Qs, q, ld, q0, T);
  load_async<HSP, kRows>(Ks, k, ld, 0, T);
  load_async<HSP, kRows>(Vs, v, ld, 0, T);
  cp_async_commit();
  uint32_t qa[HSP / 16][4];
  float o[HSP / 8][4];
  zero<HSP>(o);
  const float sl = scale * kLog2e;
  const int i0 = q0 + warp * 16 + g;  // this thread's rows: i0 and i0 + 8
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kRows, buf = kt & 1;
    if (kt < qt) {  // prefetch the next key tile into the other buffer
      load_async<HSP, kRows>(Ks + (buf ^ 1) * kTileElems<HSP>, k, ld, k0 + kRows, T);
      load_async<HSP, kRows>(Vs + (buf ^ 1) * kTileElems<HSP>, v, ld, k0 + kRows, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int kk = 0; kk < HSP / 16; ++kk) load_a(qa[kk], Qs, LD, warp * 16, kk * 16);
    }
    const bf16* Kb = Ks + buf * kTileElems<HSP>;
    const bf16* Vb = Vs + buf * kTileElems<HSP>;
    float s[kRows / 8][4];
    zero<kRows>(s);
    gemm<true, HSP, kRows>(s, qa, Kb, LD);  // S = Q K^T
    float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = k0 + n * 8 + 2 * t + (e & 1), i = i0 + (e >> 1) * 8;
        const float x = (kt == qt && j > i) ? -INFINITY : s[n][e] * sl;  // causal; keys past T have j > i
        s[n][e] = x;
        mt[e >> 1] = fmaxf(mt[e >> 1], x);
      }
    float alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(kFull, mt[r], 1));
      mt[r] = fmaxf(mt[r], __shfl_xor_sync(kFull, mt[r], 2));
      const float mnew = fmaxf(m[r], mt[r]);  // finite: key 0 <= every row
      alpha[r] = exp2(m[r] - mnew);
      m[r] = mnew;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2(s[n][e] - m[e >> 1]);
        s[n][e] = p;
        l[e >> 1] += p;  // this lane's columns; the quad's sum at the end
      }
#pragma unroll
    for (int n = 0; n < HSP / 8; ++n) {
      o[n][0] *= alpha[0];
      o[n][1] *= alpha[0];
      o[n][2] *= alpha[1];
      o[n][3] *= alpha[1];
    }
    uint32_t pa[kRows / 16][4];
    to_a<kRows>(pa, s);
    gemm<false, kRows, HSP>(o, pa, Vb, LD);  // O += P V
    __syncthreads();  // this buffer is refilled by the next iteration's prefetch
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(kFull, l[r], 1);
    l[r] += __shfl_xor_sync(kFull, l[r], 2);
    const int i = i0 + 8 * r;
    if (t == 0 && i < T) lse[(int64_t)bh * T + i] = m[r] / kLog2e + logf(l[r]);
  }
  store_rows<HSP, false>(out + (int64_t)b * T * C + (int64_t)h * HS, C, o, q0 + warp * 16, T, HS, 1.f / l[0],
                         1.f / l[1]);
}

// dq of 64 queries: sums over the key tiles up to the diagonal, recomputing S and dP.
template <int HSP, class TO, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) backward_dq_kernel(TO* __restrict__ dqkv, Packed in,
                                                               const float* __restrict__ lse,
                                                               const float* __restrict__ D, int T, int C, int NH,
                                                               int HS, float scale) {
  constexpr int LD = HSP + 8;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* dOs = Qs + kTileElems<HSP>;
  bf16* Ks = dOs + kTileElems<HSP>;      // two buffers
  bf16* Vs = Ks + 2 * kTileElems<HSP>;   // two buffers
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int qt = gridDim.y - 1 - blockIdx.y, q0 = qt * kRows;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, g = lane / 4, t = lane % 4;
  const bf16 *k = in.head(in.k, bh), *v = in.head(in.v, bh);
  const int64_t ld = in.ld;
  load_async<HSP, kRows>(Qs, in.head(in.q, bh), ld, q0, T);
  load_async<HSP, kRows>(dOs, in.dhead(bh), in.dld, q0, T);
  load_async<HSP, kRows>(Ks, k, ld, 0, T);
  load_async<HSP, kRows>(Vs, v, ld, 0, T);
  cp_async_commit();
  const int i0 = q0 + warp * 16 + g;
  float ls[2], Ds[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = i0 + 8 * r;
    ls[r] = i < T ? lse[(int64_t)bh * T + i] * kLog2e : 0.f;
    Ds[r] = i < T ? D[(int64_t)bh * T + i] : 0.f;
  }
  const float sl = scale * kLog2e;
  uint32_t qa[HSP / 16][4], da[HSP / 16][4];
  float dq[HSP / 8][4];
  zero<HSP>(dq);
  for (int kt = 0; kt <= qt; ++kt) {
    const int k0 = kt * kRows, buf = kt & 1;
    if (kt < qt) {
      load_async<HSP, kRows>(Ks + (buf ^ 1) * kTileElems<HSP>, k, ld, k0 + kRows, T);
      load_async<HSP, kRows>(Vs + (buf ^ 1) * kTileElems<HSP>, v, ld, k0 + kRows, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int kk = 0; kk < HSP / 16; ++kk) {
        load_a(qa[kk], Qs, LD, warp * 16, kk * 16);
        load_a(da[kk], dOs, LD, warp * 16, kk * 16);
      }
    }
    const bf16* Kb = Ks + buf * kTileElems<HSP>;
    const bf16* Vb = Vs + buf * kTileElems<HSP>;
    // As in the dk, dv kernel: P packed to bf16 before dP is formed, so S and dP are never live
    // together; dS = P (dP - D) reads P back from the packed copy.
    uint32_t sa[kRows / 16][4];
    {
      float s[kRows / 8][4];
      zero<kRows>(s);
      gemm<true, HSP, kRows>(s, qa, Kb, LD);  // S = Q K^T
#pragma unroll
      for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int j = k0 + n * 8 + 2 * t + (e & 1), i = i0 + (e >> 1) * 8, r = e >> 1;
          s[n][e] = (j <= i && i < T) ? exp2(s[n][e] * sl - ls[r]) : 0.f;  // P
        }
      to_a<kRows>(sa, s);
    }
    float dp[kRows / 8][4];
    zero<kRows>(dp);
    gemm<true, HSP, kRows>(dp, da, Vb, LD);  // dP = dO V^T
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) dp[n][e] = unpack_a<kRows>(sa, n, e) * (dp[n][e] - Ds[e >> 1]);  // dS
    to_a<kRows>(sa, dp);
    gemm<false, kRows, HSP>(dq, sa, Kb, LD);  // dQ += dS K
    __syncthreads();
  }
  const int64_t C3 = 3 * (int64_t)C;
  store_rows<HSP, true>(dqkv + (int64_t)b * T * C3 + (int64_t)h * HS, C3, dq, q0 + warp * 16, T, HS, scale, scale);
}

// dk, dv of 64 keys: sums over the query tiles from the diagonal to the end.
// kKVsmem: the K, V A-operands come through ldmatrix at each tile instead of being held in
// registers; kMinBlocks: the blocks a multiprocessor must fit (caps the registers).
template <int HSP, class TO, bool kKVsmem, int kMinBlocks>
__global__ void __launch_bounds__(kThreads, kMinBlocks) backward_dkdv_kernel(TO* __restrict__ dqkv, Packed in,
                                                                 const float* __restrict__ lse,
                                                                 const float* __restrict__ D, int T, int C, int NH,
                                                                 int HS, float scale) {
  constexpr int LD = HSP + 8, BQ = kBq<HSP>, QT = BQ * LD;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTileElems<HSP>;
  bf16* Qs = Vs + kTileElems<HSP>;  // two buffers
  bf16* dOs = Qs + 2 * QT;          // two buffers
  float* ls = reinterpret_cast<float*>(dOs + 2 * QT);  // lse * log2(e) of the query tile, two buffers
  float* Ds = ls + 2 * BQ;                             // D of the query tile, two buffers
  const int bh = blockIdx.x, b = bh / NH, h = bh % NH;
  const int k0 = blockIdx.y * kRows;  // low key tiles see the most queries: first
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, g = lane / 4, t = lane % 4;
  const bf16 *q = in.head(in.q, bh), *dO = in.dhead(bh);
  const int64_t ld = in.ld, dld = in.dld;
  auto stats = [&](int q0, int buf) {  // plain loads; the barrier before their use publishes them
    for (int r = threadIdx.x; r < BQ; r += kThreads) {
      const bool ok = q0 + r < T;
      ls[buf * BQ + r] = ok ? lse[(int64_t)bh * T + q0 + r] * kLog2e : 0.f;
      Ds[buf * BQ + r] = ok ? D[(int64_t)bh * T + q0 + r] : 0.f;
    }
  };
  load_async<HSP, kRows>(Ks, in.head(in.k, bh), ld, k0, T);
  load_async<HSP, kRows>(Vs, in.head(in.v, bh), ld, k0, T);
  load_async<HSP, BQ>(Qs, q, ld, k0, T);
  load_async<HSP, BQ>(dOs, dO, dld, k0, T);
  cp_async_commit();
  stats(k0, 0);
  const float sl = scale * kLog2e;
  const int j0 = k0 + warp * 16 + g;  // this thread's keys: j0 and j0 + 8
  uint32_t ka[kKVsmem ? 1 : HSP / 16][4], va[kKVsmem ? 1 : HSP / 16][4];  // unused when kKVsmem
  float dk[HSP / 8][4], dv[HSP / 8][4];
  zero<HSP>(dk);
  zero<HSP>(dv);
  for (int q0 = k0, it = 0; q0 < T; q0 += BQ, ++it) {
    const int buf = it & 1;
    if (q0 + BQ < T) {  // prefetch the next query tile into the other buffer
      load_async<HSP, BQ>(Qs + (buf ^ 1) * QT, q, ld, q0 + BQ, T);
      load_async<HSP, BQ>(dOs + (buf ^ 1) * QT, dO, dld, q0 + BQ, T);
      cp_async_commit();
      stats(q0 + BQ, buf ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (!kKVsmem && it == 0) {
#pragma unroll
      for (int kk = 0; kk < HSP / 16; ++kk) {
        load_a(ka[kk], Ks, LD, warp * 16, kk * 16);
        load_a(va[kk], Vs, LD, warp * 16, kk * 16);
      }
    }
    const bf16* Qb = Qs + buf * QT;
    const bf16* dOb = dOs + buf * QT;
    const float* lsb = ls + buf * BQ;
    const float* Db = Ds + buf * BQ;
    // S^T = K Q^T and P^T first, packed to bf16 at once and used for dV += P^T dO; only then
    // dP^T = V dO^T: S^T and dP^T are never live together (docs/cuda.md row 9: 233 -> ~160 registers, 3 blocks
    // a multiprocessor instead of 2). dS^T = P^T (dP^T - D) reads P^T back from its bf16 copy.
    uint32_t pa[BQ / 16][4];
    {
      float s[BQ / 8][4];
      zero<BQ>(s);
      gemm_rows<true, HSP, BQ, kKVsmem>(s, ka, Ks, warp * 16, Qb, LD);  // S^T = K Q^T
#pragma unroll
      for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int c = n * 8 + 2 * t + (e & 1), i = q0 + c, j = j0 + (e >> 1) * 8;
          s[n][e] = (j <= i && i < T) ? exp2(s[n][e] * sl - lsb[c]) : 0.f;  // P^T
        }
      to_a<BQ>(pa, s);
    }
    gemm<false, BQ, HSP>(dv, pa, dOb, LD);  // dV += P^T dO
    float dp[BQ / 8][4];
    zero<BQ>(dp);
    gemm_rows<true, HSP, BQ, kKVsmem>(dp, va, Vs, warp * 16, dOb, LD);  // dP^T = V dO^T
#pragma unroll
    for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = n * 8 + 2 * t + (e & 1);
        dp[n][e] = unpack_a<BQ>(pa, n, e) * (dp[n][e] - Db[c]);  // dS^T
      }
    to_a<BQ>(pa, dp);
    gemm<false, BQ, HSP>(dk, pa, Qb, LD);  // dK += dS^T Q
    __syncthreads();                       // this buffer is refilled by the next iteration's prefetch
  }
  const int64_t C3 = 3 * (int64_t)C, off = (int64_t)b * T * C3 + (int64_t)h * HS;
  store_rows<HSP, true>(dqkv + off + C, C3, dk, k0 + warp * 16, T, HS, scale, scale);
  store_rows<HSP, true>(dqkv + off + 2 * C, C3, dv, k0 + warp * 16, T, HS, 1.f, 1.f);
}

template <int HSP>
constexpr int kFwdBytes = 5 * kTileElems<HSP> * 2;
template <int HSP>
constexpr int kDqBytes = 6 * kTileElems<HSP> * 2;
template <int HSP>
constexpr int kDkdvBytes = 2 * kTileElems<HSP> * 2 + 4 * kBq<HSP> * (HSP + 8) * 2 + 4 * kBq<HSP> * 4;
}  // namespace mma

// ---- launchers ------------------------------------------------------------------------------------

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

// The mma kernels' inputs q, k, v: with bf16 storage and HS = HSP, qkv where it is; otherwise
// bf16 copies packed per head into the CastA scratch.
template <int HSP, class TS>
mma::Packed qkv_input(const TS* qkv, const Dims& d) {
  mma::Packed in{};
  in.NH = d.NH;
  if (std::is_same_v<TS, __nv_bfloat16> && d.HS == HSP) {
    const auto* p = reinterpret_cast<const mma::bf16*>(qkv);
    in.q = p;
    in.k = p + d.C;
    in.v = p + 2 * d.C;
    in.sb = (int64_t)d.T * 3 * d.C;
    in.sh = d.HS;
    in.ld = 3 * (int64_t)d.C;
    return in;
  }
  const int64_t head = (int64_t)d.B * d.NH * d.T * HSP;
  auto* p = static_cast<mma::bf16*>(scratch(Scratch::CastA, 2 * 3 * head, MemCategory::Other));
  const int threads = 256;
  mma::pack_qkv_kernel<TS><<<grid_for(3 * head / 4, threads), threads, 0, current_stream()>>>(p, qkv, d.B, d.T, d.C,
                                                                                             d.NH, d.HS, HSP);
  SGPT_CUDA_LAUNCH_CHECK("pack_qkv_kernel");
  in.q = p;
  in.k = p + head;
  in.v = p + 2 * head;
  in.sb = (int64_t)d.NH * d.T * HSP;
  in.sh = (int64_t)d.T * HSP;
  in.ld = HSP;
  return in;
}

// E: the operand type of the products (float: TF32 WMMA; bf16: mma.sync); TS: the storage type.
template <int HSP, class E, class TS>
void forward_launch(TS* out, float* lse, const TS* qkv, const Dims& d) {
  if constexpr (!kF32<E>) {  // bf16: the mma.sync kernel
    constexpr int bytes = mma::kFwdBytes<HSP>;
    static const bool once = (allow_smem(mma::forward_kernel<HSP, TS>, bytes), true);
    (void)once;
    const mma::Packed in = qkv_input<HSP>(qkv, d);
    dim3 grid(d.B * d.NH, ceil_div(d.T, mma::kRows));
    mma::forward_kernel<HSP, TS><<<grid, kThreads, bytes, current_stream()>>>(out, lse, in, d.T, d.C, d.NH, d.HS,
                                                                             d.scale);
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_forward (mma)");
  } else if constexpr (std::is_same_v<TS, float>) {  // TF32: the WMMA kernels above
    constexpr int bytes = FwdSmem<HSP, E>::bytes;
    static const bool once = (allow_smem(attention_fused_forward_kernel<HSP, E>, bytes), true);
    (void)once;
    dim3 grid(d.B * d.NH, ceil_div(d.T, kTile));
    attention_fused_forward_kernel<HSP, E><<<grid, kThreads, bytes, current_stream()>>>(out, lse, qkv, d.T, d.C, d.NH,
                                                                                        d.HS, d.scale);
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_forward_kernel");
  }
}

template <int HSP, class E, class TS>
void backward_launch(TS* dqkv, const TS* dout, const TS* qkv, const TS* out, const float* lse, const Dims& d) {
  const int64_t rows = (int64_t)d.B * d.T * d.NH;
  float* D = static_cast<float*>(scratch(Scratch::Attention, sizeof(float) * rows, MemCategory::Activations));
  const int threads = 256;
  if constexpr (!kF32<E>) {  // bf16: the mma.sync kernels
    constexpr int dkdv = mma::kDkdvBytes<HSP>, dq = mma::kDqBytes<HSP>;

    mma::Packed in = qkv_input<HSP>(qkv, d);
    const bool direct = std::is_same_v<TS, __nv_bfloat16> && d.HS == HSP;  // dout read in place
    mma::bf16* dp = direct ? nullptr
                           : static_cast<mma::bf16*>(scratch(Scratch::CastB, 2 * rows * HSP, MemCategory::Other));
    mma::row_dot_pack_kernel<TS><<<ceil_div(rows * kWarp, threads), threads, 0, current_stream()>>>(
        D, dp, dout, out, rows, d.T, d.NH, d.HS, HSP);
    SGPT_CUDA_LAUNCH_CHECK("row_dot_pack_kernel");
    if (direct) {
      in.dout = reinterpret_cast<const mma::bf16*>(dout);
      in.dsb = (int64_t)d.T * d.C;
      in.dsh = d.HS;
      in.dld = d.C;
    } else {
      in.dout = dp;
      in.dsb = (int64_t)d.NH * d.T * HSP;
      in.dsh = (int64_t)d.T * HSP;
      in.dld = HSP;
    }
    dim3 grid(d.B * d.NH, ceil_div(d.T, mma::kRows));
    // Registers (ptxas, sm_90, bf16): dk/dv 168 at HSP = 64 with K, V read from shared memory (3
    // blocks a multiprocessor; 212 uncapped), 241 at 128; dq 168 (3 blocks). Row 8 of docs/cuda.md
    // measured the alternatives: K, V held in registers at 3 blocks, or 2 blocks, ran 0.2-0.6 ms a
    // step slower; dq capped at 128 registers for 4 blocks (spills) 0.3-0.4 ms slower.
    auto dkdv_launch = [&]<bool kKV, int kMinB>() {
      auto kernel = mma::backward_dkdv_kernel<HSP, TS, kKV, kMinB>;
      static const bool set = (allow_smem(kernel, dkdv), true);
      (void)set;
      kernel<<<grid, kThreads, dkdv, current_stream()>>>(dqkv, in, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
    };
    if constexpr (HSP == 64) dkdv_launch.template operator()<true, 3>();
    else dkdv_launch.template operator()<HSP == 128, 1>();
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dkdv (mma)");
    auto kernel = mma::backward_dq_kernel<HSP, TS, HSP == 64 ? 3 : 1>;
    static const bool set = (allow_smem(kernel, dq), true);
    (void)set;
    kernel<<<grid, kThreads, dq, current_stream()>>>(dqkv, in, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dq (mma)");
  } else if constexpr (std::is_same_v<TS, float>) {  // TF32: the WMMA kernels above
    attention_row_dot_kernel<<<ceil_div(rows * kWarp, threads), threads, 0, current_stream()>>>(D, dout, out, rows, d.T,
                                                                                               d.NH, d.HS);
    SGPT_CUDA_LAUNCH_CHECK("attention_row_dot_kernel");
    constexpr int bytes = BwdSmem<HSP, E>::bytes;
    static const bool once = (allow_smem(attention_fused_backward_dkdv_kernel<HSP, E>, bytes),
                              allow_smem(attention_fused_backward_dq_kernel<HSP, E>, bytes), true);
    (void)once;
    dim3 grid(d.B * d.NH, ceil_div(d.T, kTile));
    attention_fused_backward_dkdv_kernel<HSP, E><<<grid, kThreads, bytes, current_stream()>>>(
        dqkv, dout, qkv, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dkdv_kernel");
    attention_fused_backward_dq_kernel<HSP, E><<<grid, kThreads, bytes, current_stream()>>>(
        dqkv, dout, qkv, lse, D, d.T, d.C, d.NH, d.HS, d.scale);
    SGPT_CUDA_LAUNCH_CHECK("attention_fused_backward_dq_kernel");
  }
}

// Calls f.template operator()<HSP, E, TS>() for the padded head size, the operand type E and the
// storage type TS (bf16 storage always takes bf16 operands).
template <class F>
void dispatch(const Dims& d, DType storage, F&& f) {
  const bool bf16 = storage == DType::BF16 || matmul_precision() == MatmulPrecision::BF16;
  auto by_hsp = [&](auto e, auto ts) {
    using E = decltype(e);
    using TS = decltype(ts);
    if (d.HS <= 32) f.template operator()<32, E, TS>();
    else if (d.HS <= 64) f.template operator()<64, E, TS>();
    else f.template operator()<128, E, TS>();
  };
  if (storage == DType::BF16) by_hsp(__nv_bfloat16{}, __nv_bfloat16{});
  else if (bf16) by_hsp(__nv_bfloat16{}, float{});
  else by_hsp(float{}, float{});
}

void check_aligned(const char* op, const void* p, const char* name) {
  SGPT_CHECK(aligned16(p), op, ": tensor '", name, "' must be 16-byte aligned (float4 loads)");
}

}  // namespace

bool attention_fused_supported(int head_size) { return head_size > 0 && head_size % 4 == 0 && head_size <= 128; }

// Storage: qkv, out (and dout, dqkv) all f32 or all bf16; lse f32. Other mixes run on f32 copies.
void attention_fused_forward(Tensor& out, Tensor& lse, const Tensor& qkv, int n_head) {
  const Dims d = dims_of(qkv, n_head);
  if (d.B == 0 || d.T == 0) return;
  if (!all_dtype(qkv.dtype(), {&out}) || lse.dtype() != DType::F32) {
    F32Stage s;
    if (all_dtype(qkv.dtype(), {&out})) {  // only lse needs a copy
      Tensor l = s.out(lse, false);
      cuda::attention_fused_forward(out, l, qkv, n_head);
      return s.store();
    }
    Tensor o = s.out(out, false), l = s.out(lse, false);
    cuda::attention_fused_forward(o, l, s.in(qkv), n_head);
    return s.store();
  }
  check_aligned("attention_fused_forward", qkv.raw(), "qkv");
  check_aligned("attention_fused_forward", out.raw(), "out");
  float* l = lse.data<float>();
  dispatch(d, qkv.dtype(), [&]<int HSP, class E, class TS>() {
    forward_launch<HSP, E, TS>(ptr<TS>(out), l, ptr<TS>(qkv), d);
  });
}

void attention_fused_backward(Tensor& dqkv, const Tensor& dout, const Tensor& qkv, const Tensor& out,
                              const Tensor& lse, int n_head) {
  const Dims d = dims_of(qkv, n_head);
  if (d.B == 0 || d.T == 0) return;
  if (!all_dtype(qkv.dtype(), {&dqkv, &dout, &out}) || lse.dtype() != DType::F32) {
    F32Stage s;
    if (all_dtype(qkv.dtype(), {&dqkv, &dout, &out})) {  // only lse needs a copy
      cuda::attention_fused_backward(dqkv, dout, qkv, out, s.in(lse), n_head);
      return;
    }
    Tensor g = s.out(dqkv, true);
    cuda::attention_fused_backward(g, s.in(dout), s.in(qkv), s.in(out), s.in(lse), n_head);
    return s.store();
  }
  check_aligned("attention_fused_backward", dqkv.raw(), "dqkv");
  check_aligned("attention_fused_backward", dout.raw(), "dout");
  check_aligned("attention_fused_backward", qkv.raw(), "qkv");
  const float* l = lse.data<float>();
  dispatch(d, qkv.dtype(), [&]<int HSP, class E, class TS>() {
    backward_launch<HSP, E, TS>(ptr<TS>(dqkv), ptr<TS>(dout), ptr<TS>(qkv), ptr<TS>(out), l, d);
  });
}

}  // namespace sgpt::cuda
