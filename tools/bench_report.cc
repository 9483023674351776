#include "tools/bench_report.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "tools/bench_plot.h"

namespace sluice::tools {

// ---------------------------------------------------------------- entries

LatencySummary LatencySummary::FromNanos(const Histogram& nanos) {
  LatencySummary s;
  s.samples = nanos.count();
  s.p50_us = static_cast<double>(nanos.p50()) / 1e3;
  s.p90_us = static_cast<double>(nanos.p90()) / 1e3;
  s.p99_us = static_cast<double>(nanos.p99()) / 1e3;
  s.p999_us = static_cast<double>(nanos.p999()) / 1e3;
  s.max_us = static_cast<double>(nanos.max()) / 1e3;
  return s;
}

void BenchEntry::SetLatency(const Histogram& nanos) {
  latency = LatencySummary::FromNanos(nanos);
  latency_nanos = std::make_shared<const Histogram>(nanos);
}

std::vector<std::string> BenchReport::Groups() const {
  std::vector<std::string> groups;
  for (const auto* list : {&baselines, &results}) {
    for (const BenchEntry& e : *list) {
      if (std::find(groups.begin(), groups.end(), e.group) == groups.end()) {
        groups.push_back(e.group);
      }
    }
  }
  return groups;
}

const BenchEntry* BenchReport::ReferenceFor(const BenchEntry& result) const {
  for (const BenchEntry& b : baselines) {
    if (b.group == result.group) return &b;
  }
  return nullptr;
}

namespace {

const BenchEntry* FindIn(const std::vector<BenchEntry>& entries, const std::string& group,
                         const std::string& name) {
  for (const BenchEntry& e : entries) {
    if (e.group == group && e.name == name) return &e;
  }
  return nullptr;
}

}  // namespace

const BenchEntry* BenchReport::FindBaseline(const std::string& group,
                                            const std::string& name) const {
  return FindIn(baselines, group, name);
}

const BenchEntry* BenchReport::FindResult(const std::string& group, const std::string& name) const {
  return FindIn(results, group, name);
}

// ---------------------------------------------------------------- the table

namespace {

std::string Ratio(double value, double reference) {
  return value > 0 && reference > 0 ? absl::StrFormat("%.2fx", value / reference)
                                    : std::string("-");
}

// In the first unit both entries have: ops/s, records/ms, GB/s.
std::string ThroughputRatio(const BenchEntry& e, const BenchEntry& ref) {
  if (e.ops_per_s > 0 && ref.ops_per_s > 0) return Ratio(e.ops_per_s, ref.ops_per_s);
  if (e.records_per_ms > 0 && ref.records_per_ms > 0) {
    return Ratio(e.records_per_ms, ref.records_per_ms);
  }
  return Ratio(e.gbytes_per_s, ref.gbytes_per_s);
}

std::string Micros(double us) {
  if (us <= 0) return "-";
  return us < 100 ? absl::StrFormat("%.1f", us) : absl::StrFormat("%.0f", us);
}

}  // namespace

std::string RenderSummary(const BenchReport& report) {
  bool any_records = false;
  bool any_gbytes = false;
  bool any_ops = false;
  bool any_latency = false;
  for (const auto* list : {&report.baselines, &report.results}) {
    for (const BenchEntry& e : *list) {
      any_records |= e.records_per_ms > 0;
      any_gbytes |= e.gbytes_per_s > 0;
      any_ops |= e.ops_per_s > 0;
      any_latency |= e.latency.has_value();
    }
  }
  const bool any_throughput = any_records || any_gbytes || any_ops;
  std::vector<std::string> header = {"name", ""};
  if (any_records) header.push_back("records/ms");
  if (any_gbytes) header.push_back("GB/s");
  if (any_ops) header.push_back("ops/s");
  if (any_throughput) header.push_back("vs base");
  if (any_latency) {
    header.insert(header.end(),
                  {"p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "p50 vs", "p99 vs"});
  }
  std::string out;
  for (const std::string& group : report.Groups()) {
    Table table(header);
    const BenchEntry* reference = nullptr;
    auto add = [&](const BenchEntry& e, bool baseline) {
      std::vector<std::string> cells = {e.name, baseline ? "baseline" : ""};
      const BenchEntry* ref = baseline ? (&e == reference ? nullptr : reference) : reference;
      if (any_throughput) {
        if (any_records) {
          cells.push_back(e.records_per_ms > 0 ? absl::StrFormat("%.0f", e.records_per_ms) : "-");
        }
        if (any_gbytes) {
          cells.push_back(e.gbytes_per_s > 0 ? absl::StrFormat("%.3f", e.gbytes_per_s) : "-");
        }
        if (any_ops) cells.push_back(e.ops_per_s > 0 ? absl::StrFormat("%.0f", e.ops_per_s) : "-");
        cells.push_back(ref == nullptr ? "-" : ThroughputRatio(e, *ref));
      }
      if (any_latency) {
        const LatencySummary l = e.latency.value_or(LatencySummary{});
        for (double v : {l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us}) {
          cells.push_back(Micros(v));
        }
        const bool compare = ref != nullptr && ref->latency.has_value() && e.latency.has_value();
        cells.push_back(compare ? Ratio(l.p50_us, ref->latency->p50_us) : "-");
        cells.push_back(compare ? Ratio(l.p99_us, ref->latency->p99_us) : "-");
      }
      table.AddRow(std::move(cells));
    };
    for (const BenchEntry& b : report.baselines) {
      if (b.group != group) continue;
      if (reference == nullptr) reference = &b;
      add(b, true);
    }
    std::string kind;
    for (const BenchEntry& r : report.results) {
      if (r.group != group) continue;
      add(r, false);
      if (kind.empty()) kind = r.latency_kind;
    }
    if (kind.empty() && reference != nullptr) kind = reference->latency_kind;
    absl::StrAppend(
        &out, out.empty() ? "" : "\n", group, kind.empty() ? "" : " (latency: ", kind,
        kind.empty() ? "" : ")",
        reference != nullptr ? absl::StrCat("; ratios against ", reference->name) : std::string(),
        "\n", table.Render());
  }
  for (const auto& [name, error] : report.failures) {
    absl::StrAppend(&out, "\nFAILED ", name, ": ", error, "\n");
  }
  return out;
}

std::string RenderTargets(const BenchReport& report) {
  if (report.targets.empty()) return "";
  std::string out = "Targets:\n";
  for (const BenchTarget& t : report.targets) {
    absl::StrAppendFormat(&out, "  %-60s %8.2f  (goal %s %.2f)  %s\n", t.what, t.value,
                          t.at_most ? "<=" : ">=", t.limit, t.met() ? "met" : "NOT met");
  }
  return out;
}

// ---------------------------------------------------------------- JSON

namespace {

std::string Number(double v) { return absl::StrFormat("%.6g", v); }

std::string EntryJson(const BenchEntry& e, const BenchReport& report, bool baseline) {
  std::vector<std::string> m = {absl::StrCat("\"name\": ", JsonString(e.name)),
                                absl::StrCat("\"group\": ", JsonString(e.group))};
  if (e.records_per_ms > 0)
    m.push_back(absl::StrCat("\"records_per_ms\": ", Number(e.records_per_ms)));
  if (e.gbytes_per_s > 0) m.push_back(absl::StrCat("\"gbytes_per_s\": ", Number(e.gbytes_per_s)));
  if (e.ops_per_s > 0) m.push_back(absl::StrCat("\"ops_per_s\": ", Number(e.ops_per_s)));
  if (e.latency.has_value()) {
    const LatencySummary& l = *e.latency;
    m.push_back(absl::StrCat("\"latency\": ", JsonString(e.latency_kind)));
    m.push_back(absl::StrCat("\"p50_us\": ", Number(l.p50_us)));
    m.push_back(absl::StrCat("\"p90_us\": ", Number(l.p90_us)));
    m.push_back(absl::StrCat("\"p99_us\": ", Number(l.p99_us)));
    m.push_back(absl::StrCat("\"p999_us\": ", Number(l.p999_us)));
    m.push_back(absl::StrCat("\"max_us\": ", Number(l.max_us)));
    m.push_back(absl::StrCat("\"samples\": ", l.samples));
  }
  if (!baseline) {
    // The ratios to every baseline of the group.
    std::vector<std::string> vs;
    for (const BenchEntry& b : report.baselines) {
      if (b.group != e.group) continue;
      std::vector<std::string> r;
      if (e.records_per_ms > 0 && b.records_per_ms > 0) {
        r.push_back(
            absl::StrCat("\"records_per_ms\": ", Number(e.records_per_ms / b.records_per_ms)));
      }
      if (e.gbytes_per_s > 0 && b.gbytes_per_s > 0) {
        r.push_back(absl::StrCat("\"gbytes_per_s\": ", Number(e.gbytes_per_s / b.gbytes_per_s)));
      }
      if (e.ops_per_s > 0 && b.ops_per_s > 0) {
        r.push_back(absl::StrCat("\"ops_per_s\": ", Number(e.ops_per_s / b.ops_per_s)));
      }
      if (e.latency.has_value() && b.latency.has_value() && b.latency->p50_us > 0 &&
          b.latency->p99_us > 0) {
        r.push_back(absl::StrCat("\"p50\": ", Number(e.latency->p50_us / b.latency->p50_us)));
        r.push_back(absl::StrCat("\"p99\": ", Number(e.latency->p99_us / b.latency->p99_us)));
      }
      if (!r.empty()) {
        vs.push_back(absl::StrCat(JsonString(b.name), ": {", absl::StrJoin(r, ", "), "}"));
      }
    }
    if (!vs.empty()) m.push_back(absl::StrCat("\"vs\": {", absl::StrJoin(vs, ", "), "}"));
  }
  for (const auto& [key, value] : e.extra) m.push_back(absl::StrCat(JsonString(key), ": ", value));
  return absl::StrCat("{", absl::StrJoin(m, ", "), "}");
}

}  // namespace

std::string ReportJson(const BenchReport& report) {
  std::vector<std::string> config;
  for (const auto& [key, value] : report.config) {
    config.push_back(absl::StrCat(JsonString(key), ": ", value));
  }
  std::vector<std::string> results;
  for (const BenchEntry& e : report.results) results.push_back(EntryJson(e, report, false));
  std::vector<std::string> baselines;
  for (const BenchEntry& e : report.baselines) baselines.push_back(EntryJson(e, report, true));
  std::vector<std::string> targets;
  for (const BenchTarget& t : report.targets) {
    targets.push_back(absl::StrFormat("{\"what\": %s, \"value\": %s, \"%s\": %s, \"met\": %s}",
                                      JsonString(t.what), Number(t.value),
                                      t.at_most ? "at_most" : "at_least", Number(t.limit),
                                      t.met() ? "true" : "false"));
  }
  std::vector<std::string> failures;
  for (const auto& [name, error] : report.failures) {
    failures.push_back(
        absl::StrCat("{\"name\": ", JsonString(name), ", \"error\": ", JsonString(error), "}"));
  }
  auto list = [](const std::vector<std::string>& items) {
    return items.empty() ? std::string("[]")
                         : absl::StrCat("[\n    ", absl::StrJoin(items, ",\n    "), "\n  ]");
  };
  std::string sections;
  for (const auto& [key, json] : report.sections) {
    absl::StrAppend(&sections, ",\n  ", JsonString(key), ": ", json);
  }
  return absl::StrCat("{\n  \"benchmark\": ", JsonString(report.benchmark), ",\n  \"config\": {",
                      absl::StrJoin(config, ", "), "},\n  \"host\": {", HostJsonFields(report.host),
                      "},\n  \"results\": ", list(results), ",\n  \"baselines\": ", list(baselines),
                      ",\n  \"targets\": ", list(targets), ",\n  \"failures\": ", list(failures),
                      sections, "\n}\n");
}

// ---------------------------------------------------------------- progress

struct ProgressBar::State {
  Mutex mu;
  int total = 0;
  int step ABSL_GUARDED_BY(mu) = 0;
  std::string label ABSL_GUARDED_BY(mu);
  double planned = 0;
  absl::Time started ABSL_GUARDED_BY(mu);
  bool done ABSL_GUARDED_BY(mu) = false;
  std::thread drawer;

  void Draw() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (step == 0) return;
    constexpr int kWidth = 30;
    const double elapsed = absl::ToDoubleSeconds(absl::Now() - started);
    const double fraction = planned > 0 ? std::min(1.0, elapsed / planned) : 0;
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string bar = std::string(filled, '=') + std::string(kWidth - filled, ' ');
    std::string line = absl::StrFormat("[%d/%d] %-32s [%s] %5.1fs", step, total,
                                       label.substr(0, 32), bar, elapsed);
    std::fprintf(stderr, "\r%s\033[K", line.c_str());
    std::fflush(stderr);
  }
};

ProgressBar::ProgressBar(int total_steps) {
  if (isatty(STDERR_FILENO) == 0) return;
  state_ = std::make_unique<State>();
  state_->total = total_steps;
  State* s = state_.get();
  s->drawer = std::thread([s] {
    MutexLock lock(&s->mu);
    while (!s->done) {
      s->Draw();
      s->mu.AwaitWithTimeout([s]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return s->done; },
                             absl::Milliseconds(200));
    }
  });
}

ProgressBar::~ProgressBar() {
  if (state_ == nullptr) return;
  {
    MutexLock lock(&state_->mu);
    state_->done = true;
  }
  state_->drawer.join();
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void ProgressBar::Step(const std::string& label, double planned_seconds) {
  if (state_ == nullptr) return;
  MutexLock lock(&state_->mu);
  ++state_->step;
  state_->label = label;
  state_->planned = planned_seconds;
  state_->started = absl::Now();
  state_->Draw();
}

// ---------------------------------------------------------------- the harness

BenchEntry CombineRuns(std::vector<BenchEntry> runs) {
  if (runs.size() == 1) return std::move(runs[0]);
  // The median run by throughput (the whole entry, so that its figures belong together).
  std::vector<size_t> order(runs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&runs](size_t a, size_t b) {
    // A row measures in the same units every run, so the sum orders them by any of them.
    return runs[a].records_per_ms + runs[a].gbytes_per_s + runs[a].ops_per_s <
           runs[b].records_per_ms + runs[b].gbytes_per_s + runs[b].ops_per_s;
  });
  BenchEntry out = runs[order[order.size() / 2]];
  const bool all_histograms = std::all_of(
      runs.begin(), runs.end(), [](const BenchEntry& e) { return e.latency_nanos != nullptr; });
  if (all_histograms) {
    Histogram merged;
    for (const BenchEntry& e : runs) merged.Merge(*e.latency_nanos);
    out.SetLatency(merged);
  } else if (out.latency.has_value()) {
    // Each percentile's median over the runs that have one.
    std::vector<LatencySummary> l;
    for (const BenchEntry& e : runs) {
      if (e.latency.has_value()) l.push_back(*e.latency);
    }
    auto median = [&l](double LatencySummary::*field) {
      std::vector<double> v;
      for (const LatencySummary& s : l) v.push_back(s.*field);
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    LatencySummary m;
    for (const LatencySummary& s : l) m.samples += s.samples;
    m.p50_us = median(&LatencySummary::p50_us);
    m.p90_us = median(&LatencySummary::p90_us);
    m.p99_us = median(&LatencySummary::p99_us);
    m.p999_us = median(&LatencySummary::p999_us);
    m.max_us = median(&LatencySummary::max_us);
    out.latency = m;
  }
  out.extra.emplace_back("runs", absl::StrCat(runs.size()));
  return out;
}

BenchHarness::BenchHarness(std::string benchmark) : benchmark_(std::move(benchmark)) {}

void BenchHarness::AddOptions(OptionParser& parser) {
  parser.AddCount("--runs", "N",
                  "Measure every row N times, in rounds; report the median run's throughput and "
                  "the latencies of all runs together",
                  1, 100, &runs_);
  parser.AddString("--json", "FILE", "Also write the results as JSON here", &json_path_);
  parser.AddString("--plot", "DIR",
                   "Also draw SVG charts (latency percentiles, throughput) into DIR, with an "
                   "HTML page showing them",
                   &plot_dir_);
}

void BenchHarness::Add(BenchRow row) { rows_.push_back(std::move(row)); }

BenchReport BenchHarness::Run() {
  BenchReport report;
  report.benchmark = benchmark_;
  report.host = DescribeHost();
  std::vector<std::vector<BenchEntry>> runs(rows_.size());
  std::vector<absl::Status> failed(rows_.size());
  {
    ProgressBar progress(static_cast<int>(rows_.size() * runs_));
    for (uint64_t round = 0; round < runs_; ++round) {
      for (size_t i = 0; i < rows_.size(); ++i) {
        BenchRow& row = rows_[i];
        const std::string label =
            runs_ > 1 ? absl::StrFormat("%s %s (run %d)", row.name, row.group, round + 1)
                      : absl::StrCat(row.name, " ", row.group);
        progress.Step(label, row.planned_seconds);
        if (!failed[i].ok()) continue;
        absl::StatusOr<BenchEntry> e = row.run();
        if (!e.ok()) {
          failed[i] = e.status();
          continue;
        }
        if (e->name.empty()) e->name = row.name;
        e->group = row.group;
        runs[i].push_back(*std::move(e));
      }
    }
  }
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (!failed[i].ok()) {
      report.failures.emplace_back(absl::StrCat(rows_[i].name, " ", rows_[i].group),
                                   std::string(failed[i].message()));
      continue;
    }
    (rows_[i].baseline ? report.baselines : report.results).push_back(CombineRuns(runs[i]));
  }
  return report;
}

int BenchHarness::Finish(const BenchReport& report) {
  std::fputs(RenderSummary(report).c_str(), stdout);
  if (!report.details.empty()) absl::PrintF("\n%s", report.details);
  if (!report.targets.empty()) absl::PrintF("\n%s", RenderTargets(report));
  std::fflush(stdout);  // the table before any error below
  int exit_code = report.failures.empty() ? kExitOk : kExitFailure;
  if (!json_path_.empty()) {
    if (absl::Status s = WriteFileAtomically(json_path_, ReportJson(report)); !s.ok()) {
      absl::FPrintF(stderr, "sluice bench %s: %s\n", benchmark_, s.message());
      exit_code = kExitFailure;
    } else {
      absl::PrintF("\nwrote %s\n", json_path_);
    }
  }
  if (!plot_dir_.empty()) {
    absl::StatusOr<std::vector<std::string>> written = WriteBenchPlots(report, plot_dir_);
    if (!written.ok()) {
      absl::FPrintF(stderr, "sluice bench %s: --plot: %s\n", benchmark_,
                    written.status().message());
      exit_code = kExitFailure;
    } else {
      for (const std::string& path : *written) absl::PrintF("wrote %s\n", path);
    }
  }
  std::fflush(stdout);
  return exit_code;
}

}  // namespace sluice::tools
