#include "core/trace.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/check.hpp"

namespace sgpt {

namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool trace_env_default() {
  const char* v = std::getenv("SGPT_TRACE");
  return v != nullptr && std::strcmp(v, "0") != 0 && std::strcmp(v, "") != 0;
}

thread_local TraceRecorder* t_current = nullptr;

nlohmann::json event_json(const TraceEvent& e) {
  nlohmann::json j;
  j["name"] = e.name;
  j["cat"] = trace_category_name(e.category);
  j["ph"] = "X";
  j["ts"] = e.start_us;
  j["dur"] = e.duration_us;
  j["pid"] = e.rank;
  j["tid"] = e.track;
  nlohmann::json args = nlohmann::json::object();
  for (const auto& [k, v] : e.args) args[k] = v;
  j["args"] = args;
  return j;
}

}  // namespace

const char* trace_category_name(TraceCategory c) {
  switch (c) {
    case TraceCategory::Compute: return "compute";
    case TraceCategory::Comm: return "comm";
    case TraceCategory::Idle: return "idle";
    case TraceCategory::Other: return "other";
  }
  return "other";
}

TraceCategory parse_trace_category(const std::string& name) {
  if (name == "compute") return TraceCategory::Compute;
  if (name == "comm") return TraceCategory::Comm;
  if (name == "idle") return TraceCategory::Idle;
  return TraceCategory::Other;
}

