#include "model/pipeline_schedule.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "core/check.hpp"

namespace sgpt {

std::string pipe_ops_string(const std::vector<PipeOp>& ops) {
  std::string s;
  for (const PipeOp& o : ops) {
    if (!s.empty()) s += ' ';
    s += (o.kind == PipeOp::Forward ? 'F' : 'B') + std::to_string(o.microbatch);
  }
  return s;
}

std::vector<PipeOp> parse_pipe_ops(const std::string& text) {
  std::istringstream in(text);
  std::vector<PipeOp> ops;
  for (std::string tok; in >> tok;) {
    SGPT_CHECK(tok.size() >= 2 && (tok[0] == 'F' || tok[0] == 'B') &&
                   tok.find_first_not_of("0123456789", 1) == std::string::npos,
               "parse_pipe_ops: '", tok, "' is not F<micro-batch> or B<micro-batch>");
    ops.push_back({tok[0] == 'F' ? PipeOp::Forward : PipeOp::Backward, std::stoi(tok.substr(1))});
  }
  return ops;
}

std::vector<PipeOp> pipe_ops_from_trace(const std::vector<TraceEvent>& events, int rank) {
  std::vector<PipeOp> ops;
  for (const TraceEvent& e : events) {
    if (e.rank != rank || (e.name != "forward" && e.name != "backward")) continue;
    ops.push_back({e.name == "forward" ? PipeOp::Forward : PipeOp::Backward, static_cast<int>(e.arg_int("microbatch"))});
  }
  return ops;
}

double PipelineTimeline::bubble() const {
  if (ranks.empty() || makespan <= 0) return 0.0;
  double b = 0;
  for (double x : busy) b += x;
  return 1.0 - b / (double(ranks.size()) * makespan);
}

PipelineTimeline simulate_pipeline(const std::vector<std::vector<PipeOp>>& ops, double t_forward, double t_backward) {
  const int p = static_cast<int>(ops.size());
  SGPT_CHECK(p >= 1, "simulate_pipeline: no ranks");
  SGPT_CHECK(t_forward > 0 && t_backward > 0, "simulate_pipeline: costs must be positive");
  const int m = static_cast<int>(ops[0].size() / 2);
  for (int r = 0; r < p; ++r) {
    SGPT_CHECK(ops[r].size() == 2 * size_t(m), "simulate_pipeline: rank ", r, " lists ", ops[r].size(),
               " operations, rank 0 lists ", ops[0].size(), " (every rank runs F and B of the same micro-batches)");
    std::set<std::pair<int, int>> seen;
    for (const PipeOp& o : ops[r]) {
      SGPT_CHECK(o.microbatch >= 0 && o.microbatch < m, "simulate_pipeline: rank ", r, " runs micro-batch ",
                 o.microbatch, " outside [0, ", m, ")");
      SGPT_CHECK(seen.insert({o.kind, o.microbatch}).second, "simulate_pipeline: rank ", r, " runs ",
                 pipe_ops_string({o}), " twice");
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  // end time of F(i) / B(i) on each rank (inf = not done yet)
  std::vector<std::vector<double>> fend(p, std::vector<double>(m, inf)), bend(p, std::vector<double>(m, inf));
  std::vector<size_t> next(p, 0);
  std::vector<double> clock(p, 0.0);
  PipelineTimeline t;
  t.ranks.assign(p, {});
  t.busy.assign(p, 0.0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < p; ++r) {
      while (next[r] < ops[r].size()) {
        const PipeOp o = ops[r][next[r]];
        double ready;
        if (o.kind == PipeOp::Forward)
          ready = r == 0 ? 0.0 : fend[r - 1][o.microbatch];
        else
          ready = std::max(fend[r][o.microbatch], r == p - 1 ? 0.0 : bend[r + 1][o.microbatch]);
        if (ready == inf) break;  // waits for another rank (or for itself: caught below)
        const double start = std::max(clock[r], ready), cost = o.kind == PipeOp::Forward ? t_forward : t_backward;
        clock[r] = start + cost;
        (o.kind == PipeOp::Forward ? fend : bend)[r][o.microbatch] = clock[r];
        t.ranks[r].push_back({o, start, clock[r]});
        t.busy[r] += cost;
        ++next[r];
        progress = true;
      }
    }
  }
  std::string stuck;
  for (int r = 0; r < p; ++r)
    if (next[r] < ops[r].size()) stuck += " rank " + std::to_string(r) + " at " + pipe_ops_string({ops[r][next[r]]}) + ";";
  SGPT_CHECK(stuck.empty(), "simulate_pipeline: the schedule deadlocks (each listed rank waits for an operation "
             "that never runs):", stuck);
  for (double c : clock) t.makespan = std::max(t.makespan, c);
  return t;
}

PipelineTimeline timeline_from_trace(const std::vector<TraceEvent>& events, int p) {
  PipelineTimeline t;
  t.ranks.assign(p, {});
  t.busy.assign(p, 0.0);
  double t0 = std::numeric_limits<double>::infinity(), t1 = 0;
  for (const TraceEvent& e : events)
    if ((e.name == "forward" || e.name == "backward") && e.rank >= 0 && e.rank < p) t0 = std::min(t0, e.start_us);
  for (const TraceEvent& e : events) {
    if ((e.name != "forward" && e.name != "backward") || e.rank < 0 || e.rank >= p) continue;
    PipeOp o{e.name == "forward" ? PipeOp::Forward : PipeOp::Backward, static_cast<int>(e.arg_int("microbatch"))};
    t.ranks[e.rank].push_back({o, e.start_us - t0, e.start_us - t0 + e.duration_us});
    t.busy[e.rank] += e.duration_us;
    t1 = std::max(t1, e.start_us - t0 + e.duration_us);
  }
  t.makespan = t1;
  return t;
}

std::string pipeline_timeline_svg(const PipelineTimeline& t, const std::string& title, const std::string& time_unit) {
  const int p = static_cast<int>(t.ranks.size());
  const double left = 70, right = 20, top = 40, row = 34, bar = 24, width = 900;
  const double height = top + p * row + 50, span = t.makespan > 0 ? t.makespan : 1.0;
  const double sx = (width - left - right) / span;
  std::ostringstream s;
  char buf[1024];
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
  for (int r = 0; r < p; ++r) {
    const double y = top + r * row;
    std::snprintf(buf, sizeof buf, "<text x=\"%g\" y=\"%g\" text-anchor=\"end\">rank %d</text>\n", left - 8,
                  y + bar * 0.7, r);
    s << buf;
    std::snprintf(buf, sizeof buf, "<rect x=\"%g\" y=\"%g\" width=\"%g\" height=\"%g\" fill=\"#f3f3f3\"/>\n", left, y,
                  span * sx, bar);
    s << buf;
    for (const PipeSpan& sp : t.ranks[r]) {
      const bool f = sp.op.kind == PipeOp::Forward;
      const double x = left + sp.start * sx, w = std::max(1.0, (sp.end - sp.start) * sx);
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.2f\" y=\"%g\" width=\"%.2f\" height=\"%g\" fill=\"%s\" stroke=\"white\"/>\n", x, y, w,
                    bar, f ? "#4e79a7" : "#f28e2b");
      s << buf;
      if (w >= 14) {
        std::snprintf(buf, sizeof buf, "<text x=\"%.2f\" y=\"%g\" text-anchor=\"middle\" fill=\"white\">%s</text>\n",
                      x + w / 2, y + bar * 0.7, pipe_ops_string({sp.op}).c_str());
        s << buf;
      }
    }
  }
  const double ly = top + p * row + 20;
  std::snprintf(buf, sizeof buf,
                "<rect x=\"%g\" y=\"%g\" width=\"14\" height=\"14\" fill=\"#4e79a7\"/><text x=\"%g\" y=\"%g\">forward"
                "</text><rect x=\"%g\" y=\"%g\" width=\"14\" height=\"14\" fill=\"#f28e2b\"/><text x=\"%g\" y=\"%g\">"
                "backward</text><text x=\"%g\" y=\"%g\">grey: idle (bubble %.1f%%), makespan %.4g ",
                left, ly, left + 20, ly + 12, left + 100, ly, left + 120, ly + 12, left + 220, ly + 12,
                100.0 * t.bubble(), t.makespan);
  s << buf << time_unit << "</text>\n";
  s << "</svg>\n";
  return s.str();
}

}  // namespace sgpt
