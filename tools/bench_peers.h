// Baselines from other software, measured in the same run as Sluice's figures, each against a
// peer in a second process on 127.0.0.1:
//  - ZeroMQ (libzmq from Debian): PUSH/PULL for throughput, REQ/REP for ping-pong latency. The
//    peer is `sluice zmq-peer` (hidden), started by this process.
//  - sockperf (ping-pong latency) and iperf3 (TCP throughput), when installed: reported, never
//    required. Each runs its own server and client.
// Functions here block until their measurement is done; one at a time.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "tools/bench_report.h"
#include "tools/commands.h"

namespace sluice::tools {

// Whether an executable called `name` is on PATH.
bool ToolInstalled(const std::string& name);

// Whether this build has ZeroMQ (libzmq found at configure time).
bool ZeroMqAvailable();

struct PeerBenchOptions {
  size_t message_size = 8;  // bytes per message (ping-pong: per request and per reply)
  double warmup_seconds = 1;
  double seconds = 3;  // measured
};

// Throughput: the zmq-peer PUSHes `message_size`-byte messages as fast as it can, this process
// PULLs and counts those that arrive during the measured phase. Returns an entry named
// "zeromq push/pull" with records_per_ms (messages/ms) and gbytes_per_s (payload bytes).
// Unimplemented when ZeroMQ is not in this build.
absl::StatusOr<BenchEntry> RunZeroMqPushPull(const PeerBenchOptions& options);
// Latency: this process sends a REQ, the zmq-peer answers with a REP of the same size, one at a
// time; the entry ("zeromq req/rep") carries the round-trip histogram of the measured phase.
absl::StatusOr<BenchEntry> RunZeroMqPingPong(const PeerBenchOptions& options);

// sockperf's ping-pong (`sockperf server` + `sockperf ping-pong` over TCP on loopback): an entry
// "sockperf" with the round-trip percentiles it reports. NotFound when sockperf is not installed.
absl::StatusOr<BenchEntry> RunSockperfPingPong(const PeerBenchOptions& options);
// iperf3 over loopback (one TCP stream): an entry "iperf3" with gbytes_per_s as its receiver
// reports it. NotFound when iperf3 is not installed.
absl::StatusOr<BenchEntry> RunIperf3(const PeerBenchOptions& options);

// `sluice zmq-peer`: the other side of the ZeroMQ baselines.
int RunZmqPeer(Args args);

}  // namespace sluice::tools
