// SVG charts of a benchmark report (`sluice bench ... --plot DIR`), drawn by hand so that they
// need nothing installed and open in any browser:
//  - per group with latencies, a percentile chart: p50, p90, p99, p99.9 and max on a "nines"
//    axis, latency on a logarithmic axis, one line per entry (baselines dashed);
//  - one throughput chart: a horizontal bar per entry with throughput, grouped, baselines in
//    grey beside the results, each bar labelled with its value and its ratio to the group's
//    reference baseline.
// Pure functions; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/bench_report.h"

namespace sluice::tools {

// The latency chart of `group`'s entries (those with a latency), as an SVG document.
std::string LatencyChartSvg(const BenchReport& report, const std::string& group);
// The throughput chart of every entry with a throughput, as an SVG document; records/ms when
// every such entry has it, else GB/s.
std::string ThroughputChartSvg(const BenchReport& report);

// Writes the charts that apply into `dir` (created if missing), each through a temporary file:
// `<benchmark>-latency-<group>.svg` per latency group (the group name made file-safe),
// `<benchmark>-throughput.svg`, and `<benchmark>.html`, a page showing them all. Returns the
// paths written.
absl::StatusOr<std::vector<std::string>> WriteBenchPlots(const BenchReport& report,
                                                         const std::string& dir);

}  // namespace sluice::tools
