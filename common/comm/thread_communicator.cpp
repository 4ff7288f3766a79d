// The threads backend: ranks are std::threads of one process, sharing memory.
//
// Every collective is a rendezvous. Each rank posts its buffers into the next slot of its group
// (slots are numbered by call order, the same on every rank); the last rank to arrive checks that
// the posts agree, then performs the whole operation for everybody (reading every rank's input,
// writing every rank's output) and marks the slot done. A rank's Work waits for that mark. So the
// async forms need no helper thread, and a mismatch is reported to every rank at once.
//
// Point-to-point messages are copied into a mailbox keyed by (source, destination, tag) when sent
// (sends never block); the n-th recv posted for a key takes the n-th message sent on it. With
// SGPT_SYNC_SEND=1 a send completes only once its matching recv has been posted, as on NCCL (and
// MPI_Ssend), so a p2p order that relies on buffered sends deadlocks here too.
//
// One mutex and condition variable, shared by the world group and every group split from it,
// guard all of this; when a rank's thread throws, run_threads marks the whole universe aborted
// and wakes everybody, so every pending and later call throws instead of waiting.

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>

#include "comm/backends.hpp"
#include "comm/communicator.hpp"
#include "core/trace.hpp"

namespace sgpt {

namespace {

struct Universe {
  std::mutex mu;
  std::condition_variable cv;
  bool aborted = false;
  std::string reason;
  std::vector<bool> exited;  // per world rank: its thread has returned
};

// What one rank contributes to a rendezvous.
struct Post {
  int kind = -1;
  DType dtype = DType::F32;
  int64_t count = 0;  // elements of the full buffer
  int root = -1;
  int op = -1;
  const void* in = nullptr;
  void* out = nullptr;
  int64_t out_count = 0;
  int64_t in_count = 0;
  int color = 0, key = 0;
  std::string name;
  std::vector<char> blob;  // signature bytes for the call check
};

struct Group;

struct Slot {
  std::vector<Post> posts;
  std::vector<bool> posted;
  int arrived = 0;
  int left = 0;  // ranks that have not yet collected the result
  bool done = false;
  std::string error;
  std::vector<std::shared_ptr<Communicator>> subs;  // split results, per old rank
  std::vector<std::vector<char>> blobs;              // gathered signatures
};

using MailKey = std::tuple<int, int, int>;  // (src, dst, tag)

struct Group {
  std::shared_ptr<Universe> u;
  int size;
  std::string name;
  std::map<int64_t, Slot> slots;
  std::map<MailKey, std::map<int64_t, std::vector<char>>> mail;
  std::map<MailKey, int64_t> sent, posted_recvs;
  std::vector<int> world_ranks;  // group rank -> world rank
  Group(std::shared_ptr<Universe> u_, int size_) : u(std::move(u_)), size(size_) {}
  bool member_exited(int r) const {
    int w = world_ranks[r];
    return w < static_cast<int>(u->exited.size()) && u->exited[w];
  }
};

// A rank whose thread has returned will never post again: a slot it has not joined cannot finish.
std::string missing_rank(const Group& g, const Slot& s) {
  if (s.posted.empty()) return "";
  for (int r = 0; r < g.size; ++r)
    if (!s.posted[r] && g.member_exited(r))
      return str("collective on group '", g.name, "' can never complete: rank ", r, " (world rank ",
                 g.world_ranks[r], ") returned without calling it");
  return "";
}

std::string aborted_message(const Universe& u) {
  return str("[threads backend] operation abandoned because another rank failed: ", u.reason);
}

class ThreadCommunicator;

// Completion of one rendezvous for one rank.
class SlotWork final : public Work::Impl {
 public:
  SlotWork(std::shared_ptr<Group> g, int64_t seq, std::vector<Tensor> keep, std::function<void(Slot&)> collect)
      : g_(std::move(g)), seq_(seq), keep_(std::move(keep)), collect_(std::move(collect)) {}
  ~SlotWork() override {
    try {
      wait();
    } catch (...) {
    }
  }
  void wait() override {
    if (finished_) return;
    std::unique_lock lk(g_->u->mu);
    Slot& s = g_->slots[seq_];
    g_->u->cv.wait(lk, [&] { return s.done || g_->u->aborted || !missing_rank(*g_, s).empty(); });
    finish(s);
  }
  bool test() override {
    if (finished_) return true;
    std::unique_lock lk(g_->u->mu);
    Slot& s = g_->slots[seq_];
    if (!s.done && !g_->u->aborted && missing_rank(*g_, s).empty()) return false;
    finish(s);
    return true;
  }

