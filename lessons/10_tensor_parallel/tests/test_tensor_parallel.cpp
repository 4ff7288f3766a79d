// Lesson 10 public tests, in f64 on groups of t = 1, 2, 3 and 4 in-process ranks and then on the
// MPI world of the run: every rank's shard is its slice of the single-device weights; a
// tensor-parallel block (and one with sequence parallelism) gives the single-device output, input
// gradient and parameter gradients from dirty parameters and dirty gradients; a stack of blocks
// trains three AdamW steps exactly like the single-device stack; each block moves exactly the
// bytes the README derives; and one rank's activation cache is the formula's size in the tracker.

#include <gtest/gtest.h>

#include "test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson10;
using namespace lesson10_test;

namespace {
const std::vector<int> kRanks = {1, 2, 3, 4};
constexpr int64_t kB = 2, kT = 12;  // T divides by 1, 2, 3 and 4 (sequence parallelism)
}  // namespace

// ---- given: sizes (not graded) ------------------------------------------------------------------------

TEST(TPSizes, IndivisibleSizesAreAClearError) {
  const GPTConfig cfg = config(24, 12);
  EXPECT_NO_THROW(check_tp_sizes(cfg, 4, 12, true));
  auto message = [&](int t, int64_t T, bool sp) {
    try {
      check_tp_sizes(cfg, t, T, sp);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(5, 12, false).find("attention heads"), std::string::npos) << message(5, 12, false);
  EXPECT_NE(message(0, 12, false).find(">= 1"), std::string::npos);
  EXPECT_NE(message(3, 10, true).find("sequence length"), std::string::npos);
  EXPECT_NO_THROW(check_tp_sizes(cfg, 3, 10, false));
  const GPTConfig odd = config(20, 5);  // 4C = 80: t = 3 divides neither
  EXPECT_THROW(make_tp_block_cache(odd, 1, 4, 2, false, DType::F64), Error);
  EXPECT_THROW(tp_block_numel(odd, 3), Error);
  // Every rank of a group reports it, so none waits for the others.
  run_threads(2, [&](Communicator& c) { EXPECT_THROW(make_tp_scratch(cfg, 1, 5, c.size(), true, DType::F64), Error); });
}

// ---- task 1: the shards ----------------------------------------------------------------------------

TEST(InitShard, EqualsTheSliceOfTheSingleDeviceWeights) {
  const GPTConfig cfg = config();
  const GPT full(cfg, 1234, Device::CPU, DType::F64);
  for (int t : kRanks)
    for (int r = 0; r < t; ++r)
      for (int layer : {0, 1}) {
        Shard s(cfg, t);
        init_block_shard(s.v, cfg, full.layout(), 1234, layer, t, r);
        const Tensor want = shard_of(block_views(const_cast<GPT&>(full).params(), full.layout(), layer), cfg, t, r);
        expect_shard_eq(s.v, want, cfg, t, "[t=" + std::to_string(t) + " rank " + std::to_string(r) + " layer " +
                                                std::to_string(layer) + "]");
      }
}

TEST(InitShard, GatheredShardsAreTheWholeModel) {
  // Every element of the block appears in exactly one rank's matrices; the replicated vectors on
  // all. The shards of another seed differ from this one's.
  const GPTConfig cfg = config();
  const GPT full(cfg, 99, Device::CPU, DType::F64);
  const int t = 4;
  double sum_sq = 0, sum_sq_other = 0;
  for (int r = 0; r < t; ++r) {
    Shard s(cfg, t), o(cfg, t);
    init_block_shard(s.v, cfg, full.layout(), 99, 1, t, r);
    init_block_shard(o.v, cfg, full.layout(), 100, 1, t, r);
    for (const Tensor* w : {&s.v.qkv_w, &s.v.attproj_w, &s.v.fc_w, &s.v.fcproj_w}) sum_sq += sum_of_squares(*w);
    for (const Tensor* w : {&o.v.qkv_w, &o.v.attproj_w, &o.v.fc_w, &o.v.fcproj_w}) sum_sq_other += sum_of_squares(*w);
    EXPECT_GT(max_rel_diff(s.flat, o.flat), 1e-4) << "rank " << r << ": the seed does not matter";
  }
  const BlockParams p = block_views(const_cast<GPT&>(full).params(), full.layout(), 1);
  double want = 0;
  for (const Tensor* w : {&p.qkv_w, &p.attproj_w, &p.fc_w, &p.fcproj_w}) want += sum_of_squares(*w);
  EXPECT_NEAR(sum_sq, want, 1e-12 * want);
  EXPECT_GT(std::abs(sum_sq_other - want), 1e-9);
}

// ---- task 2: f and g -------------------------------------------------------------------------------------

TEST(Conjugates, FAndGForwardAndBackward) {
  on_groups(kRanks, [](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const std::string at = where(c);
    auto rank_values = [&](int rr) { return noise({2, 3, 4}, 7 + rr, "v", 1.0); };
    Tensor sum = Tensor::zeros({2, 3, 4}, DType::F64);
    for (int rr = 0; rr < t; ++rr) axpy_(sum, 1.0, rank_values(rr));
    struct Case {
      const char* name;
      void (*fn)(Communicator&, Tensor&);
      bool sums;
    } cases[] = {{"f_forward", f_forward, false},
                 {"f_backward", f_backward, true},
                 {"g_forward", g_forward, true},
                 {"g_backward", g_backward, false}};
    for (const Case& k : cases) {
      Tensor v = rank_values(r);
      c.reset_stats();
      k.fn(c, v);
      EXPECT_LT(max_rel_diff(v, k.sums ? sum : rank_values(r)), 1e-12) << at << " " << k.name;
      expect_calls(c, OpKind::AllReduce, k.sums ? 1 : 0, k.sums ? 24 * 8 : 0, at + " " + k.name);
    }
  });
}

// ---- task 3: the block forward -------------------------------------------------------------------------

TEST(TPBlock, ForwardMatchesSingleDevice) {
  const BlockRef ref(config(), kB, kT, 11);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size();
    Shard p(ref.cfg, t, ref.param_shard(t, c.rank()));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, false, DType::F64);
    tp_block_forward(c, ref.cfg, p.v, cache, ref.x);
    EXPECT_LT(max_rel_diff(cache.out, ref.out), kTol) << where(c) << " block output";
  });
}

