// Fused causal attention (CUDA, f32 storage, tensor cores with f32 accumulation): FlashAttention-2's
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
// Tiles of 64 queries x 64 keys, 4 warps per block; warp w owns rows 16w..16w+15 of every
// 64-row tile it multiplies. Products run on WMMA fragments with f32 accumulators and operands
// of type E: TF32 (E = float, 16x16x8) by default, bf16 (16x16x16) under MatmulPrecision::BF16.
// q, k, v, dout tiles are cast to E as they are loaded; softmax and the element-wise steps
// work in f32 on the score tile in shared memory, because a WMMA fragment does not say which
// element belongs to which row; P and dS are then written as E for the next products (in
// place for f32). Head sizes up to 128 (multiples of 4) are padded with zero columns to
// HSP = 32, 64 or 128.
//   forward:       one block per (query tile, b, h), key tiles 0..diagonal;
//   backward:      D first (one warp per row); one block per (key tile, b, h) sums dk, dv over
//                  query tiles diagonal..end; one block per (query tile, b, h) sums dq. The
//                  second kernel recomputes P rather than adding dq with atomics: deterministic.
// Scratch: D, [B,NH,T] floats (Scratch::Attention, charged to Activations).

#include <cuda_bf16.h>
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
constexpr int kLdS = kTile + kPad;         // row stride of f32 score tiles
constexpr unsigned kFull = 0xffffffffu;

// The operand type E of the products: its WMMA shape (16x16xK), precision tag and row padding.
template <class E>
struct Op;
template <>
struct Op<float> {  // TF32: f32 in memory, rounded to a 10-bit mantissa in the fragment
  static constexpr int K = 8, Pad = 4;
  using Prec = wmma::precision::tf32;
};
template <>
struct Op<__nv_bfloat16> {
  static constexpr int K = 16, Pad = 8;
  using Prec = __nv_bfloat16;
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

template <int HSP, class E>
void forward_launch(float* out, float* lse, const float* qkv, const Dims& d) {
  constexpr int bytes = FwdSmem<HSP, E>::bytes;
  static const bool once = (allow_smem(attention_fused_forward_kernel<HSP, E>, bytes), true);
  (void)once;
  dim3 grid(d.B * d.NH, ceil_div(d.T, kTile));
  attention_fused_forward_kernel<HSP, E><<<grid, kThreads, bytes, current_stream()>>>(out, lse, qkv, d.T, d.C, d.NH,
                                                                                      d.HS, d.scale);
  SGPT_CUDA_LAUNCH_CHECK("attention_fused_forward_kernel");
}

template <int HSP, class E>
void backward_launch(float* dqkv, const float* dout, const float* qkv, const float* lse, const float* D,
                     const Dims& d) {
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

// Calls f.template operator()<HSP, E>() for the padded head size and the operand type.
template <class F>
void dispatch(const Dims& d, F&& f) {
  const bool bf16 = matmul_precision() == MatmulPrecision::BF16;
  auto by_hsp = [&](auto e) {
    using E = decltype(e);
    if (d.HS <= 32) f.template operator()<32, E>();
    else if (d.HS <= 64) f.template operator()<64, E>();
    else f.template operator()<128, E>();
  };
  if (bf16) by_hsp(__nv_bfloat16{});
  else by_hsp(float{});
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
  dispatch(d, [&]<int HSP, class E>() { forward_launch<HSP, E>(o, l, q, d); });
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
  dispatch(d, [&]<int HSP, class E>() { backward_launch<HSP, E>(g, dy, q, l, D, d); });
}

}  // namespace sgpt::cuda