 private:
  void finish(Slot& s) {  // called with the lock held
    finished_ = true;
    keep_.clear();
    if (!s.done) {
      std::string why = g_->u->aborted ? aborted_message(*g_->u) : missing_rank(*g_, s);
      throw Error(why);
    }
    std::string err = s.error;
    if (err.empty() && collect_) collect_(s);
    if (--s.left == 0) g_->slots.erase(seq_);
    if (!err.empty()) throw Error(err);
  }
  std::shared_ptr<Group> g_;
  int64_t seq_;
  std::vector<Tensor> keep_;
  std::function<void(Slot&)> collect_;
  bool finished_ = false;
};

// A point-to-point completion that waits, under the group's lock, until the message it needs is
// there (ready()), the group aborted, or the peer rank returned (then finish() says why it never can).
class PeerWork : public Work::Impl {
 public:
  PeerWork(std::shared_ptr<Group> g, MailKey key, int64_t ticket, int peer)
      : g_(std::move(g)), key_(key), ticket_(ticket), peer_(peer) {}
  void wait() override {
    if (finished_) return;
    std::unique_lock lk(g_->u->mu);
    g_->u->cv.wait(lk, [&] { return ready() || g_->u->aborted || g_->member_exited(peer_); });
    finished_ = true;
    finish();
  }
  bool test() override {
    if (finished_) return true;
    std::unique_lock lk(g_->u->mu);
    if (!ready() && !g_->u->aborted && !g_->member_exited(peer_)) return false;
    finished_ = true;
    finish();
    return true;
  }

 protected:
  // Destructors of the derived classes call this: a handle dropped unwaited still completes.
  void wait_quietly() {
    try {
      wait();
    } catch (...) {
    }
  }
  virtual bool ready() const = 0;  // called with the group's lock held
  virtual void finish() = 0;       // likewise; throws when the operation can never complete
  std::shared_ptr<Group> g_;
  MailKey key_;
  int64_t ticket_;
  int peer_;
  bool finished_ = false;
};

class RecvWork final : public PeerWork {
 public:
  RecvWork(std::shared_ptr<Group> g, MailKey key, int64_t ticket, Tensor t)
      : PeerWork(std::move(g), key, ticket, std::get<0>(key)), t_(std::move(t)) {}
  ~RecvWork() override { wait_quietly(); }

 private:
  bool ready() const override {
    auto it = g_->mail.find(key_);
    return it != g_->mail.end() && it->second.count(ticket_);
  }
  void finish() override {
    if (!ready()) {
      if (g_->u->aborted) throw Error(aborted_message(*g_->u));
      SGPT_FAIL("recv on group '", g_->name, "' from rank ", std::get<0>(key_), " tag ", std::get<2>(key_),
                " can never complete: that rank returned without sending");
    }
    auto& box = g_->mail[key_];
    std::vector<char> msg = std::move(box[ticket_]);
    box.erase(ticket_);
    Tensor t = std::move(t_);
    SGPT_CHECK(static_cast<int64_t>(msg.size()) == static_cast<int64_t>(t.nbytes()), "recv on group '", g_->name,
               "' from rank ", std::get<0>(key_), " tag ", std::get<2>(key_), ": expected ", t.nbytes(),
               " bytes but the matching send had ", msg.size());
    std::memcpy(t.raw(), msg.data(), msg.size());
  }
  Tensor t_;
};

// Completion of a synchronous send: the n-th send on a key waits for the n-th recv posted on it.
class SyncSendWork final : public PeerWork {
 public:
  SyncSendWork(std::shared_ptr<Group> g, MailKey key, int64_t ticket)
      : PeerWork(std::move(g), key, ticket, std::get<1>(key)) {}
  ~SyncSendWork() override { wait_quietly(); }