TEST(TPBlock, ForwardDoesTwoAllReducesOfBTC) {
  const BlockRef ref(config(), kB, kT, 12);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size();
    Shard p(ref.cfg, t, ref.param_shard(t, c.rank()));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, false, DType::F64);
    c.reset_stats();
    tp_block_forward(c, ref.cfg, p.v, cache, ref.x);
    const int64_t btc = kB * kT * ref.cfg.n_embd * 8;
    expect_calls(c, OpKind::AllReduce, 2, 2 * btc, where(c));
    EXPECT_EQ(c.stats().total().calls, 2) << where(c) << " other communication: " << c.stats().report();
  });
}

// ---- task 4: the block backward ------------------------------------------------------------------------

TEST(TPBlock, BackwardMatchesSingleDeviceFromDirtyGradients) {
  const BlockRef ref(config(), kB, kT, 13);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t, ref.grad0_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, false, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, false, DType::F64);
    Tensor dx = Tensor::zeros(ref.x.shape(), DType::F64);
    dx.copy_from(ref.dx0);
    tp_block_forward(c, ref.cfg, p.v, cache, ref.x);
    tp_block_backward(c, ref.cfg, p.v, g.v, cache, ref.x, ref.dout, dx, s);
    EXPECT_LT(max_rel_diff(dx, ref.dx), kTol) << where(c) << " dx";
    expect_shard_eq(g.v, ref.grad_shard(t, r), ref.cfg, t, where(c) + " gradient");
  });
}

TEST(TPBlock, BackwardDoesTwoAllReducesOfBTC) {
  const BlockRef ref(config(), kB, kT, 14);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t);
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, false, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, false, DType::F64);
    Tensor dx = Tensor::zeros(ref.x.shape(), DType::F64);
    tp_block_forward(c, ref.cfg, p.v, cache, ref.x);
    c.reset_stats();
    tp_block_backward(c, ref.cfg, p.v, g.v, cache, ref.x, ref.dout, dx, s);
    expect_calls(c, OpKind::AllReduce, 2, 2 * kB * kT * ref.cfg.n_embd * 8, where(c));
    EXPECT_EQ(c.stats().total().calls, 2) << where(c) << " other communication: " << c.stats().report();
  });
}

