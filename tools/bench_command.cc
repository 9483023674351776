// `sluice bench`: the list of benchmarks, and `sluice bench net`: stream throughput and ping-pong
// latency of the transports and of the raw-tcp baseline, measured in one run, each against a
// peer in a second process. `sluice bench shuffle` lives in bench_shuffle.cc (its two-process
// runs in bench_shuffle_net.cc).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "net/transport.h"
#include "tools/bench_common.h"
#include "tools/bench_net.h"
#include "tools/bench_shuffle.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

struct Row {
  std::string name;  // as requested
  SessionResult result;
  double us(uint64_t nanos) const { return static_cast<double>(nanos) / 1e3; }
  double gbytes_per_s() const { return result.stream.bytes_per_second() / 1e9; }
};

std::string RowJson(const Row& row, const Row* raw) {
  const Histogram& h = row.result.ping.rtt_nanos;
  std::string out = absl::StrFormat(
      "{\"name\": %s, \"peer\": %s, \"gbytes_per_s\": %.4f, \"p50_us\": %.2f, \"p90_us\": %.2f, "
      "\"p99_us\": %.2f, \"p999_us\": %.2f, \"max_us\": %.2f, \"pings\": %d, "
      "\"stream_bytes\": %d, \"stream_seconds\": %.4f, \"bytes_copied_per_byte\": %.6f",
      JsonString(row.result.transport), JsonString(row.result.peer.transport), row.gbytes_per_s(),
      row.us(h.p50()), row.us(h.p90()), row.us(h.p99()), row.us(h.p999()), row.us(h.max()),
      h.count(), row.result.stream.bytes, row.result.stream.seconds, row.result.copied_per_byte());
  if (raw != nullptr && raw != &row && raw->gbytes_per_s() > 0 &&
      raw->result.ping.rtt_nanos.p50()) {
    absl::StrAppendFormat(
        &out, ", \"throughput_vs_raw\": %.3f, \"p50_vs_raw\": %.3f",
        row.gbytes_per_s() / raw->gbytes_per_s(),
        static_cast<double>(h.p50()) / static_cast<double>(raw->result.ping.rtt_nanos.p50()));
  }
  return out + "}";
}

