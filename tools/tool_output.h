// Readers of what other benchmark tools print, for the baselines of `sluice bench`
// (tools/bench_peers.cc, tools/bench_query.cc): sockperf's text report, iperf3's JSON report
// (-J) and redis-benchmark's CSV report (--csv). The bytes come
// from another program, so these take any input and return either the figures or an error that
// names what was missing or malformed (fuzzed by tests/fuzz, target tool_output). They look for
// the few lines and members the benchmarks use; they are not general parsers of either format.
// Stateless; safe to call from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sluice::tools {

// `text` without terminal escape sequences (ESC '[' ... final byte) and without any other ESC
// byte: sockperf colours its lines even when its output goes to a file.
std::string StripEscapes(absl::string_view text);

// The gist of a tool's output for an error message: its lines that mention an error (at most
// three), else its last three lines; at most about 600 characters.
std::string OutputGist(absl::string_view output);

// What `sockperf ping-pong` reported. Latencies in microseconds, as sockperf prints them: round
// trips with --full-rtt, else one way (half a round trip).
struct SockperfReport {
  double p50_us = 0;
  double p90_us = 0;   // 0 when sockperf did not print it
  double p99_us = 0;   // 0 when sockperf did not print it
  double p999_us = 0;  // 0 when sockperf did not print it
  double max_us = 0;
  uint64_t observations = 0;    // the round trips the percentiles are over
  bool round_trip = false;      // "Summary: Round trip is": it honoured --full-rtt
  double measured_seconds = 0;  // "[Valid Duration] RunTime="; 0 when absent
  std::string version;          // "3.7-no.git"; empty when absent
};

// Reads the output (stdout and stderr) of `sockperf ping-pong`, colours and all. sockperf exits
// with status 0 even when it could not connect, so its report is the only word on how it went:
// an InvalidArgument error when the median, the maximum or the number of observations is
// missing, quoting sockperf's ERROR lines (or its last lines).
absl::StatusOr<SockperfReport> ParseSockperfOutput(absl::string_view output);

// What `iperf3 -c ... -J` reported.
struct Iperf3Report {
  double bits_per_second = 0;          // end.sum_received.bits_per_second: > 0 and finite
  double measured_seconds = 0;         // end.sum_received.seconds; 0 when absent
  std::optional<uint64_t> block_size;  // start.test_start.blksize
  std::string version;                 // start.version, "iperf 3.12"; empty when absent
};

// Reads the JSON report of an iperf3 client. iperf3 puts its failures in the report (and may
// exit with status 0 all the same): an "error" member gives an Unavailable error with its text.
// A report that is not a whole JSON object (truncated), or that lacks a positive
// end.sum_received.bits_per_second, gives an InvalidArgument error that says which.
absl::StatusOr<Iperf3Report> ParseIperf3Json(absl::string_view json);

// What `redis-benchmark --csv` reported for one test. Latencies in milliseconds, as it prints
// them (three decimals); older versions printed only the rate, and then these stay 0.
struct RedisBenchmarkReport {
  double requests_per_second = 0;  // > 0 and finite
  double avg_ms = 0;
  double min_ms = 0;
  double p50_ms = 0;
  double p95_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  bool has_latency = false;  // the header named the columns and p50 and p99 were read
};

// Reads the output (stdout and stderr) of `redis-benchmark --csv` for the row of `test` ("GET").
// redis-benchmark stops at the first error reply and may exit with status 0 all the same: its
// "Error from server: ..." (or "Could not connect ...") gives an Unavailable error quoting it. No
// row for `test`, or a rate that is not a positive number, gives an InvalidArgument error that
// says which. Columns are found by the names in the header line, wherever they are.
absl::StatusOr<RedisBenchmarkReport> ParseRedisBenchmarkCsv(absl::string_view output,
                                                            absl::string_view test);

}  // namespace sluice::tools