 private:
  bool ready() const override {
    auto it = g_->posted_recvs.find(key_);
    return it != g_->posted_recvs.end() && it->second > ticket_;
  }
  void finish() override {
    if (ready()) return;
    if (g_->u->aborted) throw Error(aborted_message(*g_->u));
    SGPT_FAIL("send on group '", g_->name, "' to rank ", std::get<1>(key_), " tag ", std::get<2>(key_),
              " can never complete: that rank returned without receiving");
  }
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<Group> g, int rank, const std::string& name)
      : Communicator(rank, g->size, name), g_(std::move(g)) {
    if (g_->name.empty()) g_->name = name;
    const char* sync = std::getenv("SGPT_SYNC_SEND");
    sync_send_ = sync && std::string(sync) != "0";
  }

  Backend backend() const override { return Backend::Threads; }

 protected:
  void check_tensor(const Tensor& t, const char* what) const override {
    Communicator::check_tensor(t, what);
    SGPT_CHECK(t.device() == Device::CPU, "group '", name(), "': ", what,
               " is on the GPU; the threads backend moves CPU tensors only");
  }

  std::vector<CallSignature> exchange_signatures(const CallSignature& mine) override {
    Post p;
    p.kind = -2;
    p.blob.resize(sizeof(CallSignature));
    std::memcpy(p.blob.data(), &mine, sizeof(CallSignature));
    std::vector<CallSignature> all;
    Work w = rendezvous(std::move(p), {}, [](Slot& s) { s.blobs.clear(); for (auto& q : s.posts) s.blobs.push_back(q.blob); },
                        [&all](Slot& s) {
                          for (const auto& b : s.blobs) {
                            CallSignature c;
                            std::memcpy(&c, b.data(), sizeof(CallSignature));
                            all.push_back(c);
                          }
                        });
    w.wait();
    return all;
  }

  Work start_barrier() override { return rendezvous(base_post(OpKind::Barrier, nullptr), {}, [](Slot&) {}); }

  Work start_broadcast(Tensor& t, int root) override {
    Post p = base_post(OpKind::Broadcast, &t);
    p.root = root;
    p.out = t.raw();
    std::size_t bytes = t.nbytes();
    return rendezvous(std::move(p), {t}, [bytes, root](Slot& s) {
      for (std::size_t r = 0; r < s.posts.size(); ++r)
        if (static_cast<int>(r) != root) std::memcpy(s.posts[r].out, s.posts[root].out, bytes);
    });
  }

  Work start_all_reduce(Tensor& t, ReduceOp op) override {
    Post p = base_post(OpKind::AllReduce, &t);
    p.op = static_cast<int>(op);
    p.out = t.raw();
    DType dt = t.dtype();
    int64_t n = t.numel();
    std::size_t bytes = t.nbytes();
    int size = this->size();
    return rendezvous(std::move(p), {t}, [=](Slot& s) {
      std::vector<char> acc(bytes);
      std::memcpy(acc.data(), s.posts[0].out, bytes);
      for (int r = 1; r < size; ++r) detail::host_accumulate(acc.data(), s.posts[r].out, dt, n);
      if (op == ReduceOp::Avg) detail::host_divide(acc.data(), dt, n, size);
      for (int r = 0; r < size; ++r) std::memcpy(s.posts[r].out, acc.data(), bytes);
    });
  }

  Work start_reduce_scatter(Tensor& out, const Tensor& in, ReduceOp op) override {
    Post p = base_post(OpKind::ReduceScatter, &in);
    p.op = static_cast<int>(op);
    p.in = in.raw();
    p.out = out.raw();
    DType dt = in.dtype();
    int64_t n = in.numel();
    std::size_t es = dtype_size(dt);
    int size = this->size();
    return rendezvous(std::move(p), {out, in}, [=](Slot& s) {
      std::vector<char> acc(n * es);
      if (n > 0) std::memcpy(acc.data(), s.posts[0].in, n * es);
      for (int r = 1; r < size; ++r) detail::host_accumulate(acc.data(), s.posts[r].in, dt, n);
      if (op == ReduceOp::Avg) detail::host_divide(acc.data(), dt, n, size);
      for (int r = 0; r < size; ++r) {
        ShardRange sh = shard_range(n, size, r);
        if (sh.count) std::memcpy(s.posts[r].out, acc.data() + sh.begin * es, sh.count * es);
      }
    });
  }

