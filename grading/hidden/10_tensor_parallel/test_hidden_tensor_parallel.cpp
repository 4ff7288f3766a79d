// Lesson 10 hidden tests: six heads of width 2 (t = 1, 2, 3 and 6 in-process ranks; an MPI world
// that does not divide the heads must be a clear error on every rank), an odd sequence length
// without SP, a batch of three, other seeds, three layers trained five steps, an untied model.

#include <gtest/gtest.h>

#include <array>

#include "tests/test_util.hpp"

using namespace sgpt;
using namespace sgpt::lesson10;
using namespace lesson10_test;

namespace {
const std::vector<int> kRanks = {1, 2, 3, 6};

// Threads groups of each size, then the MPI world when its size divides the heads (and T with
// SP); otherwise every rank of the world must get an sgpt::Error from the size check.
void on_hidden_groups(const GPTConfig& cfg, int64_t T, bool sp, const std::function<void(Communicator&)>& fn) {
  for (int p : kRanks) {
    SCOPED_TRACE("threads group of " + std::to_string(p) + " ranks");
    run_threads(p, fn);
  }
  Communicator& w = sgpt::testing::world();
  SCOPED_TRACE("MPI world of " + std::to_string(w.size()) + " ranks");
  if (cfg.n_head % w.size() == 0 && (!sp || T % w.size() == 0))
    fn(w);
  else
    EXPECT_THROW(make_tp_block_cache(cfg, 1, T, w.size(), sp, DType::F64), Error);
}
}  // namespace

TEST(HiddenInitShard, SixHeadsOtherSeedUntied) {
  GPTConfig cfg = config(12, 6, 3);
  cfg.tied_embeddings = false;
  const GPT full(cfg, 4242, Device::CPU, DType::F64);
  for (int t : kRanks)
    for (int r = 0; r < t; ++r) {
      Shard s(cfg, t);
      init_block_shard(s.v, cfg, full.layout(), 4242, 2, t, r);
      expect_shard_eq(s.v, shard_of(block_views(const_cast<GPT&>(full).params(), full.layout(), 2), cfg, t, r), cfg,
                      t, "[t=" + std::to_string(t) + " rank " + std::to_string(r) + "]");
    }
}

TEST(HiddenTPBlock, OddSequenceSixHeads) {
  const int64_t B = 1, T = 7;
  const BlockRef ref(config(12, 6), B, T, 71);
  on_hidden_groups(ref.cfg, T, false, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t, ref.grad0_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, B, T, t, false, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, B, T, t, false, DType::F64);
    Tensor dx = Tensor::zeros(ref.x.shape(), DType::F64);
    dx.copy_from(ref.dx0);
    c.reset_stats();
    tp_block_forward(c, ref.cfg, p.v, cache, ref.x);
    EXPECT_LT(max_rel_diff(cache.out, ref.out), kTol) << where(c) << " out";
    tp_block_backward(c, ref.cfg, p.v, g.v, cache, ref.x, ref.dout, dx, s);
    EXPECT_LT(max_rel_diff(dx, ref.dx), kTol) << where(c) << " dx";
    expect_shard_eq(g.v, ref.grad_shard(t, r), ref.cfg, t, where(c) + " gradient");
    expect_calls(c, OpKind::AllReduce, 4, 4 * B * T * 12 * 8, where(c));
  });
}

TEST(HiddenSPBlock, OtherShapeSixHeads) {
  const int64_t B = 3, T = 6;
  const BlockRef ref(config(12, 6), B, T, 72);
  on_hidden_groups(ref.cfg, T, true, [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    Shard p(ref.cfg, t, ref.param_shard(t, r)), g(ref.cfg, t, ref.grad0_shard(t, r));
    BlockCache cache = make_tp_block_cache(ref.cfg, B, T, t, true, DType::F64);
    TPScratch s = make_tp_scratch(ref.cfg, B, T, t, true, DType::F64);
    const Tensor x = seq_shard(ref.x, t, r);
    Tensor dx = seq_shard(ref.dx0, t, r);
    c.reset_stats();
    sp_block_forward(c, ref.cfg, p.v, cache, x, s);
    EXPECT_LT(max_rel_diff(cache.out, seq_shard(ref.out, t, r)), kTol) << where(c) << " out";
    sp_block_backward(c, ref.cfg, p.v, g.v, cache, x, seq_shard(ref.dout, t, r), dx, s);
    EXPECT_LT(max_rel_diff(dx, seq_shard(ref.dx, t, r)), kTol) << where(c) << " dx";
    expect_shard_eq(g.v, ref.grad_shard(t, r), ref.cfg, t, where(c) + " gradient");
    const int64_t btc = B * T * 12 * 8;
    expect_calls(c, OpKind::AllGather, 6, 6 * btc, where(c));
    expect_calls(c, OpKind::ReduceScatter, 4, 4 * btc, where(c));
    expect_calls(c, OpKind::AllReduce, 1, 6 * 12 * 8, where(c));
  });
}

