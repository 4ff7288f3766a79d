// Lesson 11: ZeRO stages 1, 2 and 3. Every stage trains exactly like data parallelism: what
// changes is which rank keeps which bytes, and which collectives move them.

#include "zero.hpp"

#include <cmath>

#include "core/check.hpp"
#include "kernels/ops.hpp"

namespace sgpt::lesson11 {

std::vector<ShardRange> owned_pieces(const std::vector<ShardRange>& units, int world, int rank) {
  // TODO(lesson 11, task 1): this rank's piece of every unit
  SGPT_CHECK(world >= 1 && rank >= 0 && rank < world, "owned_pieces: rank ", rank, " is not in [0, ", world,
             ") (world ", world, ")");
  std::vector<ShardRange> pieces;
  for (const ShardRange& u : units) {
    const ShardRange s = shard_range(u.count, world, rank);
    pieces.push_back(ShardRange{u.begin + s.begin, s.count});
  }
  return pieces;
  // END TODO
}

StateBytes predicted_bytes(int stage, Recipe recipe, double psi, int world, int64_t largest_unit) {
  // TODO(lesson 11, task 2): the paper's bytes per rank, plus the transient unit
  SGPT_CHECK(stage >= 0 && stage <= 3, "predicted_bytes: stage ", stage, " is not 0 (data parallelism), 1, 2 or 3");
  SGPT_CHECK(psi >= 0 && world >= 1 && largest_unit >= 0, "predicted_bytes: psi ", psi, ", world ", world,
             " and largest unit ", largest_unit, " must be >= 0, >= 1 and >= 0");
  const double p = recipe == Recipe::FP32 ? 4 : 2;  // bytes of a parameter, and of a gradient
  const double k = recipe == Recipe::FP32 ? 8 : 12; // optimizer bytes per parameter
  const double d = world, unit = double(largest_unit);
  StateBytes b;
  b.params = stage == 3 ? p * psi / d + p * unit : p * psi;
  b.grads = stage >= 2 ? p * psi / d + p * unit : p * psi;
  b.optimizer = stage >= 1 ? k * psi / d : k * psi;
  return b;
  // END TODO
}

ZeroState make_zero_state(const UnitRunner& runner, Communicator& comm, int stage, uint64_t seed,
                          const AdamWConfig& cfg, DType dtype) {
  // TODO(lesson 11, task 3): allocate what the stage keeps
  SGPT_CHECK(stage >= 1 && stage <= 3, "make_zero_state: stage ", stage, " is not 1, 2 or 3");
  const bool mixed = dtype == DType::BF16;  // lesson 05's recipe: the 12 bytes are f32, and sharded
  const ParameterLayout& layout = runner.layout();
  const Device dev = comm.preferred_device();
  ZeroState z;
  z.stage = stage;
  z.units = stage_units(runner, stage);
  z.pieces = owned_pieces(z.units, comm.size(), comm.rank());
  int64_t owned = 0;
  for (const ShardRange& p : z.pieces) owned += p.count;
  // A packed tensor of this rank's pieces, each initialised like the single-device model's range.
  auto init_pieces = [&](Tensor& packed) {
    int64_t at = 0;
    for (const ShardRange& p : z.pieces) {
      Tensor v = packed.view(at, {p.count});
      if (p.count > 0) init_parameters(v, layout, seed, p.begin);
      at += p.count;
    }
  };
  if (stage <= 2) {
    z.full_params = Tensor::empty({layout.numel()}, dtype, dev, MemCategory::Parameters);
    init_parameters(z.full_params, layout, seed);
  }
  if (stage == 1) z.full_grads = Tensor::zeros({layout.numel()}, dtype, dev, MemCategory::Gradients);
  if (stage >= 2) {
    z.shard_grads = Tensor::zeros({owned}, dtype, dev, MemCategory::Gradients);
    z.unit_grads = Tensor::zeros({runner.largest_unit()}, dtype, dev, MemCategory::Gradients);
  }
  if (stage == 3) {
    z.shard_params = Tensor::empty({owned}, dtype, dev, MemCategory::Parameters);
    z.unit_params = Tensor::empty({runner.largest_unit()}, dtype, dev, MemCategory::Parameters);
    init_pieces(z.shard_params);
  }
  if (mixed) {
    z.master = Tensor::empty({owned}, DType::F32, dev, MemCategory::OptimizerState);
    init_pieces(z.master);
  }
  for (const ShardRange& p : z.pieces)
    z.opts.emplace_back(layout, cfg, mixed ? DType::F32 : dtype, dev, p.begin, p.count);
  return z;
  // END TODO
}

// BEGIN SOLUTION ONLY
namespace {

// The checks every step makes before it communicates; returns k.
int64_t micro_batches(const Tensor& x, const Tensor& y, int64_t micro_batch, const Communicator& comm) {
  SGPT_CHECK(x.dim() == 2 && y.shape() == x.shape(), "zero step: x and y must be [rows, T], got ",
             shape_str(x.shape()), " and ", shape_str(y.shape()));
  const int64_t b = x.size(0);
  SGPT_CHECK(micro_batch > 0 && b % micro_batch == 0, "zero step: micro-batch ", micro_batch, " does not divide this rank's ",
             b, " rows: the global batch ", b * comm.size(), " is not a multiple of micro-batch x ranks = ",
             micro_batch, " x ", comm.size());
  return b / micro_batch;
}

// One f64 scalar summed (or averaged) over the ranks.
double all_reduce_scalar(Communicator& comm, double v, ReduceOp op) {
  Tensor t = Tensor::from(std::vector<double>{v}, {1});
  comm.all_reduce(t, op);
  return t.to_vector()[0];
}

// The global norm of the gradient from each rank's pieces: their squares summed over the ranks.
double global_norm(const std::vector<Tensor>& grad_pieces, Communicator& comm) {
  double sq = 0;
  for (const Tensor& g : grad_pieces) sq += g.numel() > 0 ? sum_of_squares(g) : 0.0;
  return std::sqrt(all_reduce_scalar(comm, sq, ReduceOp::Sum));
}

// The factor clip_grad_norm would scale the whole gradient by (1 when it does not clip). It goes
// to the update as grad_scale: 16-bit gradients are never rescaled in place (lesson 05).
double clip_factor(double norm, double clip) { return clip > 0 && norm > clip ? clip / (norm + 1e-6) : 1.0; }

// Views of this rank's pieces inside a packed tensor.
std::vector<Tensor> packed_views(const Tensor& packed, const std::vector<ShardRange>& pieces) {
  std::vector<Tensor> out;
  int64_t at = 0;
  for (const ShardRange& p : pieces) {
    out.push_back(packed.view(at, {p.count}));
    at += p.count;
  }
  return out;
}

}  // namespace
// END SOLUTION ONLY

// ---- given: the update of one piece, in either recipe ----------------------------------------------

void update_piece(ZeroState& z, size_t u, Tensor& params, const Tensor& grads, double lr, double grad_scale) {
  SGPT_CHECK(u < z.pieces.size() && params.numel() == z.pieces[u].count && grads.numel() == z.pieces[u].count,
             "update_piece: piece ", u, " of ", z.pieces.size(), " has ", u < z.pieces.size() ? z.pieces[u].count : 0,
             " elements; got params of ", params.numel(), " and grads of ", grads.numel());
  if (params.numel() == 0) return;  // an empty piece (a unit smaller than the group) has nothing to update
  if (!z.master.defined()) {        // one dtype: the working parameters are what AdamW updates
    z.opts[u].step(params, grads, lr, grad_scale);
    return;
  }
  // Mixed: AdamW updates the piece's f32 master (its moments are f32 too); the working piece is
  // then the master rounded to nearest even, once (0 + master in f32, rounded on store).
  int64_t at = 0;
  for (size_t i = 0; i < u; ++i) at += z.pieces[i].count;
  Tensor master = z.master.view(at, {params.numel()});
  z.opts[u].step(master, grads, lr, grad_scale);
  params.zero_();
  axpy_(params, 1.0, master);
}

StepStats zero1_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 3): reduce-scatter, update my piece, all-gather
  const int64_t k = micro_batches(x, y, micro_batch, comm);
  const int L = runner.num_units();
  z.full_grads.zero_();
  double loss = 0;
  for (int64_t i = 0; i < k; ++i) {
    runner.start(x.slice(i * micro_batch, (i + 1) * micro_batch), y.slice(i * micro_batch, (i + 1) * micro_batch));
    for (int u = 0; u < L; ++u) {
      const auto [b, e] = runner.unit_range(u);
      runner.forward(u, z.full_params.view(b, {e - b}));
    }
    loss += runner.loss();
    for (int u = L - 1; u >= 0; --u) {
      const auto [b, e] = runner.unit_range(u);
      Tensor g = z.full_grads.view(b, {e - b});
      runner.backward(u, z.full_params.view(b, {e - b}), g, 1.0 / double(k));
    }
  }
  const ShardRange mine = z.pieces[0];
  Tensor g = z.full_grads.view(mine.begin, {mine.count});
  comm.reduce_scatter(g, z.full_grads, ReduceOp::Avg);
  StepStats s;
  s.loss = all_reduce_scalar(comm, loss / double(k), ReduceOp::Avg);
  s.grad_norm = global_norm({g}, comm);
  Tensor p = z.full_params.view(mine.begin, {mine.count});
  update_piece(z, 0, p, g, lr, clip_factor(s.grad_norm, clip));
  comm.all_gather(z.full_params, p);
  return s;
  // END TODO
}