TEST(TPStack, ThreeAdamWStepsMatchSingleDevice) {
  StackRun single(config(24, 12, 2), kB, kT, 21);
  const StackRun start(config(24, 12, 2), kB, kT, 21);
  const std::vector<double> want = train_single(single, 3);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size();
    std::vector<Tensor> shards;
    const std::vector<double> got = train_tp(start, c, false, 3, shards);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], kTol * (1 + want[i])) << where(c) << " loss " << i;
    for (int l = 0; l < start.cfg.n_layer; ++l)
      expect_shard_eq(tp_block_views(shards[l], start.cfg, t),
                      shard_of(block_views(single.params, single.layout, l), start.cfg, t, c.rank()), start.cfg, t,
                      where(c) + " layer " + std::to_string(l) + " after 3 steps");
  });
}

// ---- task 5: sequence-parallel communication -----------------------------------------------------------

TEST(SPOps, GatherAndReduceScatterAlongTheSequence) {
  on_groups(kRanks, [](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t B = 2, T = 12, C = 5;
    // Integer values, so every sum is exact.
    auto full_of = [&](int rr) {
      std::vector<double> v(B * T * C);
      for (size_t i = 0; i < v.size(); ++i) v[i] = double((i * 7 + size_t(rr) * 3) % 11) - 5;
      return Tensor::from(v, {B, T, C});
    };
    // All-gather: every rank's positions, back in sequence order.
    Tensor gathered = Tensor::zeros({B, T, C}, DType::F64);
    c.reset_stats();
    sp_all_gather(c, gathered, seq_shard(full_of(0), t, r));
    EXPECT_EQ(max_rel_diff(gathered, full_of(0)), 0.0) << where(c) << " all-gather";
    expect_calls(c, OpKind::AllGather, 1, B * T * C * 8, where(c));
    // Reduce-scatter: this rank's positions of the sum.
    Tensor sum = Tensor::zeros({B, T, C}, DType::F64);
    for (int rr = 0; rr < t; ++rr) axpy_(sum, 1.0, full_of(rr));
    Tensor shard = Tensor::zeros({B, T / t, C}, DType::F64);
    const Tensor mine = full_of(r);
    c.reset_stats();
    sp_reduce_scatter(c, shard, mine);
    EXPECT_EQ(max_rel_diff(shard, seq_shard(sum, t, r)), 0.0) << where(c) << " reduce-scatter";
    EXPECT_EQ(max_rel_diff(mine, full_of(r)), 0.0) << where(c) << " the input was modified";
    expect_calls(c, OpKind::ReduceScatter, 1, B * T * C * 8, where(c));
    EXPECT_EQ(c.stats()[OpKind::AllReduce].calls, 0) << where(c);
  });
}

// ---- task 6: the sequence-parallel forward --------------------------------------------------------------

TEST(SPBlock, ForwardMatchesSingleDevice) {
  const BlockRef ref(config(), kB, kT, 15);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, true, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, true, DType::F64);
    sp_block_forward(c, ref.cfg, p.v, cache, seq_shard(ref.x, t, r), s);
    EXPECT_LT(max_rel_diff(cache.out, seq_shard(ref.out, t, r)), kTol) << where(c) << " this rank's positions";
  });
}