  Work start_all_gather(Tensor& out, const Tensor& in) override {
    Post p = base_post(OpKind::AllGather, &out);
    p.in = in.raw();
    p.out = out.raw();
    int64_t n = out.numel();
    std::size_t es = dtype_size(out.dtype());
    int size = this->size();
    return rendezvous(std::move(p), {out, in}, [=](Slot& s) {
      std::vector<char> full(n * es);
      for (int r = 0; r < size; ++r) {
        ShardRange sh = shard_range(n, size, r);
        if (sh.count) std::memcpy(full.data() + sh.begin * es, s.posts[r].in, sh.count * es);
      }
      for (int r = 0; r < size; ++r)
        if (n > 0) std::memcpy(s.posts[r].out, full.data(), n * es);
    });
  }

  Work start_send(const Tensor& t, int dst, int tag) override {
    std::lock_guard lk(g_->u->mu);
    if (g_->u->aborted) throw Error(aborted_message(*g_->u));
    MailKey key{rank(), dst, tag};
    const char* p = static_cast<const char*>(t.raw());
    const int64_t ticket = g_->sent[key]++;
    g_->mail[key][ticket] = std::vector<char>(p, p + t.nbytes());
    g_->u->cv.notify_all();
    if (sync_send_) return Work(std::make_shared<SyncSendWork>(g_, key, ticket));
    return Work();
  }

  Work start_recv(Tensor& t, int src, int tag) override {
    std::lock_guard lk(g_->u->mu);
    MailKey key{src, rank(), tag};
    int64_t ticket = g_->posted_recvs[key]++;
    g_->u->cv.notify_all();  // a synchronous send may be waiting for this recv
    return Work(std::make_shared<RecvWork>(g_, key, ticket, t));
  }

  std::shared_ptr<Communicator> do_split(int color, int key, const std::string& name) override {
    Post p;
    p.kind = static_cast<int>(OpKind::Split);
    p.color = color;
    p.key = key;
    p.name = name;
    std::shared_ptr<Communicator> mine;
    int me = rank();
    auto universe = g_->u;
    auto parent = g_;
    Work w = rendezvous(
        std::move(p), {},
        [universe, parent](Slot& s) {
          int n = static_cast<int>(s.posts.size());
          s.subs.assign(n, nullptr);
          std::map<int, std::vector<int>> members;  // color -> old ranks
          for (int r = 0; r < n; ++r)
            if (s.posts[r].color >= 0) members[s.posts[r].color].push_back(r);
          for (auto& [c, ranks] : members) {
            std::stable_sort(ranks.begin(), ranks.end(),
                             [&](int a, int b) { return s.posts[a].key < s.posts[b].key; });
            auto g = std::make_shared<Group>(universe, static_cast<int>(ranks.size()));
            for (int r : ranks) g->world_ranks.push_back(parent->world_ranks[r]);
            for (std::size_t i = 0; i < ranks.size(); ++i)
              s.subs[ranks[i]] = std::make_shared<ThreadCommunicator>(g, static_cast<int>(i), s.posts[ranks[i]].name);
          }
        },
        [&mine, me](Slot& s) { mine = s.subs[me]; });
    w.wait();
    return mine;
  }

 private:
  Post base_post(OpKind kind, const Tensor* t) {
    Post p;
    p.kind = static_cast<int>(kind);
    if (t) {
      p.dtype = t->dtype();
      p.count = t->numel();
    }
    return p;
  }