int64_t TraceEvent::arg_int(const std::string& key, int64_t fallback) const {
  auto it = args.find(key);
  if (it == args.end()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (const std::exception&) {
    SGPT_FAIL("trace event '", name, "': arg '", key, "' = '", it->second, "' is not an integer");
  }
}

// ---- TraceRecorder ------------------------------------------------------------------------------

TraceRecorder::TraceRecorder(int rank) : enabled_(trace_env_default()), rank_(rank), origin_ns_(steady_ns()) {}

TraceRecorder& TraceRecorder::global() {
  static TraceRecorder g;
  return g;
}

TraceRecorder& TraceRecorder::current() { return t_current ? *t_current : global(); }

void TraceRecorder::set_enabled(bool on) {
  std::lock_guard lock(mu_);
  enabled_ = on;
}

bool TraceRecorder::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

void TraceRecorder::set_rank(int rank) {
  std::lock_guard lock(mu_);
  rank_ = rank;
}

int TraceRecorder::rank() const {
  std::lock_guard lock(mu_);
  return rank_;
}

double TraceRecorder::now_us() const {
  int64_t origin;
  {
    std::lock_guard lock(mu_);
    origin = origin_ns_;
  }
  return static_cast<double>(steady_ns() - origin) * 1e-3;
}

void TraceRecorder::reset_origin() {
  std::lock_guard lock(mu_);
  origin_ns_ = steady_ns();
}

void TraceRecorder::record(TraceEvent e) {
  std::lock_guard lock(mu_);
  if (!enabled_) return;
  e.rank = rank_;
  events_.push_back(std::move(e));
}

void TraceRecorder::add(const std::string& name, TraceCategory category, double start_us, double duration_us,
                        std::map<std::string, std::string> args, int track) {
  TraceEvent e;
  e.name = name;
  e.category = category;
  e.start_us = start_us;
  e.duration_us = duration_us;
  e.track = track;
  e.args = std::move(args);
  record(std::move(e));
}

std::vector<TraceEvent> TraceRecorder::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::vector<TraceEvent> TraceRecorder::events_named(const std::string& name) const {
  std::lock_guard lock(mu_);
  std::vector<TraceEvent> out;
  for (const auto& e : events_)
    if (e.name == name) out.push_back(e);
  return out;
}

void TraceRecorder::clear() {
  std::lock_guard lock(mu_);
  events_.clear();
}

void TraceRecorder::append(const std::vector<TraceEvent>& events) {
  std::lock_guard lock(mu_);
  events_.insert(events_.end(), events.begin(), events.end());
}

void TraceRecorder::copy_origin(const TraceRecorder& other) {
  int64_t o;
  {
    std::lock_guard lock(other.mu_);
    o = other.origin_ns_;
  }
  std::lock_guard lock(mu_);
  origin_ns_ = o;
}

std::string TraceRecorder::to_json() const { return trace_to_json(events()); }

void TraceRecorder::write_json(const std::string& path) const {
  std::ofstream f(path);
  SGPT_CHECK(f.good(), "cannot open trace file '", path, "' for writing");
  f << to_json();
  SGPT_CHECK(f.good(), "failed writing trace file '", path, "'");
}

// ---- scopes -------------------------------------------------------------------------------------

ScopedTraceRecorder::ScopedTraceRecorder(TraceRecorder& r) : previous_(t_current) { t_current = &r; }
ScopedTraceRecorder::~ScopedTraceRecorder() { t_current = previous_; }

TraceScope::TraceScope(std::string name, TraceCategory category, std::map<std::string, std::string> args)
    : recorder_(TraceRecorder::current()),
      name_(std::move(name)),
      category_(category),
      args_(std::move(args)),
      start_us_(recorder_.now_us()) {}

TraceScope::~TraceScope() {
  if (!recorder_.enabled()) return;
  double end = recorder_.now_us();
  recorder_.add(name_, category_, start_us_, end - start_us_, std::move(args_));
}

// ---- JSON ---------------------------------------------------------------------------------------

std::string trace_to_json(const std::vector<TraceEvent>& events) {
  nlohmann::json list = nlohmann::json::array();
  std::set<int> ranks;
  for (const auto& e : events) ranks.insert(e.rank);
  // Metadata first, so viewers label each process "rank r" and keep them in rank order.
  for (int r : ranks) {
    list.push_back({{"name", "process_name"}, {"ph", "M"}, {"pid", r}, {"tid", 0},
                    {"args", {{"name", str("rank ", r)}}}});
    list.push_back({{"name", "process_sort_index"}, {"ph", "M"}, {"pid", r}, {"tid", 0},
                    {"args", {{"sort_index", r}}}});
  }
  for (const auto& e : events) list.push_back(event_json(e));
  nlohmann::json root;
  root["traceEvents"] = std::move(list);
  root["displayTimeUnit"] = "ms";
  return root.dump();
}

std::vector<TraceEvent> trace_from_json(const std::string& text) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text);
  } catch (const std::exception& ex) {
    SGPT_FAIL("trace JSON does not parse: ", ex.what());
  }
  const nlohmann::json& list = root.is_array() ? root : root.at("traceEvents");
  std::vector<TraceEvent> out;
  for (const auto& j : list) {
    if (j.value("ph", "") != "X") continue;
    TraceEvent e;
    e.name = j.value("name", "");
    e.category = parse_trace_category(j.value("cat", "other"));
    e.start_us = j.value("ts", 0.0);
    e.duration_us = j.value("dur", 0.0);
    e.rank = j.value("pid", 0);
    e.track = j.value("tid", 0);
    if (j.contains("args") && j["args"].is_object()) {
      for (const auto& [k, v] : j["args"].items()) e.args[k] = v.is_string() ? v.get<std::string>() : v.dump();
    }
    out.push_back(std::move(e));
  }
  return out;
}

void merge_trace_files(const std::vector<std::string>& inputs, const std::string& output) {
  std::vector<TraceEvent> all;
  for (const auto& path : inputs) {
    std::ifstream f(path);
    SGPT_CHECK(f.good(), "cannot open trace file '", path, "'");
    std::stringstream ss;
    ss << f.rdbuf();
    auto events = trace_from_json(ss.str());
    all.insert(all.end(), events.begin(), events.end());
  }
  std::ofstream f(output);
  SGPT_CHECK(f.good(), "cannot open trace file '", output, "' for writing");
  f << trace_to_json(all);
}

// ---- across ranks -------------------------------------------------------------------------------

}  // namespace sgpt
