// The net benchmark behind `sluice demo` and `sluice bench net`: one-way stream throughput and
// ping-pong latency of a transport against a peer in another process, and the same over plain
// blocking sockets ("raw-tcp") as the baseline the transports are judged against.
//
// Stream: the client sends data frames from its own thread; the peer acknowledges every N frames
// and the client keeps at most `window_bytes` unacknowledged (the transports queue without
// bound, so this is what paces the sender). At the end the peer reports the bytes, frames and
// CRC32C it saw, which the client checks against what it sent.
// Ping-pong: one frame in flight; for the transports the next ping is sent from OnFrame on the
// I/O thread, so the figure is the transport's own round trip, not a thread handoff's.
//
// A BenchClient is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/histogram.h"
#include "tools/net_protocol.h"

namespace sluice::tools {

// The baseline's name where a transport name goes.
inline constexpr std::string_view kRawTcp = "raw-tcp";

struct StreamOptions {
  uint64_t bytes = 0;  // stop after this many payload bytes; 0 = run for `seconds`
  double seconds = 0;  // used when bytes == 0
  size_t frame_size = 32 * 1024;
  size_t window_bytes = 4 * 1024 * 1024;
  bool verify = true;  // CRC32C over every payload byte (costs the peer's CPU)
};

struct StreamResult {
  uint64_t bytes = 0;
  uint64_t frames = 0;
  double seconds = 0;  // first send to the peer's summary, on the client's clock
  bool crc_checked = false;
  double bytes_per_second() const { return seconds > 0 ? static_cast<double>(bytes) / seconds : 0; }
};

struct PingOptions {
  uint64_t warmup = 1000;  // round trips not recorded
  uint64_t count = 0;      // recorded round trips; 0 = run for `seconds`
  double seconds = 0;
  size_t payload_size = 64;  // at least kPingHeaderSize
};

struct PingResult {
  Histogram rtt_nanos;
  double seconds = 0;
};

class BenchClient {
 public:
  virtual ~BenchClient() = default;
  // The transport in use: "uring" or "epoll" when "auto" was asked for, or "raw-tcp".
  virtual std::string name() const = 0;
  virtual absl::StatusOr<StreamResult> Stream(const StreamOptions& options) = 0;
  virtual absl::StatusOr<PingResult> PingPong(const PingOptions& options) = 0;
  // The peer's counters; ask last, just before Close.
  virtual absl::StatusOr<PeerStats> FetchPeerStats() = 0;
  // Orderly close; the peer exits afterwards.
  virtual absl::Status Close() = 0;
};

struct ClientOptions {
  std::string transport;  // a Transport::Create name, or kRawTcp
  uint16_t port = 0;
  size_t zero_copy_threshold = 0;  // TransportOptions::zero_copy_threshold
};
absl::StatusOr<std::unique_ptr<BenchClient>> ConnectBenchClient(const ClientOptions& options);

// One session against a fresh peer process: stream, ping-pong, peer stats, orderly close.
struct SessionOptions {
  std::string transport;
  // The peer's transport when it should differ (to tell the send side from the receive side);
  // empty = the same. raw-tcp only pairs with itself.
  std::string peer_transport;
  StreamOptions stream;
  PingOptions ping;
  size_t zero_copy_threshold = 0;
};
struct SessionResult {
  std::string transport;  // as resolved ("auto" -> "uring")
  StreamResult stream;
  PingResult ping;
  PeerStats peer;
  // User-space bytes copied per payload byte received, on the peer (the stream's receiver).
  double copied_per_byte() const {
    return peer.bytes_received > 0
               ? static_cast<double>(peer.bytes_copied) / static_cast<double>(peer.bytes_received)
               : 0;
  }
};
absl::StatusOr<SessionResult> RunSession(const SessionOptions& options);

// The peer side (`sluice net-peer`): listens on 127.0.0.1 on a free port, calls `on_listening`
// with it, serves one connection until the client closes it, and returns. Gives up when no
// client comes within `accept_timeout`.
absl::Status ServePeer(std::string_view transport, absl::AnyInvocable<void(uint16_t)> on_listening,
                       absl::Duration accept_timeout);

}  // namespace sluice::tools
