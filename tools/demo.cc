// `sluice demo`: for each transport, a peer in a second process; a verified one-way transfer
// and a ping-pong; one table at the end. Then the shuffle in this process: a short run of
// `sluice bench shuffle` and its raw-handoff baseline; then the shuffle between two processes
// through the net service (uring, or epoll when the kernel refuses io_uring) and its raw-tcp
// baseline; a table each.
#include <signal.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "net/transport.h"
#include "shuffle/net_shuffle.h"
#include "statestore/query_client.h"
#include "tools/bench_net.h"
#include "tools/bench_report.h"
#include "tools/bench_shuffle.h"
#include "tools/commands.h"
#include "tools/peer_process.h"

namespace sluice::tools {
namespace {

// A shuffle table: the baseline's row, then the run's, "vs" the baseline; `copies` adds the
// receiver's copied/byte (two-process runs). Returns the number of failed runs.
int PrintShuffleTable(std::string_view baseline, const absl::StatusOr<ThroughputResult>& raw,
                      const std::string& name, const absl::StatusOr<ThroughputResult>& run,
                      bool copies) {
  std::vector<std::string> header = {"shuffle", "records/ms", "GB/s",
                                     absl::StrCat("vs ", std::string(baseline))};
  if (copies) header.push_back("copied/byte");
  header.push_back("checked");
  Table table(header);
  int failures = 0;
  const double base = raw.ok() ? raw->records_per_ms() : 0;
  for (const absl::StatusOr<ThroughputResult>* r : {&raw, &run}) {
    std::vector<std::string> cells = {r == &raw ? std::string(baseline) : name};
    if (!r->ok()) {
      ++failures;
      absl::FPrintF(stderr, "sluice demo: %s\n", r->status().message());
      cells.insert(cells.end(), {"-", "-", "-"});
      if (copies) cells.push_back("-");
      cells.push_back("FAILED");
      table.AddRow(std::move(cells));
      continue;
    }
    const ThroughputResult& t = **r;
    cells.push_back(absl::StrFormat("%.0f", t.records_per_ms()));
    cells.push_back(absl::StrFormat("%.3f", t.gbytes_per_s()));
    cells.push_back(base > 0 ? absl::StrFormat("%.2fx", t.records_per_ms() / base) : "-");
    if (copies) cells.push_back(absl::StrFormat("%.3f", t.copied_per_byte()));
    cells.push_back("count ok");
    table.AddRow(std::move(cells));
  }
  std::fputs(table.Render().c_str(), stdout);
  return failures;
}

// The shuffle part: the `sluice bench shuffle` configuration, short (about 2 s in all).
// Returns the number of failed runs.
int RunShuffleDemo() {
  ShuffleBenchOptions o;
  absl::PrintF(
      "\nThe shuffle in this process: %d writer threads x %d channels of %s records (flush every "
      "%d ms)\nread by one consumer through a union of input gates, every record counted; "
      "against\na raw two-thread handoff of 32 KiB buffers (see 'sluice bench shuffle').\n\n",
      o.writers, o.channels, FormatBytes(o.record_size), o.flush_ms);
  std::fflush(stdout);
  ShuffleBenchOptions raw_options = o;
  raw_options.warmup_seconds = 0.2;
  raw_options.seconds = 0.5;
  absl::StatusOr<ThroughputResult> raw = RunRawHandoff(raw_options);
  o.warmup_seconds = 0.3;
  o.seconds = 1.0;
  absl::StatusOr<ThroughputResult> local = RunShuffleThroughput(o);
  return PrintShuffleTable(kRawHandoff, raw, o.service, local, /*copies=*/false);
}

// The same workload between two processes through the net service over `transport`, and the
// raw-tcp baseline between the same two processes; about 2 s. Returns the number of failed runs.
int RunNetShuffleDemo(const std::string& transport) {
  ShuffleBenchOptions o;
  o.service = std::string(kNetShuffleService);
  o.net_transport = transport;
  absl::PrintF(
      "\nThe shuffle between two processes (net service over %s, loopback TCP): the same writers "
      "in a\nsecond process, this one the consumer; against raw-tcp, the same records framed by "
      "hand into\n32 KiB buffers and written to one plain blocking socket (see 'sluice bench "
      "shuffle --help').\n\n",
      transport);
  std::fflush(stdout);
  ShuffleBenchOptions raw_options = o;
  raw_options.warmup_seconds = 0.2;
  raw_options.seconds = 0.5;
  absl::StatusOr<ThroughputResult> raw = RunRawTcpShuffle(raw_options);
  o.warmup_seconds = 0.3;
  o.seconds = 0.8;
  absl::StatusOr<ThroughputResult> net = RunNetShuffleThroughput(o);
  return PrintShuffleTable(kRawTcp, raw, NetShuffleName(o), net, /*copies=*/true);
}

// A short `sluice bench shuffle --mode latency`: ping-pong through the net shuffle between two
// processes, against raw-tcp, and its summary table.
int RunLatencyDemo(const std::string& transport) {
  LatencyBenchOptions o;
  o.transport = transport;
  o.warmup_seconds = 0.3;
  o.seconds = 1;
  absl::PrintF(
      "\nLatency: one %s record at a time A -> B -> A through two net shuffles (%s, a flush after "
      "every\nrecord) between two processes, against the same records echoed over a plain "
      "socket (raw-tcp);\n%gs warm-up, %gs measured. More: sluice bench shuffle --mode latency\n\n",
      FormatBytes(o.record_size), transport, o.warmup_seconds, o.seconds);
  std::fflush(stdout);
  BenchHarness harness("shuffle-latency");
  harness.Add({std::string(kRawTcp), "ping-pong", true, o.warmup_seconds + o.seconds,
               [&o] { return RunRawTcpPingPong(o); }});
  harness.Add({LatencyRowName(o), "ping-pong", false, o.warmup_seconds + o.seconds,
               [&o] { return RunShufflePingPong(o); }});
  return harness.Finish(harness.Run()) == kExitOk ? 0 : 1;
}

// Starts `sluice state-server` in a second process (100,000 generated keys on rocksdb, changing
// and checkpointed every second, served natively and over RESP) and reads it back through the
// query client: the job's states, one key latest and committed, several at once, a prefix scan.
int RunQueryDemo() {
  absl::PrintF(
      "\nQueryable state: a state server process (100,000 keys on rocksdb, 10,000 "
      "updates/s,\ncheckpoints every second), read through the query client.\n");
  absl::StatusOr<std::unique_ptr<PeerProcess>> server = PeerProcess::Spawn(
      "state server", {"state-server", "--generate", "100000", "--resp-port", "0"});
  if (!server.ok()) {
    absl::FPrintF(stderr, "sluice demo: %s\n", server.status().message());
    return 1;
  }
  std::string query;
  std::string resp;
  for (;;) {
    absl::StatusOr<std::string> line = (*server)->ReadLine(absl::Seconds(120));
    if (!line.ok()) {
      absl::FPrintF(stderr, "sluice demo: state server: %s\n", line.status().message());
      return 1;
    }
    if (absl::StartsWith(*line, "query ")) query = std::string(absl::StripPrefix(*line, "query "));
    if (absl::StartsWith(*line, "resp ")) resp = std::string(absl::StripPrefix(*line, "resp "));
    if (*line == "ready") break;
  }
  query = query.substr(0, query.find(' '));
  absl::SleepFor(absl::Milliseconds(1500));  // a checkpoint or two, and updates after them
  QueryClientOptions options;
  options.address = query;
  absl::StatusOr<std::unique_ptr<QueryClient>> client = QueryClient::Create(options);
  if (!client.ok()) {
    absl::FPrintF(stderr, "sluice demo: %s\n", client.status().message());
    return 1;
  }
  int failures = 0;
  auto show = [&](const std::string& what, const KeyResult& r) {
    if (r.status != QueryStatus::kOk) ++failures;
    const std::string value =
        r.status != QueryStatus::kOk
            ? absl::StrCat(std::string(QueryStatusName(r.status)), ": ", r.message)
        : r.found ? r.value.value.substr(0, r.value.value.find('x'))
                  : "(absent)";
    absl::PrintF("  %-44s %s%s\n", what, value,
                 r.checkpoint_id != 0 ? absl::StrCat("  (checkpoint ", r.checkpoint_id, ")") : "");
  };
  QueryRequest states;
  states.type = QueryType::kListStates;
  QueryResponse listed = (*client)->Execute(states);
  std::vector<std::string> names;
  for (const StateInfo& s : listed.states) {
    names.push_back(absl::StrCat(s.name, " (", std::string(StateKindName(s.kind)), ")"));
  }
  absl::PrintF("  %-44s %s\n", absl::StrCat("states of job demo at ", query, ":"),
               absl::StrJoin(names, ", "));
  absl::PrintF(
      "  values are \"<epoch>:\" padded: the epoch of a write is the checkpoint that "
      "first holds it\n");
  show("get key 000000000042 (latest)", (*client)->Get("demo", "key", "000000000042"));
  show("get key 000000000042 (committed)",
       (*client)->Get("demo", "key", "000000000042", Consistency::kCommitted));
  QueryRequest mget;
  mget.type = QueryType::kMultiGet;
  mget.job = "demo";
  mget.state = "key";
  mget.consistency = Consistency::kCommitted;
  mget.keys = {"000000000001", "000000050000", "000000099999", "no-such-key"};
  QueryResponse many = (*client)->Execute(mget);
  for (size_t i = 0; i < many.results.size(); ++i) {
    show(absl::StrCat("mget (committed) ", mget.keys[i]), many.results[i]);
  }
  QueryRequest scan;
  scan.type = QueryType::kPrefixScan;
  scan.job = "demo";
  scan.state = "history";
  scan.prefix = "00000000";
  int entries = 0;
  QueryResponse scanned = (*client)->ScanAll(scan, [&](const ScanEntry&) { return ++entries > 0; });
  if (scanned.status != QueryStatus::kOk) ++failures;
  absl::PrintF("  %-44s %d keys\n", "scan history 00000000*", entries);
  absl::PrintF(
      "  try: sluice query get key 000000000042 --addr %s --consistency committed\n"
      "       redis-cli -p %s GET key:000000000042\n",
      query, resp.substr(resp.rfind(':') + 1));
  (*server)->CloseStdin();
  kill((*server)->pid(), SIGTERM);
  if (absl::Status s = (*server)->Wait(absl::Seconds(30)); !s.ok()) {
    absl::FPrintF(stderr, "sluice demo: state server: %s\n", s.message());
    ++failures;
  }
  return failures > 0 ? 1 : 0;
}

}  // namespace

int RunDemo(Args args) {
  std::string transport = "both";
  uint64_t bytes = 256ull << 20;
  uint64_t frame_size = 32 << 10;
  uint64_t pings = 20000;
  OptionParser parser(
      "sluice demo",
      "Starts a peer in a second process for each transport and, over loopback TCP, (a) sends\n"
      "--bytes one way in --frame-size frames, verified by the peer's byte count and CRC32C, and\n"
      "prints MB/s (1 MB = 10^6 bytes); (b) ping-pongs --pings small frames after a warm-up and\n"
      "prints the round trip's p50 and p99. 'both' runs uring and epoll, or epoll alone when the\n"
      "kernel refuses io_uring. Then, in this process, runs the shuffle for about 2 s (4 writer\n"
      "threads x 1000 channels of 8-byte records, one consumer) and its raw-handoff baseline,\n"
      "and prints records/ms; then the same between two processes through the net shuffle\n"
      "service (uring, or epoll as above) against raw-tcp, records framed by hand onto one\n"
      "plain socket, with the bytes the receiver copied; last, a one-second latency ping-pong\n"
      "through the net shuffle against raw-tcp; then a state server in a second process (keyed\n"
      "state, updated and checkpointed) read through the query client. Exits non-zero if\n"
      "anything fails.");
  parser.AddChoice("--transport", {"auto", "uring", "epoll", "both"}, "Transports to run",
                   &transport);
  parser.AddBytes("--bytes", "Bytes to transfer one way", 1, 64ull << 30, &bytes);
  parser.AddBytes("--frame-size", "Payload bytes per data frame", 1, 1 << 20, &frame_size);
  parser.AddCount("--pings", "N", "Round trips measured (after a warm-up of 2000)", 1, 10'000'000,
                  &pings);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;

  std::vector<std::string> transports;
  const absl::Status uring = net::ProbeIoUring();
  if (transport == "both") {
    if (uring.ok()) {
      transports = {"uring", "epoll"};
    } else {
      absl::PrintF("uring: refused by the kernel (%s); running epoll only\n", uring.message());
      transports = {"epoll"};
    }
  } else if (transport == "uring" && !uring.ok()) {
    absl::FPrintF(stderr, "sluice demo: uring: %s\n", uring.message());
    return kExitFailure;
  } else {
    transports = {transport};
  }

  SessionOptions options;
  options.stream.bytes = bytes;
  options.stream.frame_size = frame_size;
  options.stream.verify = true;
  options.ping.warmup = 2000;
  options.ping.count = pings;
  absl::PrintF(
      "Each transport talks to a peer process on 127.0.0.1: %s one way in %s frames (CRC32C "
      "checked),\nthen %d ping-pongs of %d bytes after %d warm-up round trips.\n\n",
      FormatBytes(bytes), FormatBytes(frame_size), pings, options.ping.payload_size,
      options.ping.warmup);
  std::fflush(stdout);

  Table table(
      {"transport", "stream MB/s", "verified", "ping p50 us", "ping p99 us", "copied/byte"});
  int failures = 0;
  for (const std::string& t : transports) {
    options.transport = t;
    absl::StatusOr<SessionResult> r = RunSession(options);
    if (!r.ok()) {
      ++failures;
      absl::FPrintF(stderr, "sluice demo: %s\n", r.status().message());
      table.AddRow({t, "-", "FAILED", "-", "-", "-"});
      continue;
    }
    const std::string label = t == r->transport ? t : absl::StrCat(t, " (", r->transport, ")");
    table.AddRow({label, absl::StrFormat("%.1f", r->stream.bytes_per_second() / 1e6),
                  r->stream.crc_checked ? "crc32c ok" : "count ok",
                  absl::StrFormat("%.1f", r->ping.rtt_nanos.p50() / 1e3),
                  absl::StrFormat("%.1f", r->ping.rtt_nanos.p99() / 1e3),
                  absl::StrFormat("%.4f", r->copied_per_byte())});
  }
  std::fputs(table.Render().c_str(), stdout);
  // The two-process shuffle runs over one transport: uring, unless refused or not asked for.
  const std::string shuffle_transport = transport == "epoll" || !uring.ok() ? "epoll" : "uring";
  const int shuffle_failures = RunShuffleDemo() + RunNetShuffleDemo(shuffle_transport) +
                               RunLatencyDemo(shuffle_transport) + RunQueryDemo();
  if (failures > 0) {
    absl::PrintF("\n%d of %d transports failed (see above)\n", failures,
                 static_cast<int>(transports.size()));
  }
  if (shuffle_failures > 0) {
    absl::PrintF("\n%d shuffle run%s failed (see above)\n", shuffle_failures,
                 shuffle_failures == 1 ? "" : "s");
  }
  return failures + shuffle_failures > 0 ? kExitFailure : kExitOk;
}

}  // namespace sluice::tools
