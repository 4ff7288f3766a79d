#include "core/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>
#include <utility>

namespace sgpt {

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}
// About five "nice" tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
std::vector<double> ticks(double lo, double hi) {
  double span = hi - lo, raw = span / 5, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0 : v);
  return t;
}
}  // namespace

std::string line_chart_svg(const std::string& title, const std::string& x_label, const std::string& y_label,
                           const std::vector<PlotSeries>& series, int W, int H) {
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
      y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.05 * (y1 - y0);
  y0 -= pad, y1 += pad;
  const double L = 70, R = 20, T = 40, B = 55, pw = W - L - R, ph = H - T - B;
  auto X = [&](double x) { return L + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return T + (1 - (y - y0) / (y1 - y0)) * ph; };
  std::string o = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(W) + "\" height=\"" +
                  std::to_string(H) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + num(W / 2.0) + "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" + esc(title) + "</text>\n";
  for (double t : ticks(x0, x1))
    o += "<line x1=\"" + num(X(t)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(X(t)) + "\" y2=\"" + num(T + ph) +
         "\" stroke=\"#eee\"/><text x=\"" + num(X(t)) + "\" y=\"" + num(T + ph + 16) + "\" text-anchor=\"middle\">" +
         num(t) + "</text>\n";
  for (double t : ticks(y0, y1))
    o += "<line x1=\"" + num(L) + "\" y1=\"" + num(Y(t)) + "\" x2=\"" + num(L + pw) + "\" y2=\"" + num(Y(t)) +
         "\" stroke=\"#eee\"/><text x=\"" + num(L - 6) + "\" y=\"" + num(Y(t) + 4) + "\" text-anchor=\"end\">" +
         num(t) + "</text>\n";
  o += "<rect x=\"" + num(L) + "\" y=\"" + num(T) + "\" width=\"" + num(pw) + "\" height=\"" + num(ph) +
       "\" fill=\"none\" stroke=\"#333\"/>\n";
  o += "<text x=\"" + num(L + pw / 2) + "\" y=\"" + num(H - 12.0) + "\" text-anchor=\"middle\">" + esc(x_label) +
       "</text>\n";
  o += "<text transform=\"translate(16," + num(T + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + esc(y_label) +
       "</text>\n";
  double ly = T + 14;
  for (const auto& s : series) {
    std::string pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
      if (std::isfinite(s.y[i])) pts += num(X(s.x[i])) + "," + num(Y(s.y[i])) + " ";
    o += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"1.8\" points=\"" + pts + "\"/>\n";
    if (s.markers)
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
        if (std::isfinite(s.y[i]))
          o += "<circle cx=\"" + num(X(s.x[i])) + "\" cy=\"" + num(Y(s.y[i])) + "\" r=\"3\" fill=\"" + s.color + "\"/>\n";
    o += "<line x1=\"" + num(L + pw - 150) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(L + pw - 125) + "\" y2=\"" +
         num(ly) + "\" stroke=\"" + s.color + "\" stroke-width=\"3\"/><text x=\"" + num(L + pw - 118) + "\" y=\"" +
         num(ly + 4) + "\">" + esc(s.label) + "</text>\n";
    ly += 18;
  }
  return o + "</svg>\n";
}

std::string timeline_svg(const std::string& title, const std::vector<TraceEvent>& events, int width) {
  // Lanes in (rank, track) order; times relative to the earliest event.
  std::map<std::pair<int, int>, int> lanes;
  double t0 = std::numeric_limits<double>::infinity(), t1 = 0;
  for (const TraceEvent& e : events) {
    lanes[{e.rank, e.track}] = 0;
    t0 = std::min(t0, e.start_us);
    t1 = std::max(t1, e.start_us + e.duration_us);
  }
  int n = 0;
  for (auto& [key, index] : lanes) index = n++;
  if (events.empty()) t0 = 0, t1 = 1;
  const double left = 120, right = 20, top = 40, lane_h = 26, span = std::max(t1 - t0, 1e-9);
  const double plot_w = width - left - right;
  const int height = int(top + lane_h * n + 50);
  auto x_of = [&](double us) { return left + (us - t0) / span * plot_w; };
  auto colour = [](TraceCategory c) {
    switch (c) {
      case TraceCategory::Compute: return "#1f77b4";
      case TraceCategory::Comm: return "#ff7f0e";
      case TraceCategory::Idle: return "#bbbbbb";
      default: return "#2ca02c";
    }
  };
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << title << "</text>\n";
  for (const auto& [key, index] : lanes) {
    const double y = top + lane_h * index;
    o << "<text x=\"" << left - 8 << "\" y=\"" << y + lane_h * 0.65 << "\" text-anchor=\"end\">rank " << key.first
      << (key.second == 0 ? " main" : " comm") << "</text>\n"
      << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << y + lane_h << "\" y2=\"" << y + lane_h
      << "\" stroke=\"#eeeeee\"/>\n";
  }
  for (const TraceEvent& e : events) {
    const double y = top + lane_h * lanes[{e.rank, e.track}] + 3;
    const double x = x_of(e.start_us), w = std::max(1.0, x_of(e.start_us + e.duration_us) - x);
    o << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << lane_h - 6 << "\" fill=\""
      << colour(e.category) << "\" fill-opacity=\"0.8\" stroke=\"white\" stroke-width=\"0.5\"><title>" << e.name
      << " " << e.duration_us / 1e3 << " ms</title></rect>\n";
  }
  // Time axis: about 8 ticks at a round step.
  const double ms = span / 1e3, raw = ms / 8, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
  const double axis_y = top + lane_h * n + 4;
  o << "<line x1=\"" << left << "\" x2=\"" << width - right << "\" y1=\"" << axis_y << "\" y2=\"" << axis_y
    << "\" stroke=\"black\"/>\n";
  for (double t = 0; t <= ms + 1e-12; t += step) {
    const double x = x_of(t0 + t * 1e3);
    o << "<line x1=\"" << x << "\" x2=\"" << x << "\" y1=\"" << axis_y << "\" y2=\"" << axis_y + 5
      << "\" stroke=\"black\"/><text x=\"" << x << "\" y=\"" << axis_y + 18 << "\" text-anchor=\"middle\">" << t
      << "</text>\n";
  }
  o << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << height - 6
    << "\" text-anchor=\"middle\">time (ms); blue compute, orange communication</text>\n</svg>\n";
  return o.str();
}

}  // namespace sgpt