  // Posts this rank's part of the next rendezvous; the last rank to arrive checks and runs `exec`.
  Work rendezvous(Post p, std::vector<Tensor> keep, std::function<void(Slot&)> exec,
                  std::function<void(Slot&)> collect = {}) {
    std::lock_guard lk(g_->u->mu);
    if (g_->u->aborted) throw Error(aborted_message(*g_->u));
    int64_t seq = next_slot_++;
    Slot& s = g_->slots[seq];
    if (s.posts.empty()) {
      s.posts.resize(g_->size);
      s.posted.assign(g_->size, false);
      s.left = g_->size;
    }
    s.posts[rank()] = std::move(p);
    s.posted[rank()] = true;
    if (++s.arrived == g_->size) {
      std::string err = mismatch(s);
      if (err.empty()) {
        try {
          exec(s);
        } catch (const std::exception& e) {
          err = e.what();
        }
      }
      s.error = err;
      s.done = true;
      g_->u->cv.notify_all();
    }
    return Work(std::make_shared<SlotWork>(g_, seq, std::move(keep), std::move(collect)));
  }

  // The threads backend always checks that the posts of one slot describe the same call.
  std::string mismatch(const Slot& s) const {
    const Post& a = s.posts[0];
    for (const auto& b : s.posts) {
      if (b.kind != a.kind || b.dtype != a.dtype || b.count != a.count || b.root != a.root || b.op != a.op) {
        std::string msg = str("mismatched collective calls on group '", name(), "' of ", size(), " ranks:");
        for (std::size_t r = 0; r < s.posts.size(); ++r) {
          const Post& q = s.posts[r];
          msg += str(" rank ", r, ": ", q.kind >= 0 ? op_name(static_cast<OpKind>(q.kind)) : "call-check", " ",
                     dtype_name(q.dtype), " x ", q.count, ";");
        }
        return msg;
      }
    }
    return "";
  }

  std::shared_ptr<Group> g_;
  bool sync_send_ = false;  // SGPT_SYNC_SEND: sends wait for their matching recv
  int64_t next_slot_ = 0;
};

}  // namespace

namespace detail {
std::shared_ptr<Communicator> make_threads_single() {
  auto g = std::make_shared<Group>(std::make_shared<Universe>(), 1);
  g->world_ranks = {0};
  return std::make_shared<ThreadCommunicator>(g, 0, "world");
}
}  // namespace detail

void run_threads(int world, const std::function<void(Communicator&)>& fn) {
  SGPT_CHECK(world >= 1, "run_threads needs at least one rank, got ", world);
  auto u = std::make_shared<Universe>();
  auto g = std::make_shared<Group>(u, world);
  for (int r = 0; r < world; ++r) g->world_ranks.push_back(r);
  u->exited.assign(world, false);
  TraceRecorder& global = TraceRecorder::global();
  std::vector<std::unique_ptr<TraceRecorder>> recorders;
  std::vector<std::shared_ptr<Communicator>> comms;
  for (int r = 0; r < world; ++r) {
    recorders.push_back(std::make_unique<TraceRecorder>(r));
    recorders.back()->copy_origin(global);
    recorders.back()->set_enabled(global.enabled());
    comms.push_back(std::make_shared<ThreadCommunicator>(g, r, "world"));
  }
  std::vector<std::exception_ptr> errors(world);
  int first_failed = -1;
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      ScopedTraceRecorder scope(*recorders[r]);
      try {
        fn(*comms[r]);
      } catch (...) {
        errors[r] = std::current_exception();
        std::string what = "unknown exception";
        try {
          throw;
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        std::lock_guard lk(u->mu);
        if (!u->aborted) {
          u->aborted = true;
          u->reason = str("rank ", r, " threw: ", what);
          first_failed = r;
        }
        u->cv.notify_all();
      }
      std::lock_guard lk(u->mu);
      u->exited[r] = true;
      u->cv.notify_all();
    });
  }
  for (auto& t : threads) t.join();
  comms.clear();
  // The ranks' events go to the process-wide recorder, so one trace holds every rank.
  for (auto& rec : recorders) global.append(rec->events());
  if (first_failed >= 0) std::rethrow_exception(errors[first_failed]);
}

}  // namespace sgpt