TEST(SPBlock, ForwardMovesWhatTwoAllReducesMove) {
  const BlockRef ref(config(), kB, kT, 16);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t btc = kB * kT * ref.cfg.n_embd * 8;
    Shard p(ref.cfg, t, ref.param_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, true, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, true, DType::F64);
    c.reset_stats();
    sp_block_forward(c, ref.cfg, p.v, cache, seq_shard(ref.x, t, r), s);
    const CommStats st = c.stats();
    expect_calls(c, OpKind::AllGather, 2, 2 * btc, where(c));
    expect_calls(c, OpKind::ReduceScatter, 2, 2 * btc, where(c));
    EXPECT_EQ(st.total().calls, 4) << where(c) << " other communication: " << st.report();
    // A ring all-reduce is a reduce-scatter and an all-gather: the same bytes on the wire.
    const double sp_bus = bus_bytes(OpKind::AllGather, double(st[OpKind::AllGather].bytes), t) +
                          bus_bytes(OpKind::ReduceScatter, double(st[OpKind::ReduceScatter].bytes), t);
    EXPECT_DOUBLE_EQ(sp_bus, bus_bytes(OpKind::AllReduce, 2.0 * double(btc), t)) << where(c);
  });
}

// ---- task 7: the sequence-parallel backward -------------------------------------------------------------

TEST(SPBlock, BackwardMatchesSingleDeviceFromDirtyGradients) {
  const BlockRef ref(config(), kB, kT, 17);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t, ref.grad0_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, true, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, true, DType::F64);
    const Tensor x = seq_shard(ref.x, t, r);
    Tensor dx = seq_shard(ref.dx0, t, r);
    sp_block_forward(c, ref.cfg, p.v, cache, x, s);
    sp_block_backward(c, ref.cfg, p.v, g.v, cache, x, seq_shard(ref.dout, t, r), dx, s);
    EXPECT_LT(max_rel_diff(dx, seq_shard(ref.dx, t, r)), kTol) << where(c) << " dx";
    expect_shard_eq(g.v, ref.grad_shard(t, r), ref.cfg, t, where(c) + " gradient");
  });
}

TEST(SPBlock, BackwardCommunication) {
  const BlockRef ref(config(), kB, kT, 18);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t btc = kB * kT * ref.cfg.n_embd * 8;
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t);
    BlockCache cache = make_tp_block_cache(ref.cfg, kB, kT, t, true, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, kB, kT, t, true, DType::F64);
    const Tensor x = seq_shard(ref.x, t, r);
    Tensor dx = Tensor::zeros(x.shape(), DType::F64);
    sp_block_forward(c, ref.cfg, p.v, cache, x, s);
    c.reset_stats();
    sp_block_backward(c, ref.cfg, p.v, g.v, cache, x, seq_shard(ref.dout, t, r), dx, s);
    // Two all-gathers and two reduce-scatters (the conjugates of the forward's), two all-gathers
    // of the LayerNorm outputs the cache did not keep whole, one all-reduce of the six replicated
    // vectors' gradients.
    expect_calls(c, OpKind::AllGather, 4, 4 * btc, where(c));
    expect_calls(c, OpKind::ReduceScatter, 2, 2 * btc, where(c));
    expect_calls(c, OpKind::AllReduce, 1, 6 * ref.cfg.n_embd * 8, where(c));
    EXPECT_EQ(c.stats().total().calls, 7) << where(c) << " other communication: " << c.stats().report();
  });
}

TEST(SPStack, ThreeAdamWStepsMatchSingleDevice) {
  StackRun single(config(24, 12, 2), kB, kT, 22);
  const StackRun start(config(24, 12, 2), kB, kT, 22);
  const std::vector<double> want = train_single(single, 3);
  on_groups(kRanks, [&](Communicator& c) {
    const int t = c.size();
    std::vector<Tensor> shards;
    const std::vector<double> got = train_tp(start, c, true, 3, shards);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(got[i], want[i], kTol * (1 + want[i])) << where(c) << " loss " << i;
    for (int l = 0; l < start.cfg.n_layer; ++l)
      expect_shard_eq(tp_block_views(shards[l], start.cfg, t),
                      shard_of(block_views(single.params, single.layout, l), start.cfg, t, c.rank()), start.cfg, t,
                      where(c) + " layer " + std::to_string(l) + " after 3 steps");
  });
}

// ---- task 8: the memory formula -----------------------------------------------------------------------