int RunBenchNet(Args args) {
  std::string transport_list = "uring,epoll";
  double seconds = 2;
  std::string json_path;
  uint64_t frame_size = 32 << 10;
  uint64_t ping_size = 64;
  uint64_t zero_copy = 0;
  bool verify = false;
  std::string peer_transport;
  OptionParser parser(
      "sluice bench net",
      "Measures, for each transport and for a plain blocking-socket baseline (raw-tcp), each\n"
      "against a peer in a second process on 127.0.0.1:\n"
      "  stream     one-way data frames for --seconds, paced by a 4 MiB window of acks;\n"
      "  ping-pong  one --ping-size frame in flight, echoed, for --seconds after 1000 warm-ups;\n"
      "  copied/B   bytes the peer's receive path copied in user space per byte received.\n"
      "Ratios are against raw-tcp: throughput (higher is better) and p50 (lower is better).\n"
      "1 MB = 10^6 bytes.");
  parser.AddString("--transport", "LIST",
                   "Comma-separated transports (uring, epoll, auto); raw-tcp always runs",
                   &transport_list);
  parser.AddSeconds("--seconds", "Duration of each phase (stream, ping-pong) per transport", 0.1,
                    3600, &seconds);
  parser.AddString("--json", "FILE", "Also write the results as JSON here", &json_path);
  parser.AddBytes("--frame-size", "Payload bytes per data frame", 1, 1 << 20, &frame_size);
  parser.AddBytes("--ping-size", "Payload bytes per ping", kPingHeaderSize, 1 << 20, &ping_size);
  parser.AddBytes("--zero-copy-threshold",
                  "Sender payloads this large use zero-copy send (uring); 0 = never", 0, 1 << 30,
                  &zero_copy);
  parser.AddOption("--peer-transport", "uring|epoll|auto",
                   "Run every peer with this transport instead of its row's own, to tell the send "
                   "side from the receive side (raw-tcp keeps its own)",
                   "", [&peer_transport](std::string_view v) {
                     if (v != "uring" && v != "epoll" && v != "auto") {
                       return absl::InvalidArgumentError("expected one of uring, epoll, auto");
                     }
                     peer_transport = std::string(v);
                     return absl::OkStatus();
                   });
  parser.AddFlag("--verify", "Have the peer CRC32C every stream byte (costs its CPU)", &verify);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;

  const bool default_list = transport_list == "uring,epoll";
  std::vector<std::string> transports;
  const std::vector<std::string> known = net::Transport::Names();
  for (absl::string_view piece : absl::StrSplit(transport_list, ',', absl::SkipEmpty())) {
    const std::string t(piece);
    if (t == kRawTcp) continue;  // the baseline always runs
    if (t == "memory" || std::find(known.begin(), known.end(), t) == known.end()) {
      return ReportUsageError(
          parser.command(),
          absl::InvalidArgumentError(
              absl::StrCat("bad value '", transport_list, "' for --transport: unknown transport '",
                           t, "' (expected a comma-separated list of uring, epoll, auto)")));
    }
    transports.emplace_back(t);
  }
  const absl::Status uring = net::ProbeIoUring();
  if (!uring.ok() && std::find(transports.begin(), transports.end(), "uring") != transports.end()) {
    if (!default_list) {
      absl::FPrintF(stderr, "sluice bench net: uring: %s\n", uring.message());
      return kExitFailure;
    }
    absl::PrintF("uring: refused by the kernel (%s); skipped\n", uring.message());
    std::erase(transports, "uring");
  }

  SessionOptions options;
  options.stream.seconds = seconds;
  options.stream.frame_size = frame_size;
  options.stream.verify = verify;
  options.ping.warmup = 1000;
  options.ping.seconds = seconds;
  options.ping.payload_size = ping_size;
  options.zero_copy_threshold = zero_copy;
  options.peer_transport = peer_transport;
  absl::PrintF(
      "sluice bench net: %gs stream of %s frames + %gs ping-pong of %s per transport%s%s\n\n",
      seconds, FormatBytes(frame_size), seconds, FormatBytes(ping_size),
      verify ? ", CRC32C verified" : "",
      peer_transport.empty() ? "" : absl::StrCat("; peers run ", peer_transport));
  std::fflush(stdout);

  std::vector<std::string> order = {std::string(kRawTcp)};
  order.insert(order.end(), transports.begin(), transports.end());
  std::vector<Row> rows;
  int failures = 0;
  for (const std::string& t : order) {
    options.transport = t;
    absl::StatusOr<SessionResult> r = RunSession(options);
    if (!r.ok()) {
      ++failures;
      absl::FPrintF(stderr, "sluice bench net: %s\n", r.status().message());
      continue;
    }
    rows.push_back(Row{t, *std::move(r)});
  }
  const Row* raw = !rows.empty() && rows[0].name == kRawTcp ? &rows[0] : nullptr;

  Table table({"transport", "stream MB/s", "vs raw", "p50 us", "p90 us", "p99 us", "p99.9 us",
               "max us", "p50 vs raw", "copied/B"});
  for (const Row& row : rows) {
    const Histogram& h = row.result.ping.rtt_nanos;
    std::string tput_ratio = "-";
    std::string p50_ratio = "-";
    if (raw != nullptr && raw->gbytes_per_s() > 0 && raw->result.ping.rtt_nanos.p50() > 0) {
      tput_ratio = absl::StrFormat("%.2fx", row.gbytes_per_s() / raw->gbytes_per_s());
      p50_ratio =
          absl::StrFormat("%.2fx", static_cast<double>(h.p50()) /
                                       static_cast<double>(raw->result.ping.rtt_nanos.p50()));
    }
    std::string label = row.name;
    if (row.name != row.result.transport) absl::StrAppend(&label, " (", row.result.transport, ")");
    if (row.result.peer.transport != row.result.transport) {
      absl::StrAppend(&label, " -> ", row.result.peer.transport);
    }
    table.AddRow(
        {label, absl::StrFormat("%.1f", row.gbytes_per_s() * 1e3), tput_ratio,
         absl::StrFormat("%.1f", row.us(h.p50())), absl::StrFormat("%.1f", row.us(h.p90())),
         absl::StrFormat("%.1f", row.us(h.p99())), absl::StrFormat("%.1f", row.us(h.p999())),
         absl::StrFormat("%.1f", row.us(h.max())), p50_ratio,
         absl::StrFormat("%.4f", row.result.copied_per_byte())});
  }
  std::fputs(table.Render().c_str(), stdout);

  if (!json_path.empty()) {
    const HostInfo host = DescribeHost();
    std::vector<std::string> results;
    std::vector<std::string> baselines;
    for (const Row& row : rows) {
      (&row == raw ? baselines : results).push_back(RowJson(row, raw));
    }
    std::vector<std::string> quoted;
    for (const std::string& t : transports) quoted.push_back(JsonString(t));
    const std::string json = absl::StrFormat(
        "{\n  \"benchmark\": \"net\",\n"
        "  \"config\": {\"transports\": [%s], \"seconds\": %g, \"frame_size\": %d, "
        "\"window_bytes\": %d, \"ping_size\": %d, \"ping_warmup\": %d, \"verify\": %s, "
        "\"zero_copy_threshold\": %d, \"peer_transport\": %s, "
        "\"peer\": \"second process, 127.0.0.1\"},\n"
        "  \"host\": {%s, \"io_uring\": %s},\n"
        "  \"results\": [\n    %s\n  ],\n  \"baselines\": [\n    %s\n  ]\n}\n",
        absl::StrJoin(quoted, ", "), seconds, frame_size, options.stream.window_bytes, ping_size,
        options.ping.warmup, verify ? "true" : "false", zero_copy,
        JsonString(peer_transport.empty() ? "same" : peer_transport), HostJsonFields(host),
        JsonString(uring.ok() ? "available" : std::string(uring.message())),
        absl::StrJoin(results, ",\n    "), absl::StrJoin(baselines, ",\n    "));
    if (absl::Status s = WriteFileAtomically(json_path, json); !s.ok()) {
      absl::FPrintF(stderr, "sluice bench net: %s\n", s.message());
      return kExitFailure;
    }
    absl::PrintF("\nwrote %s\n", json_path);
  }
  if (failures > 0) {
    absl::PrintF("\n%d of %d runs failed (see above)\n", failures, static_cast<int>(order.size()));
    return kExitFailure;
  }
  return kExitOk;
}