StepStats zero2_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 4): reduce-scatter each unit's gradient as backward produces it
  const int64_t k = micro_batches(x, y, micro_batch, comm);
  const int L = runner.num_units();
  std::vector<Tensor> mine = packed_views(z.shard_grads, z.pieces);
  z.shard_grads.zero_();
  double loss = 0;
  for (int64_t i = 0; i < k; ++i) {
    runner.start(x.slice(i * micro_batch, (i + 1) * micro_batch), y.slice(i * micro_batch, (i + 1) * micro_batch));
    for (int u = 0; u < L; ++u) runner.forward(u, z.full_params.view(z.units[u].begin, {z.units[u].count}));
    loss += runner.loss();
    for (int u = L - 1; u >= 0; --u) {
      const ShardRange unit = z.units[u];
      Tensor ug = z.unit_grads.view(0, {unit.count});
      ug.zero_();
      runner.backward(u, z.full_params.view(unit.begin, {unit.count}), ug, 1.0 / double(k));
      // This rank's shard of the unit, in place: the reduced values land where its piece sits.
      Tensor part = ug.view(z.pieces[u].begin - unit.begin, {z.pieces[u].count});
      comm.reduce_scatter(part, ug, ReduceOp::Avg);
      if (part.numel() > 0) axpy_(mine[u], 1.0, part);
    }
  }
  StepStats s;
  s.loss = all_reduce_scalar(comm, loss / double(k), ReduceOp::Avg);
  s.grad_norm = global_norm(mine, comm);
  const double factor = clip_factor(s.grad_norm, clip);
  for (size_t u = 0; u < z.units.size(); ++u) {
    Tensor p = z.full_params.view(z.pieces[u].begin, {z.pieces[u].count});
    update_piece(z, u, p, mine[u], lr, factor);
    Tensor whole = z.full_params.view(z.units[u].begin, {z.units[u].count});
    comm.all_gather(whole, p);
  }
  return s;
  // END TODO
}