namespace {
// Runs a block forward on rank c of a group whose ranks all live in this process when `in_process`
// (threads: the tracker sums them) and checks the activation bytes the caches hold and the peak.
void check_cache_memory(Communicator& c, const GPTConfig& cfg, int64_t B, int64_t T, bool sp, bool in_process,
                        uint64_t seed) {
  const int t = c.size(), r = c.rank();
  const BlockRef ref(cfg, B, T, seed);  // built before the measurement
  Shard p(cfg, t, ref.param_shard(t, r));
  TPScratch s = make_tp_scratch(cfg, B, T, t, sp, DType::F64);
  const Tensor x = sp ? seq_shard(ref.x, t, r) : ref.x;
  const int64_t ranks_here = in_process ? t : 1;
  static int64_t base = 0;  // written by rank 0 between barriers
  c.barrier();
  if (r == 0) {
    base = sgpt::testing::current(MemCategory::Activations);
    MemoryTracker::instance().reset_peak();
  }
  c.barrier();
  {
    BlockCache cache = make_tp_block_cache(cfg, B, T, t, sp, DType::F64);
    if (sp)
      sp_block_forward(c, cfg, p.v, cache, x, s);
    else
      tp_block_forward(c, cfg, p.v, cache, x);
    c.barrier();
    if (r == 0) {
      const int64_t want = ranks_here * tp_block_cache_numel(cfg, B, T, t, sp) * 8;
      EXPECT_EQ(sgpt::testing::current(MemCategory::Activations) - base, want) << where(c) << " sp=" << sp;
      EXPECT_EQ(sgpt::testing::peak(MemCategory::Activations) - base, want) << where(c) << " sp=" << sp
                                                                             << " (the forward allocated more)";
    }
    c.barrier();
  }
}
}  // namespace

TEST(Memory, CacheFormulaMatchesTheTracker) {
  const GPTConfig cfg = config();
  for (bool sp : {false, true}) {
    for (int t : kRanks) run_threads(t, [&](Communicator& c) { check_cache_memory(c, cfg, kB, kT, sp, true, 31); });
    check_cache_memory(sgpt::testing::world(), cfg, kB, kT, sp, false, 31);
  }
}

TEST(Memory, SequenceParallelDividesEveryActivationByT) {
  // TP alone leaves ln1, resid2, ln2, out and the LayerNorm statistics whole on every rank; with
  // SP every tensor of the cache is 1/t of the single-device one.
  const GPTConfig cfg = config();
  const int64_t one = block_cache_numel(cfg, kB, kT);
  EXPECT_EQ(tp_block_cache_numel(cfg, kB, kT, 1, false), one);
  EXPECT_EQ(tp_block_cache_numel(cfg, kB, kT, 1, true), one);
  for (int t : kRanks) {
    EXPECT_EQ(tp_block_cache_numel(cfg, kB, kT, t, true) * t, one) << "t=" << t;
    const int64_t C = cfg.n_embd;
    EXPECT_EQ(tp_block_cache_numel(cfg, kB, kT, t, false) - tp_block_cache_numel(cfg, kB, kT, t, true),
              (4 * kB * kT * C + 4 * kB * kT) * (t - 1) / t)
        << "t=" << t;
  }
}

// ---- task 9 (stretch): vocabulary parallelism ---------------------------------------------------------

