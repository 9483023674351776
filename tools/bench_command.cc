// `sluice bench`: the list of benchmarks, and `sluice bench net`: stream throughput and ping-pong
// latency of the transports and of the raw-tcp baseline, measured in one run, each against a
// peer in a second process. `sluice bench shuffle` lives in bench_shuffle.cc (its two-process
// runs in bench_shuffle_net.cc), `sluice bench state` in bench_state.cc, `sluice bench query` in
// bench_query.cc.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status.h"
#include "net/transport.h"
#include "tools/bench_common.h"
#include "tools/bench_net.h"
#include "tools/bench_peers.h"
#include "tools/bench_query.h"
#include "tools/bench_report.h"
#include "tools/bench_shuffle.h"
#include "tools/bench_state.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

// The entry of one session: stream throughput and ping-pong round trips.
BenchEntry SessionEntry(const SessionResult& r, const std::string& requested) {
  BenchEntry e;
  e.name = requested;
  if (requested != r.transport) absl::StrAppend(&e.name, " (", r.transport, ")");
  if (r.peer.transport != r.transport) absl::StrAppend(&e.name, " -> ", r.peer.transport);
  e.latency_kind = "round trip, one frame in flight";
  e.gbytes_per_s = r.stream.bytes_per_second() / 1e9;
  e.SetLatency(r.ping.rtt_nanos);
  e.extra = {{"transport", JsonString(r.transport)},
             {"peer", JsonString(r.peer.transport)},
             {"stream_bytes", absl::StrCat(r.stream.bytes)},
             {"stream_seconds", absl::StrFormat("%.4f", r.stream.seconds)},
             {"bytes_copied_per_byte", absl::StrFormat("%.6f", r.copied_per_byte())}};
  return e;
}

int RunBenchNet(Args args) {
  std::string transport_list = "uring,epoll";
  double seconds = 2;
  uint64_t frame_size = 32 << 10;
  uint64_t ping_size = 64;
  uint64_t zero_copy = 0;
  bool verify = false;
  std::string peer_transport;
  BenchHarness harness("net");
  OptionParser parser(
      "sluice bench net",
      "Measures, for each transport and for a plain blocking-socket baseline (raw-tcp), each\n"
      "against a peer in a second process on 127.0.0.1:\n"
      "  stream     one-way data frames for --seconds, paced by a 4 MiB window of acks;\n"
      "  ping-pong  one --ping-size frame in flight, echoed, for --seconds after 1000 warm-ups;\n"
      "  copied/B   bytes the peer's receive path copied in user space per byte received.\n"
      "Ratios are against raw-tcp: throughput (higher is better) and p50 (lower is better).\n"
      "iperf3 (one TCP stream over loopback) runs beside them when it is installed.\n"
      "1 GB = 10^9 bytes.");
  parser.AddString("--transport", "LIST",
                   "Comma-separated transports (uring, epoll, auto); raw-tcp always runs",
                   &transport_list);
  parser.AddSeconds("--seconds", "Duration of each phase (stream, ping-pong) per transport", 0.1,
                    3600, &seconds);
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
  harness.AddOptions(parser);
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

  const std::string group = absl::StrCat("stream of ", FormatBytes(frame_size),
                                         " frames, ping-pong of ", FormatBytes(ping_size));
  std::vector<std::string> order = {std::string(kRawTcp)};
  order.insert(order.end(), transports.begin(), transports.end());
  for (const std::string& t : order) {
    harness.Add({t, group, t == kRawTcp, 2 * seconds + 0.5,
                 [options, t]() mutable -> absl::StatusOr<BenchEntry> {
                   options.transport = t;
                   SLUICE_ASSIGN_OR_RETURN(SessionResult r, RunSession(options));
                   return SessionEntry(r, t);
                 }});
  }
  // Beside raw-tcp (the reference, added first): iperf3's one TCP stream, when installed.
  if (ToolInstalled("iperf3")) {
    PeerBenchOptions iperf;
    iperf.warmup_seconds = 1;
    iperf.seconds = seconds;
    harness.Add({"iperf3", group, true, seconds + 1.5, [iperf] { return RunIperf3(iperf); }});
  } else {
    absl::PrintF("iperf3: not installed; its row is skipped\n\n");
  }
  BenchReport report = harness.Run();
  std::vector<std::string> quoted;
  for (const std::string& t : transports) quoted.push_back(JsonString(t));
  report.config = {
      {"transports", absl::StrCat("[", absl::StrJoin(quoted, ", "), "]")},
      {"seconds", absl::StrFormat("%g", seconds)},
      {"frame_size", absl::StrCat(frame_size)},
      {"window_bytes", absl::StrCat(options.stream.window_bytes)},
      {"ping_size", absl::StrCat(ping_size)},
      {"ping_warmup", absl::StrCat(options.ping.warmup)},
      {"verify", verify ? "true" : "false"},
      {"zero_copy_threshold", absl::StrCat(zero_copy)},
      {"peer_transport", JsonString(peer_transport.empty() ? "same" : peer_transport)},
      {"peer", JsonString("second process, 127.0.0.1")},
      {"io_uring", JsonString(uring.ok() ? "available" : std::string(uring.message()))}};
  Table copied({"transport", "copied/B"});
  for (const BenchEntry& e : report.results) {
    for (const auto& [key, value] : e.extra) {
      if (key == "bytes_copied_per_byte") copied.AddRow({e.name, value});
    }
  }
  report.details = absl::StrCat(
      "User-space bytes the receiving peer copied per byte of stream payload:\n", copied.Render());
  return harness.Finish(report);
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
    {"state", "Value-state read-modify-write ops/s: heap and rocksdb against raw RocksDB",
     RunBenchState},
    {"query", "State query GETs/s and p99 at 1 and 50 clients: native and RESP against Redis",
     RunBenchQuery},
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