StepStats zero3_step(ZeroState& z, UnitRunner& runner, Communicator& comm, const Tensor& x, const Tensor& y,
                     int64_t micro_batch, double lr, double clip) {
  // TODO(lesson 11, task 5): gather each unit just before it runs
  const int64_t k = micro_batches(x, y, micro_batch, comm);
  const int L = runner.num_units();
  std::vector<Tensor> mine = packed_views(z.shard_grads, z.pieces);
  std::vector<Tensor> my_params = packed_views(z.shard_params, z.pieces);
  z.shard_grads.zero_();
  auto gather = [&](int u) {
    Tensor up = z.unit_params.view(0, {z.units[u].count});
    comm.all_gather(up, my_params[u]);
    return up;
  };
  double loss = 0;
  for (int64_t i = 0; i < k; ++i) {
    runner.start(x.slice(i * micro_batch, (i + 1) * micro_batch), y.slice(i * micro_batch, (i + 1) * micro_batch));
    for (int u = 0; u < L; ++u) runner.forward(u, gather(u));
    loss += runner.loss();
    for (int u = L - 1; u >= 0; --u) {
      const ShardRange unit = z.units[u];
      const Tensor up = gather(u);
      Tensor ug = z.unit_grads.view(0, {unit.count});
      ug.zero_();
      runner.backward(u, up, ug, 1.0 / double(k));
      Tensor part = ug.view(z.pieces[u].begin - unit.begin, {z.pieces[u].count});
      comm.reduce_scatter(part, ug, ReduceOp::Avg);
      if (part.numel() > 0) axpy_(mine[u], 1.0, part);
    }
  }
  StepStats s;
  s.loss = all_reduce_scalar(comm, loss / double(k), ReduceOp::Avg);
  s.grad_norm = global_norm(mine, comm);
  const double factor = clip_factor(s.grad_norm, clip);
  for (size_t u = 0; u < z.units.size(); ++u) update_piece(z, u, my_params[u], mine[u], lr, factor);
  return s;
  // END TODO
}

