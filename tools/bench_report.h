// What every `sluice bench` command produces, and the harness that produces it: the entries a
// run measured (results, and the baselines measured beside them in the same run), a summary
// table with ratios against the baselines, the JSON report (`--json FILE`), SVG charts
// (`--plot DIR`, tools/bench_plot.h), a progress bar on a terminal, and repeated measured runs
// (`--runs N`). Thread-compatible; BenchHarness is used by the thread that runs the benchmark.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/histogram.h"
#include "tools/bench_common.h"
#include "tools/cli.h"

namespace sluice::tools {

// Latency percentiles, in microseconds.
struct LatencySummary {
  uint64_t samples = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double p999_us = 0;
  double max_us = 0;

  static LatencySummary FromNanos(const Histogram& nanos);
};

// One row of a report: something measured once (or, with --runs, several times and combined).
struct BenchEntry {
  std::string name;  // "net/uring", "raw-tcp", "zeromq push/pull"
  // What was measured: entries of one group are comparable, and a result is compared with the
  // baselines of its group ("ping-pong", "one-way at 20 records/ms", "throughput").
  std::string group;
  // What the latency is, for the reader: "round trip", "one way, from the intended send time".
  std::string latency_kind;
  double records_per_ms = 0;  // 0 = not measured
  double gbytes_per_s = 0;    // 0 = not measured
  double ops_per_s = 0;       // operations (state accesses, say) per second; 0 = not measured
  std::optional<LatencySummary> latency;
  // When the latency came from our own histogram: kept so that runs merge exactly.
  std::shared_ptr<const Histogram> latency_nanos;
  // More JSON members for this entry: (key, JSON value text).
  std::vector<std::pair<std::string, std::string>> extra;

  bool has_throughput() const { return records_per_ms > 0 || gbytes_per_s > 0 || ops_per_s > 0; }
  // Sets `latency` and `latency_nanos` from a histogram of nanoseconds.
  void SetLatency(const Histogram& nanos);
};

// A goal the benchmark checks its figures against, printed after the table and kept in the JSON.
struct BenchTarget {
  std::string what;     // "net/uring ping-pong p50 / raw-tcp ping-pong p50"
  double value = 0;     // the measured ratio (or figure)
  double limit = 0;     // the goal
  bool at_most = true;  // met when value <= limit (else when value >= limit)
  bool met() const { return at_most ? value <= limit : value >= limit; }
};

struct BenchReport {
  std::string benchmark;  // "shuffle", "net"
  // The configuration: (key, JSON value text), in order.
  std::vector<std::pair<std::string, std::string>> config;
  HostInfo host;
  std::vector<BenchEntry> results;
  std::vector<BenchEntry> baselines;
  std::vector<BenchTarget> targets;
  // Printed after the summary: what else the benchmark wants to show (a breakdown, notes).
  std::string details;
  // Rows that failed: (name, error). A report with failures is still written.
  std::vector<std::pair<std::string, std::string>> failures;
  // Further top-level JSON fields of the benchmark's own: (key, JSON value text), in order.
  std::vector<std::pair<std::string, std::string>> sections;

  // The groups in the order they first appear, baselines before results.
  std::vector<std::string> Groups() const;
  // The baseline a result's ratios are against: the first baseline of its group, or null.
  const BenchEntry* ReferenceFor(const BenchEntry& result) const;
  // The baseline of `group` called `name`, or null.
  const BenchEntry* FindBaseline(const std::string& group, const std::string& name) const;
  const BenchEntry* FindResult(const std::string& group, const std::string& name) const;
};

// The summary table: for each group, its baselines then its results, with throughput, latency
// percentiles and the ratios of each result to its group's reference baseline.
std::string RenderSummary(const BenchReport& report);
// The targets, one line each, with "met" or "NOT met".
std::string RenderTargets(const BenchReport& report);
// {"benchmark", "config", "host", "results": [...], "baselines": [...], "targets": [...],
//  "failures": [...], then the report's sections}; entries {"name", "group", "records_per_ms",
//  "gbytes_per_s", "ops_per_s", "p50_us", ..., "max_us", "vs": {...}} with the fields that apply.
std::string ReportJson(const BenchReport& report);

// Draws a progress bar on stderr while a benchmark runs, when stderr is a terminal; prints
// nothing otherwise. A background thread redraws it a few times a second.
class ProgressBar {
 public:
  explicit ProgressBar(int total_steps);
  ~ProgressBar();  // clears the line
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // The next step: `label` runs for about `planned_seconds`.
  void Step(const std::string& label, double planned_seconds);
  // Whether a bar is drawn at all.
  bool active() const { return state_ != nullptr; }

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// One row to measure: a function that runs the whole of it (its own warm-up included) once.
struct BenchRow {
  std::string name;  // the entry's, unless the run names it (an "auto" that became "uring")
  std::string group;
  bool baseline = false;
  double planned_seconds = 0;  // for the progress bar
  absl::AnyInvocable<absl::StatusOr<BenchEntry>()> run;
};

// The options and steps every benchmark shares. Typical use:
//   BenchHarness harness("shuffle");
//   harness.AddOptions(parser);           // --runs, --json, --plot
//   ... parse ...
//   harness.Add(row) ...;                 // baselines and results, in the order they run
//   BenchReport report = harness.Run();   // runs every row `runs` times, interleaved
//   ... add config and targets ...
//   return harness.Finish(report);        // table, targets, JSON, charts; the exit code
class BenchHarness {
 public:
  explicit BenchHarness(std::string benchmark);

  // Adds --runs, --json and --plot to `parser`. `this` must outlive the parse.
  void AddOptions(OptionParser& parser);
  uint64_t runs() const { return runs_; }

  void Add(BenchRow row);
  // Runs the rows: with --runs N every row N times, in rounds (all rows, then all again), so
  // that a slow spell of the machine spreads over every row. Combines each row's runs: the
  // median run's throughput, and the merged latency histograms (or, for latencies without one,
  // each percentile's median). A row that fails once is reported as failed.
  BenchReport Run();
  // Prints the summary and the targets; writes the JSON and the charts when asked. Returns
  // kExitFailure when a row failed or a file could not be written, kExitOk otherwise (targets
  // not met are reported, not failures).
  int Finish(const BenchReport& report);

 private:
  std::string benchmark_;
  uint64_t runs_ = 1;
  std::string json_path_;
  std::string plot_dir_;
  std::vector<BenchRow> rows_;
};

// Combines the entries of several runs of one row as BenchHarness::Run does.
BenchEntry CombineRuns(std::vector<BenchEntry> runs);

}  // namespace sluice::tools