TEST(VocabParallel, EmbeddingMatchesSingleDevice) {
  // Vp = 32 rows (V = 29 real), so t = 1, 2, 4 divide it; tokens cover every rank's rows.
  const int64_t B = 2, T = 6, C = 8, Vp = 32;
  const Tensor wte = noise({Vp, C}, 41, "wte", 1.0), wpe = noise({16, C}, 41, "wpe", 1.0);
  const Tensor tokens = sgpt::testing::random_tokens(B, T, 29, 41);
  Tensor want = Tensor::zeros({B, T, C}, DType::F64);
  encoder_forward(want, tokens, wte, wpe);
  const Tensor dencoded = noise({B, T, C}, 41, "denc", 1.0);
  const Tensor dwte0 = noise({Vp, C}, 41, "dirty-dwte", 0.5), dwpe0 = noise({16, C}, 41, "dirty-dwpe", 0.5);
  Tensor dwte = Tensor::zeros({Vp, C}, DType::F64), dwpe = Tensor::zeros({16, C}, DType::F64);
  dwte.copy_from(dwte0);
  dwpe.copy_from(dwpe0);
  encoder_backward(dwte, dwpe, dencoded, tokens);
  on_groups({1, 2, 4}, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t Vs = Vp / t;
    Tensor shard = Tensor::zeros({Vs, C}, DType::F64);
    shard.copy_from(wte.slice(r * Vs, (r + 1) * Vs));
    Tensor enc = Tensor::zeros({B, T, C}, DType::F64);
    c.reset_stats();
    vp_embed_forward(c, enc, tokens, shard, wpe);
    EXPECT_LT(max_rel_diff(enc, want), kTol) << where(c) << " encoded";
    expect_calls(c, OpKind::AllReduce, 1, B * T * C * 8, where(c));
    Tensor dshard = Tensor::zeros({Vs, C}, DType::F64), dp = Tensor::zeros({16, C}, DType::F64);
    dshard.copy_from(dwte0.slice(r * Vs, (r + 1) * Vs));
    dp.copy_from(dwpe0);
    c.reset_stats();
    vp_embed_backward(c, dshard, dp, dencoded, tokens);
    EXPECT_LT(max_rel_diff(dshard, dwte.slice(r * Vs, (r + 1) * Vs)), kTol) << where(c) << " dwte";
    EXPECT_LT(max_rel_diff(dp, dwpe), kTol) << where(c) << " dwpe";
    EXPECT_EQ(c.stats().total().calls, 0) << where(c) << " the backward needs no communication";
  });
}

namespace {
// Columns [c0, c0 + n) of x [B,T,V].
Tensor columns(const Tensor& x, int64_t c0, int64_t n) {
  const int64_t N = x.size(0) * x.size(1), V = x.size(2);
  std::vector<double> v = x.to_vector(), out;
  for (int64_t i = 0; i < N; ++i) out.insert(out.end(), v.begin() + i * V + c0, v.begin() + i * V + c0 + n);
  return Tensor::from(out, {x.size(0), x.size(1), n});
}
}  // namespace

TEST(VocabParallel, CrossEntropyMatchesSingleDevice) {
  // Vp = 32 with V = 29 real columns: rank 3 of 4 holds 5 real and 3 padded columns.
  const int64_t B = 2, T = 5, Vp = 32;
  const int V = 29;
  const Tensor logits = noise({B, T, Vp}, 43, "logits", 3.0);
  const Tensor targets = sgpt::testing::random_tokens(B, T, V, 43);
  Tensor probs = Tensor::zeros({B, T, Vp}, DType::F64), losses = Tensor::zeros({B, T}, DType::F64);
  softmax_crossentropy_forward(losses, probs, logits, targets, V);
  double mean = 0;
  for (double l : losses.to_vector()) mean += l / double(B * T);
  Tensor dlogits = Tensor::zeros({B, T, Vp}, DType::F64);
  softmax_crossentropy_backward(dlogits, probs, targets, 0.25, V);
  on_groups({1, 2, 4}, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t Vs = Vp / t;
    const Tensor mine = columns(logits, r * Vs, Vs);
    Tensor p = Tensor::zeros({B, T, Vs}, DType::F64), l = Tensor::zeros({B, T}, DType::F64);
    c.reset_stats();
    const double got = vp_crossentropy_forward(c, l, p, mine, targets, V);
    EXPECT_NEAR(got, mean, kTol * (1 + mean)) << where(c) << " mean loss";
    EXPECT_LT(max_rel_diff(l, losses), kTol) << where(c) << " losses";
    EXPECT_LT(max_rel_diff(p, columns(probs, r * Vs, Vs)), kTol) << where(c) << " probabilities";
    expect_calls(c, OpKind::AllGather, 1, int64_t(t) * B * T * 8, where(c));
    expect_calls(c, OpKind::AllReduce, 1, 2 * B * T * 8, where(c));
    Tensor d = Tensor::zeros({B, T, Vs}, DType::F64);
    vp_crossentropy_backward(c, d, p, targets, 0.25, V);
    EXPECT_LT(max_rel_diff(d, columns(dlogits, r * Vs, Vs)), kTol) << where(c) << " dlogits";
  });
}