struct Benchmark {
  std::string_view name;
  std::string_view summary;
  int (*run)(Args args);
};
constexpr Benchmark kBenchmarks[] = {
    {"net", "Transport throughput and latency against raw TCP, cross-process", RunBenchNet},
    {"shuffle", "Shuffle records/ms: in-process against a raw handoff, or net against raw TCP",
     RunBenchShuffle},
};

std::string BenchHelp() {
  std::string out = "Usage: sluice bench <benchmark> [options]\n\nBenchmarks:\n";
  for (const Benchmark& b : kBenchmarks) {
    absl::StrAppend(&out, "  ", std::string(b.name), std::string(10 - b.name.size(), ' '),
                    std::string(b.summary), "\n");
  }
  return out + "\nRun 'sluice bench <benchmark> --help' for its options.\n";
}

}  // namespace

int RunBench(Args args) {
  if (args.empty()) {
    std::fputs(BenchHelp().c_str(), stderr);
    return ReportUsageError("sluice bench", absl::InvalidArgumentError("missing benchmark name"));
  }
  if (args[0] == "--help" || args[0] == "-h") {
    std::fputs(BenchHelp().c_str(), stdout);
    return kExitOk;
  }
  std::vector<std::string> names;
  for (const Benchmark& b : kBenchmarks) {
    if (b.name == args[0]) return b.run(args.subspan(1));
    names.emplace_back(b.name);
  }
  return ReportUsageError("sluice bench", absl::InvalidArgumentError(absl::StrCat(
                                              "unknown benchmark '", args[0],
                                              "' (known: ", absl::StrJoin(names, ", "), ")")));
}

}  // namespace sluice::tools