void save_zero_checkpoint(const std::string& path, const ZeroState& z, const UnitRunner& runner, Communicator& comm,
                          const TrainState& state) {
  // TODO(lesson 11, task 6): gather the pieces, rank 0 writes the single-device file
  const ParameterLayout& layout = runner.layout();
  const int64_t n = layout.numel();
  const DType dt = z.opts.front().m().dtype();
  const Device dev = comm.preferred_device();
  // Gathered into temporary full buffers (Other: they live only while the file is written).
  Tensor params = Tensor::empty({n}, dt, dev), m = Tensor::empty({n}, dt, dev), v = Tensor::empty({n}, dt, dev);
  std::vector<Tensor> my_params;  // the file holds the f32 master in the mixed recipe
  if (z.master.defined()) my_params = packed_views(z.master, z.pieces);
  else if (z.stage == 3) my_params = packed_views(z.shard_params, z.pieces);
  for (size_t u = 0; u < z.units.size(); ++u) {
    const ShardRange unit = z.units[u], piece = z.pieces[u];
    Tensor pu = params.view(unit.begin, {unit.count}), mu = m.view(unit.begin, {unit.count}),
           vu = v.view(unit.begin, {unit.count});
    comm.all_gather(pu, !my_params.empty() ? my_params[u] : z.full_params.view(piece.begin, {piece.count}));
    comm.all_gather(mu, z.opts[u].m());
    comm.all_gather(vu, z.opts[u].v());
  }
  if (comm.rank() == 0) {
    GPT model(runner.config(), state.seed, dev, dt);
    model.params().copy_from(params);
    AdamW opt(layout, z.opts.front().config(), dt, dev);
    opt.m().copy_from(m);
    opt.v().copy_from(v);
    opt.set_t(z.opts.front().t());
    save_checkpoint(path, model, opt, state);
  }
  comm.barrier();  // the file is complete (renamed into place) before any rank returns
  // END TODO
}

TrainState load_zero_checkpoint(const std::string& path, ZeroState& z, const UnitRunner& runner) {
  // TODO(lesson 11, task 6): read the whole file, keep my pieces
  const DType dt = z.opts.front().m().dtype();
  const Device dev = z.opts.front().m().device();
  GPT model(runner.config(), 0, dev, dt);
  AdamW opt(runner.layout(), z.opts.front().config(), dt, dev);
  const TrainState st = load_checkpoint(path, model, opt);
  // The working parameters from the file's (f32 in the mixed recipe: rounded into the bf16 copy).
  auto working = [](const Tensor& t, DType want) { return t.dtype() == want ? t : t.cast(want); };
  if (z.full_params.defined()) z.full_params.copy_from(working(model.params(), z.full_params.dtype()));
  std::vector<Tensor> my_params, my_master;
  if (z.stage == 3) my_params = packed_views(z.shard_params, z.pieces);
  if (z.master.defined()) my_master = packed_views(z.master, z.pieces);
  for (size_t u = 0; u < z.pieces.size(); ++u) {
    const ShardRange p = z.pieces[u];
    const Tensor file = model.params().view(p.begin, {p.count});
    if (z.master.defined()) my_master[u].copy_from(file);
    if (z.stage == 3) my_params[u].copy_from(working(file, my_params[u].dtype()));
    z.opts[u].m().copy_from(opt.m().view(p.begin, {p.count}));
    z.opts[u].v().copy_from(opt.v().view(p.begin, {p.count}));
    z.opts[u].set_t(opt.t());
  }
  return st;
  // END TODO
}

}  // namespace sgpt::lesson11