TEST(HiddenSPStack, FiveStepsThreeLayers) {
  const int64_t B = 2, T = 6;
  StackRun single(config(12, 6, 3), B, T, 73);
  const StackRun start(config(12, 6, 3), B, T, 73);
  const std::vector<double> want = train_single(single, 5);
  on_hidden_groups(start.cfg, T, true, [&](Communicator& c) {
    const int t = c.size();
    std::vector<Tensor> shards;
    const std::vector<double> got = train_tp(start, c, true, 5, shards);
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(got[i], want[i], kTol * (1 + want[i])) << where(c) << " loss " << i;
    for (int l = 0; l < 3; ++l)
      expect_shard_eq(tp_block_views(shards[l], start.cfg, t),
                      shard_of(block_views(single.params, single.layout, l), start.cfg, t, c.rank()), start.cfg, t,
                      where(c) + " layer " + std::to_string(l));
  });
}

TEST(HiddenMemory, OtherShapes) {
  // Field by field, written out: split over heads/columns 12·BTC/t + NH/t·B·T², the rest
  // 4·BTC + 4·BT whole without SP and divided by t with it.
  for (auto [C, NH, B, T] : {std::array<int64_t, 4>{12, 6, 3, 6}, std::array<int64_t, 4>{16, 4, 1, 12},
                             std::array<int64_t, 4>{36, 12, 2, 24}}) {
    const GPTConfig cfg = config(int(C), int(NH));
    for (int t : {1, 2, 3, 4, 6, 12}) {
      if (NH % t || T % t) continue;
      const int64_t split = 12 * B * T * C / t + NH / t * B * T * T, rest = 4 * B * T * C + 4 * B * T;
      EXPECT_EQ(tp_block_cache_numel(cfg, B, T, t, false), split + rest) << "C=" << C << " t=" << t;
      EXPECT_EQ(tp_block_cache_numel(cfg, B, T, t, true), split + rest / t) << "C=" << C << " t=" << t;
    }
  }
  // And in the tracker, for one of them on 3 and 6 in-process ranks.
  const GPTConfig cfg = config(12, 6);
  for (bool sp : {false, true})
    for (int t : {3, 6})
      run_threads(t, [&](Communicator& c) {
        TPScratch s = make_tp_scratch(cfg, 3, 6, t, sp, DType::F64);
        static int64_t base = 0;
        c.barrier();
        if (c.rank() == 0) base = sgpt::testing::current(MemCategory::Activations);
        c.barrier();
        {
          BlockCache cache = make_tp_block_cache(cfg, 3, 6, t, sp, DType::F64);
          c.barrier();
          if (c.rank() == 0) {
            EXPECT_EQ(sgpt::testing::current(MemCategory::Activations) - base,
                      int64_t(t) * tp_block_cache_numel(cfg, 3, 6, t, sp) * 8)
                << "t=" << t << " sp=" << sp;
          }
          c.barrier();
        }
      });
}

TEST(HiddenVocabParallel, OtherVocabSixRanks) {
  // Vp = 48 rows, V = 41 real: ranks of t = 6 hold 8 columns, the last one a single real one.
  const int64_t B = 3, T = 4, C = 6, Vp = 48;
  const int V = 41;
  const Tensor wte = noise({Vp, C}, 81, "wte", 1.0), wpe = noise({8, C}, 81, "wpe", 1.0);
  Tensor tokens = sgpt::testing::random_tokens(B, T, V, 81);
  tokens.data<int32_t>()[0] = V - 1;  // the last real token, on the last rank
  Tensor enc = Tensor::zeros({B, T, C}, DType::F64);
  encoder_forward(enc, tokens, wte, wpe);
  const Tensor logits = noise({B, T, Vp}, 81, "logits", 4.0);
  Tensor probs = Tensor::zeros({B, T, Vp}, DType::F64), losses = Tensor::zeros({B, T}, DType::F64);
  softmax_crossentropy_forward(losses, probs, logits, tokens, V);
  Tensor dlogits = Tensor::zeros({B, T, Vp}, DType::F64);
  softmax_crossentropy_backward(dlogits, probs, tokens, 1.0 / double(B * T), V);
  auto columns = [](const Tensor& x, int64_t c0, int64_t n) {
    const int64_t N = x.size(0) * x.size(1), W = x.size(2);
    std::vector<double> v = x.to_vector(), out;
    for (int64_t i = 0; i < N; ++i) out.insert(out.end(), v.begin() + i * W + c0, v.begin() + i * W + c0 + n);
    return Tensor::from(out, {x.size(0), x.size(1), n});
  };
  auto check = [&](Communicator& c) {
    const int t = c.size(), r = c.rank();
    const int64_t Vs = Vp / t;
    Tensor shard = Tensor::zeros({Vs, C}, DType::F64);
    shard.copy_from(wte.slice(r * Vs, (r + 1) * Vs));
    Tensor e = Tensor::zeros({B, T, C}, DType::F64);
    vp_embed_forward(c, e, tokens, shard, wpe);
    EXPECT_LT(max_rel_diff(e, enc), kTol) << where(c) << " encoded";
    Tensor p = Tensor::zeros({B, T, Vs}, DType::F64), l = Tensor::zeros({B, T}, DType::F64);
    vp_crossentropy_forward(c, l, p, columns(logits, r * Vs, Vs), tokens, V);
    EXPECT_LT(max_rel_diff(l, losses), kTol) << where(c) << " losses";
    vp_crossentropy_backward(c, p, p, tokens, 1.0 / double(B * T), V);  // in place
    EXPECT_LT(max_rel_diff(p, columns(dlogits, r * Vs, Vs)), kTol) << where(c) << " dlogits";
  };
  for (int t : kRanks) run_threads(t, check);
  if (Vp % sgpt::testing::world().size() == 0) check(sgpt::testing::world());
}
