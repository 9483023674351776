// The baselines from other software (see bench_peers.h): ZeroMQ against `sluice zmq-peer` in a
// second process, and sockperf and iperf3, each against its own server (their reports are read by
// tools/tool_output.h).
//
// `sluice zmq-peer --mode push|rep --size N` binds one socket on tcp://127.0.0.1 (a free port)
// and prints "ADDR <endpoint>" on stdout. In push mode it sends N-byte messages, each carrying
// its number (0, 1, ...) in its first min(8, N) bytes, until it reads STOP on stdin; then it
// prints "SENT <messages>". In rep mode it echoes each request. Either way it exits when its
// stdin ends: the parent closes it when done, or dies. An end of input before STOP in push mode
// means the parent gave up, and the peer exits without reporting.
#include "tools/bench_peers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/clock.h"
#include "base/histogram.h"
#include "base/status.h"
#include "tools/bench_common.h"
#include "tools/cli.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"
#include "tools/tool_output.h"
#include "tools/tool_process.h"

#if SLUICE_HAVE_ZMQ
#include <zmq.h>
#endif

namespace sluice::tools {
namespace {

// How long a peer or a tool's server may take to start, and how long a measurement may go
// without a message or a reply before it is abandoned.
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kStallTimeout = absl::Seconds(30);
// How long a peer or a tool may take to exit once its work is done.
constexpr absl::Duration kExitTimeout = absl::Seconds(10);
// The largest ZeroMQ message the benchmarks send: each side buffers a few of them.
constexpr uint64_t kMaxZmqMessage = uint64_t{64} << 20;

absl::Status ValidateOptions(const PeerBenchOptions& o) {
  if (!(o.seconds > 0) || !std::isfinite(o.seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("measured seconds must be > 0, not ", o.seconds));
  }
  if (!(o.warmup_seconds >= 0) || !std::isfinite(o.warmup_seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("warm-up seconds must be >= 0, not ", o.warmup_seconds));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- ZeroMQ

#if SLUICE_HAVE_ZMQ

// How often a blocked ZeroMQ call returns (EAGAIN), so that the caller can look at its stop flag
// or at whether its peer is still there.
constexpr int kZmqSliceMs = 100;
// The memory one side's queue may hold: see HighWaterMark.
constexpr uint64_t kZmqQueueBytes = uint64_t{64} << 20;

// ZeroMQ queues up to the high-water mark of messages on each side of a connection. Its default,
// 1000, is what an unconfigured pair runs with, so the figure is comparable with the ones ZeroMQ
// users quote; it is lowered for messages above 64 KiB so that a queue stays within about 64 MiB
// (or two messages, for the largest).
int HighWaterMark(size_t message_size) {
  const uint64_t fit = kZmqQueueBytes / std::max<uint64_t>(message_size, 1);
  return static_cast<int>(std::clamp<uint64_t>(fit, 2, 1000));
}

int64_t ToNanos(double seconds) { return static_cast<int64_t>(seconds * 1e9); }

absl::Status ZmqError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", zmq_strerror(zmq_errno())));
}

std::string ZmqVersion() {
  int major = 0;
  int minor = 0;
  int patch = 0;
  zmq_version(&major, &minor, &patch);
  return absl::StrCat(major, ".", minor, ".", patch);
}

// A context with one socket. The socket has LINGER 0: closing it drops what is still queued
// (a benchmark has no use for it), so that ending the context never waits for a peer.
class ZmqSocket {
 public:
  // A socket of `type` with the high-water marks for `message_size`-byte messages.
  static absl::StatusOr<std::unique_ptr<ZmqSocket>> Open(int type, size_t message_size) {
    std::unique_ptr<ZmqSocket> s(new ZmqSocket);
    s->context_ = zmq_ctx_new();
    if (s->context_ == nullptr) return ZmqError("zmq_ctx_new");
    s->socket_ = zmq_socket(s->context_, type);
    if (s->socket_ == nullptr) return ZmqError("zmq_socket");
    const int hwm = HighWaterMark(message_size);
    SLUICE_RETURN_IF_ERROR(s->SetInt(ZMQ_LINGER, 0, "ZMQ_LINGER"));
    SLUICE_RETURN_IF_ERROR(s->SetInt(ZMQ_SNDHWM, hwm, "ZMQ_SNDHWM"));
    SLUICE_RETURN_IF_ERROR(s->SetInt(ZMQ_RCVHWM, hwm, "ZMQ_RCVHWM"));
    SLUICE_RETURN_IF_ERROR(s->SetInt(ZMQ_SNDTIMEO, kZmqSliceMs, "ZMQ_SNDTIMEO"));
    SLUICE_RETURN_IF_ERROR(s->SetInt(ZMQ_RCVTIMEO, kZmqSliceMs, "ZMQ_RCVTIMEO"));
    return s;
  }

  ~ZmqSocket() {
    if (socket_ != nullptr) zmq_close(socket_);
    if (context_ != nullptr) {
      while (zmq_ctx_term(context_) != 0 && zmq_errno() == EINTR) {
      }
    }
  }
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;

  void* get() const { return socket_; }

  absl::Status SetInt(int option, int value, absl::string_view name) {
    if (zmq_setsockopt(socket_, option, &value, sizeof(value)) != 0) {
      return ZmqError(absl::StrCat("zmq_setsockopt(", name, ")"));
    }
    return absl::OkStatus();
  }

  // Binds to a free port on loopback; returns the endpoint to connect to.
  absl::StatusOr<std::string> Bind() {
    if (zmq_bind(socket_, "tcp://127.0.0.1:*") != 0) return ZmqError("zmq_bind tcp://127.0.0.1:*");
    char endpoint[256];
    size_t size = sizeof(endpoint);
    if (zmq_getsockopt(socket_, ZMQ_LAST_ENDPOINT, endpoint, &size) != 0) {
      return ZmqError("zmq_getsockopt(ZMQ_LAST_ENDPOINT)");
    }
    return std::string(endpoint);  // NUL-terminated by ZeroMQ
  }

  absl::Status Connect(const std::string& endpoint) {
    if (zmq_connect(socket_, endpoint.c_str()) != 0) {
      return ZmqError(absl::StrCat("zmq_connect ", endpoint));
    }
    return absl::OkStatus();
  }

 private:
  ZmqSocket() = default;
  void* context_ = nullptr;
  void* socket_ = nullptr;
};

// ------------------------------------------------ the peer (child)

// The parent's lines, read on a thread of their own so that the peer's send and receive loops
// look at two flags rather than polling stdin around every message. The flags are shared with
// the thread: a peer that fails returns without waiting for the end of its input.
class ParentLines {
 public:
  ParentLines() : state_(std::make_shared<State>()) {
    std::thread([state = state_] {
      char line[64];
      while (std::fgets(line, sizeof(line), stdin) != nullptr) {
        if (absl::StripTrailingAsciiWhitespace(line) == "STOP") state->stop.store(true);
      }
      state->ended.store(true);
      state->stop.store(true);
    }).detach();
  }

  // STOP came, or the input ended.
  bool stopped() const { return state_->stop.load(std::memory_order_relaxed); }
  bool ended() const { return state_->ended.load(std::memory_order_relaxed); }

  void WaitForEnd() const {
    while (!ended()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

 private:
  struct State {
    std::atomic<bool> stop{false};
    std::atomic<bool> ended{false};
  };
  std::shared_ptr<State> state_;
};

absl::Status ServePush(size_t size) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<ZmqSocket> socket, ZmqSocket::Open(ZMQ_PUSH, size));
  SLUICE_ASSIGN_OR_RETURN(const std::string endpoint, socket->Bind());
  const ParentLines parent;
  PrintToParent(absl::StrCat("ADDR ", endpoint));

  std::vector<char> message(std::max<size_t>(size, 1));
  const size_t counter_bytes = std::min<size_t>(size, 8);
  uint64_t sent = 0;
  while (!parent.stopped()) {
    std::memcpy(message.data(), &sent, counter_bytes);
    if (zmq_send(socket->get(), message.data(), size, 0) >= 0) {
      ++sent;
      continue;
    }
    // EAGAIN: the queue stayed full (or nobody connected) for a slice; look at the flag again.
    if (zmq_errno() != EAGAIN && zmq_errno() != EINTR) return ZmqError("zmq_send");
  }
  if (parent.ended()) return absl::CancelledError("the measuring process went away");
  PrintToParent(absl::StrCat("SENT ", sent));
  parent.WaitForEnd();
  return absl::OkStatus();
}

absl::Status ServeRep(size_t size) {
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<ZmqSocket> socket, ZmqSocket::Open(ZMQ_REP, size));
  SLUICE_ASSIGN_OR_RETURN(const std::string endpoint, socket->Bind());
  const ParentLines parent;
  PrintToParent(absl::StrCat("ADDR ", endpoint));

  std::vector<char> message(std::max<size_t>(size, 1));
  while (!parent.ended()) {
    const int n = zmq_recv(socket->get(), message.data(), size, 0);
    if (n < 0) {
      if (zmq_errno() == EAGAIN || zmq_errno() == EINTR) continue;
      return ZmqError("zmq_recv");
    }
    if (static_cast<size_t>(n) != size) {
      return absl::DataLossError(absl::StrCat("a request of ", n, " bytes; expected ", size));
    }
    // REP's reply goes into a queue that is empty (one request at a time), so it does not wait.
    if (zmq_send(socket->get(), message.data(), size, 0) < 0) return ZmqError("zmq_send");
  }
  return absl::OkStatus();
}

// ------------------------------------------------ the measuring side (parent)

struct ZmqPeer {
  std::unique_ptr<PeerProcess> process;
  std::string endpoint;
};

// Starts `sluice zmq-peer` and waits for its endpoint.
absl::StatusOr<ZmqPeer> StartZmqPeer(const std::string& mode, size_t size) {
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<PeerProcess> process,
      PeerProcess::Spawn(absl::StrCat("the zmq peer (", mode, ")"),
                         {"zmq-peer", "--mode", mode, "--size", absl::StrCat(size)}));
  SLUICE_ASSIGN_OR_RETURN(std::string endpoint, process->ReadTagged("ADDR", kStartTimeout));
  return ZmqPeer{std::move(process), std::move(endpoint)};
}

// A zmq-peer in `mode` and a socket of `type` here connected to it, for `options`' messages.
struct ZmqSession {
  ZmqPeer peer;
  std::unique_ptr<ZmqSocket> socket;
};
absl::StatusOr<ZmqSession> StartZmqSession(const PeerBenchOptions& options, const std::string& mode,
                                           int type) {
  SLUICE_RETURN_IF_ERROR(ValidateOptions(options));
  const size_t size = options.message_size;
  if (size > kMaxZmqMessage) {
    return absl::InvalidArgumentError(absl::StrCat("ZeroMQ messages of ", FormatBytes(size),
                                                   ": at most ", FormatBytes(kMaxZmqMessage)));
  }
  ZmqSession session;
  SLUICE_ASSIGN_OR_RETURN(session.peer, StartZmqPeer(mode, size));
  SLUICE_ASSIGN_OR_RETURN(session.socket, ZmqSocket::Open(type, size));
  SLUICE_RETURN_IF_ERROR(session.socket->Connect(session.peer.endpoint));
  return session;
}

// For a parent whose send or receive has waited a slice: the peer prints nothing while it
// serves, so a line, or the end of its output (it exited), means it failed.
absl::Status CheckPeer(PeerProcess& peer) {
  absl::StatusOr<std::string> line = peer.ReadLine(absl::ZeroDuration());
  if (absl::IsDeadlineExceeded(line.status())) return absl::OkStatus();
  if (absl::IsUnavailable(line.status())) {
    const absl::Status exited = peer.Wait(absl::Seconds(5));
    return absl::UnavailableError(absl::StrCat(peer.name(), " exited during the measurement (",
                                               exited.ok() ? "status 0" : exited.message(), ")"));
  }
  if (!line.ok()) return line.status();
  return absl::DataLossError(
      absl::StrCat(peer.name(), " printed '", line->substr(0, 200), "' while serving"));
}

// Sends or receives one message (`send`), waiting in slices so that a peer that exited, or
// nothing moving for kStallTimeout, ends the wait. Returns the size of the message received.
absl::StatusOr<size_t> Transfer(bool send, void* socket, char* data, size_t size,
                                PeerProcess& peer) {
  int64_t deadline = 0;  // set on the first slice that passes, off the fast path
  while (true) {
    const int n = send ? zmq_send(socket, data, size, 0) : zmq_recv(socket, data, size, 0);
    if (n >= 0) return static_cast<size_t>(n);
    const int err = zmq_errno();
    if (err == EINTR) continue;
    if (err != EAGAIN) {
      return absl::InternalError(
          absl::StrCat(send ? "zmq_send" : "zmq_recv", ": ", zmq_strerror(err)));
    }
    SLUICE_RETURN_IF_ERROR(CheckPeer(peer));
    const int64_t now = MonotonicNanos();
    if (deadline == 0) deadline = now + absl::ToInt64Nanoseconds(kStallTimeout);
    if (now > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(send ? "could not send to " : "nothing received from ", peer.name(),
                       " within ", absl::FormatDuration(kStallTimeout)));
    }
  }
}

// Closes the peer's input (it exits then) and waits for it.
absl::Status FinishPeer(PeerProcess& peer) {
  peer.CloseStdin();
  return peer.Wait(kExitTimeout);
}

absl::StatusOr<uint64_t> ReadSentLine(PeerProcess& peer) {
  absl::StatusOr<std::string> line = peer.ReadLine(kStallTimeout);
  if (absl::IsUnavailable(line.status())) {
    const absl::Status exited = peer.Wait(absl::Seconds(5));
    return absl::UnavailableError(absl::StrCat(peer.name(), " exited before it reported (",
                                               exited.ok() ? "status 0" : exited.message(), ")"));
  }
  if (!line.ok()) return line.status();
  uint64_t sent = 0;
  if (!absl::StartsWith(*line, "SENT ") || !absl::SimpleAtoi(line->substr(5), &sent)) {
    return absl::DataLossError(absl::StrCat(peer.name(), " printed '", line->substr(0, 200),
                                            "' instead of 'SENT <messages>'"));
  }
  return sent;
}

#else  // !SLUICE_HAVE_ZMQ

absl::Status NoZeroMq() {
  return absl::UnimplementedError(
      "this sluice was built without ZeroMQ (install libzmq3-dev and reconfigure)");
}

#endif  // SLUICE_HAVE_ZMQ

// ---------------------------------------------------------------- external tools

absl::Status NotInstalled(absl::string_view program) {
  return absl::NotFoundError(absl::StrCat(program,
                                          " is not installed (not found on PATH; on "
                                          "Debian: apt-get install ",
                                          program, ")"));
}

// Waits until something accepts connections on 127.0.0.1:`port`, or `server` exits.
absl::Status WaitUntilListening(ToolProcess& server, uint16_t port) {
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (true) {
    if (server.Exited()) {
      return absl::UnavailableError(
          absl::StrCat(server.name(), " ", server.DescribeExit(),
                       " before it listened: ", OutputGist(StripEscapes(server.Output()))));
    }
    // The probe connection is accepted and closed: sockperf's server serves on regardless.
    if (RawSocket::Connect(port, absl::ZeroDuration()).ok()) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(server.name(), " did not listen on port ",
                                                      port, " within ",
                                                      absl::FormatDuration(kStartTimeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// ------------------------------------------------ sockperf

// sockperf refuses messages below 14 bytes (its header) and above 65507 (a UDP datagram's
// payload, its limit over TCP too).
constexpr size_t kSockperfMinMessage = 14;
constexpr size_t kSockperfMaxMessage = 65507;
// sockperf discards its first 400 ms (its warm-up) and its last 50 ms of -t.
constexpr double kSockperfDiscardedSeconds = 0.45;

}  // namespace

bool ToolInstalled(const std::string& name) { return FindOnPath(name).has_value(); }

bool ZeroMqAvailable() { return SLUICE_HAVE_ZMQ != 0; }

absl::StatusOr<BenchEntry> RunZeroMqPushPull(const PeerBenchOptions& options) {
#if !SLUICE_HAVE_ZMQ
  (void)options;
  return NoZeroMq();
#else
  SLUICE_ASSIGN_OR_RETURN(ZmqSession session, StartZmqSession(options, "push", ZMQ_PULL));
  const size_t size = options.message_size;
  ZmqPeer& peer = session.peer;
  std::unique_ptr<ZmqSocket>& socket = session.socket;

  // The clock is read every few messages: per message it would cost a good part of what a small
  // message does. Every 64 small ones, or as often as 64 KiB have come.
  const uint64_t check_every = std::clamp<uint64_t>((64 << 10) / std::max<size_t>(size, 1), 1, 64);
  const size_t counter_bytes = std::min<size_t>(size, 8);
  const uint64_t counter_mask =
      counter_bytes == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * counter_bytes)) - 1;
  std::vector<char> message(std::max<size_t>(size, 1));
  uint64_t received = 0;
  uint64_t counted = 0;  // in the measured phase
  int64_t warmup_end = 0;
  int64_t measure_start = 0;
  int64_t measure_end = 0;
  while (true) {
    SLUICE_ASSIGN_OR_RETURN(const size_t n,
                            Transfer(false, socket->get(), message.data(), size, *peer.process));
    if (n != size) {
      return absl::DataLossError(absl::StrCat("ZeroMQ message ", received, " from ",
                                              peer.process->name(), " has ", n, " bytes; expected ",
                                              size));
    }
    // One PUSH to one PULL over one TCP connection delivers every message, in order.
    uint64_t counter = 0;
    std::memcpy(&counter, message.data(), counter_bytes);
    if (counter != (received & counter_mask)) {
      return absl::DataLossError(absl::StrCat("ZeroMQ message ", received, " from ",
                                              peer.process->name(), " carries number ", counter,
                                              " (lost, repeated or reordered messages)"));
    }
    ++received;
    ++counted;
    if (received % check_every != 0 && received != 1) continue;
    const int64_t now = MonotonicNanos();
    if (received == 1) warmup_end = now + ToNanos(options.warmup_seconds);
    if (measure_start == 0) {
      if (now >= warmup_end) {
        measure_start = now;
        counted = 0;  // those so far came before the measured phase
      }
    } else if (now >= measure_start + ToNanos(options.seconds)) {
      measure_end = now;
      break;
    }
  }

  SLUICE_RETURN_IF_ERROR(peer.process->WriteLine("STOP"));
  SLUICE_ASSIGN_OR_RETURN(const uint64_t sent, ReadSentLine(*peer.process));
  if (sent < received) {
    return absl::DataLossError(
        absl::StrCat(peer.process->name(), " sent ", sent, " messages, but ", received, " came"));
  }
  socket.reset();
  SLUICE_RETURN_IF_ERROR(FinishPeer(*peer.process));

  const double nanos = static_cast<double>(measure_end - measure_start);
  BenchEntry e;
  e.name = "zeromq push/pull";
  e.records_per_ms = static_cast<double>(counted) * 1e6 / nanos;
  e.gbytes_per_s = static_cast<double>(counted) * static_cast<double>(size) / nanos;  // B/ns
  e.extra.emplace_back("message_size", absl::StrCat(size));
  e.extra.emplace_back("high_water_mark", absl::StrCat(HighWaterMark(size)));
  e.extra.emplace_back("zeromq_version", JsonString(ZmqVersion()));
  return e;
#endif
}

absl::StatusOr<BenchEntry> RunZeroMqPingPong(const PeerBenchOptions& options) {
#if !SLUICE_HAVE_ZMQ
  (void)options;
  return NoZeroMq();
#else
  SLUICE_ASSIGN_OR_RETURN(ZmqSession session, StartZmqSession(options, "rep", ZMQ_REQ));
  const size_t size = options.message_size;
  ZmqPeer& peer = session.peer;
  std::unique_ptr<ZmqSocket>& socket = session.socket;

  // A request carries its send time, so that the echo proves it is the reply to this request.
  const size_t stamp_bytes = std::min<size_t>(size, 8);
  std::vector<char> request(std::max<size_t>(size, 1));
  std::vector<char> reply(std::max<size_t>(size, 1));
  Histogram rtt;  // nanoseconds
  const int64_t warmup_end = MonotonicNanos() + ToNanos(options.warmup_seconds);
  const int64_t measure_end = warmup_end + ToNanos(options.seconds);
  while (true) {
    const int64_t sent_at = MonotonicNanos();
    if (sent_at >= measure_end) break;
    std::memcpy(request.data(), &sent_at, stamp_bytes);
    SLUICE_RETURN_IF_ERROR(
        Transfer(true, socket->get(), request.data(), size, *peer.process).status());
    SLUICE_ASSIGN_OR_RETURN(const size_t n,
                            Transfer(false, socket->get(), reply.data(), size, *peer.process));
    const int64_t now = MonotonicNanos();
    if (n != size || std::memcmp(reply.data(), request.data(), size) != 0) {
      return absl::DataLossError(absl::StrCat(peer.process->name(), " replied with ", n,
                                              " bytes that are not the ", size, "-byte request"));
    }
    if (sent_at >= warmup_end) rtt.Record(static_cast<uint64_t>(now - sent_at));
  }
  socket.reset();
  SLUICE_RETURN_IF_ERROR(FinishPeer(*peer.process));
  if (rtt.count() == 0) {
    return absl::InternalError("no round trip began in the measured phase");
  }

  BenchEntry e;
  e.name = "zeromq req/rep";
  e.latency_kind = "round trip";
  e.SetLatency(rtt);
  e.extra.emplace_back("message_size", absl::StrCat(size));
  e.extra.emplace_back("zeromq_version", JsonString(ZmqVersion()));
  return e;
#endif
}

absl::StatusOr<BenchEntry> RunSockperfPingPong(const PeerBenchOptions& options) {
  SLUICE_RETURN_IF_ERROR(ValidateOptions(options));
  const std::optional<std::string> sockperf = FindOnPath("sockperf");
  if (!sockperf.has_value()) return NotInstalled("sockperf");
  const size_t size = std::max(options.message_size, kSockperfMinMessage);
  if (size > kSockperfMaxMessage) {
    return absl::InvalidArgumentError(absl::StrCat("sockperf takes messages of at most ",
                                                   kSockperfMaxMessage, " bytes, not ", size));
  }
  SLUICE_ASSIGN_OR_RETURN(const uint16_t port, FreeLoopbackPort());
  const std::string port_text = absl::StrCat(port);
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<ToolProcess> server,
      ToolProcess::Start("sockperf server", *sockperf,
                         {"server", "--tcp", "-i", "127.0.0.1", "-p", port_text}));
  SLUICE_RETURN_IF_ERROR(WaitUntilListening(*server, port));

  // sockperf warms up by itself (400 ms, not adjustable) and takes whole seconds: enough of them
  // that what it keeps lasts at least `seconds`.
  const int64_t seconds = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(options.seconds + kSockperfDiscardedSeconds)));
  // --full-rtt: round trips, like our ping-pong; without it sockperf halves them.
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<ToolProcess> client,
      ToolProcess::Start("sockperf ping-pong", *sockperf,
                         {"ping-pong", "--tcp", "-i", "127.0.0.1", "-p", port_text, "-t",
                          absl::StrCat(seconds), "-m", absl::StrCat(size), "--full-rtt"}));
  SLUICE_RETURN_IF_ERROR(client->Wait(absl::Seconds(seconds) + kStallTimeout));
  server->Kill();

  // sockperf exits with status 0 even when it could not connect: its report says how it went.
  const absl::StatusOr<SockperfReport> report = ParseSockperfOutput(client->Output());
  if (!report.ok()) {
    return absl::InternalError(absl::StrCat("sockperf ping-pong (", client->DescribeExit(),
                                            "): ", report.status().message()));
  }

  BenchEntry e;
  e.name = "sockperf";
  e.latency = LatencySummary{.samples = report->observations,
                             .p50_us = report->p50_us,
                             .p90_us = report->p90_us,
                             .p99_us = report->p99_us,
                             .p999_us = report->p999_us,
                             .max_us = report->max_us};
  if (report->round_trip) {
    e.latency_kind = "round trip";
  } else {
    // An older sockperf that ignored --full-rtt: its figures are half round trips.
    for (double* v : {&e.latency->p50_us, &e.latency->p90_us, &e.latency->p99_us,
                      &e.latency->p999_us, &e.latency->max_us}) {
      *v *= 2;
    }
    e.latency_kind = "round trip (sockperf's one-way figures doubled)";
  }
  e.extra.emplace_back("message_size", absl::StrCat(size));
  e.extra.emplace_back("measured_seconds", absl::StrCat(report->measured_seconds));
  if (!report->version.empty()) {
    e.extra.emplace_back("sockperf_version", JsonString(report->version));
  }
  return e;
}

absl::StatusOr<BenchEntry> RunIperf3(const PeerBenchOptions& options) {
  SLUICE_RETURN_IF_ERROR(ValidateOptions(options));
  const std::optional<std::string> iperf3 = FindOnPath("iperf3");
  if (!iperf3.has_value()) return NotInstalled("iperf3");
  SLUICE_ASSIGN_OR_RETURN(const uint16_t port, FreeLoopbackPort());
  const std::string port_text = absl::StrCat(port);
  // -1: one test, then it exits. --forceflush: its "Server listening" line reaches the output
  // file at once, rather than at exit.
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<ToolProcess> server,
      ToolProcess::Start("iperf3 server", *iperf3,
                         {"-s", "-1", "-B", "127.0.0.1", "-p", port_text, "--forceflush"}));
  // A probe connection would be the server's one test, so its own word says it listens.
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (!absl::StrContains(server->Output(), "Server listening on")) {
    if (server->Exited()) {
      return absl::UnavailableError(
          absl::StrCat("iperf3 server ", server->DescribeExit(),
                       " before it listened: ", OutputGist(server->Output())));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("iperf3 server did not listen within ",
                                                      absl::FormatDuration(kStartTimeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  // iperf3 counts whole seconds; -O omits the warm-up's from its report.
  const int64_t seconds = std::max<int64_t>(1, std::llround(options.seconds));
  const int64_t omit = std::llround(options.warmup_seconds);
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<ToolProcess> client,
      ToolProcess::Start("iperf3 client", *iperf3,
                         {"-c", "127.0.0.1", "-p", port_text, "-t", absl::StrCat(seconds), "-O",
                          absl::StrCat(omit), "-J"}));
  SLUICE_RETURN_IF_ERROR(client->Wait(absl::Seconds(seconds + omit) + kStallTimeout));
  if (!server->Wait(absl::Seconds(5)).ok()) server->Kill();

  // iperf3 -J reports its failures in the JSON, and may exit with status 0 all the same.
  const absl::StatusOr<Iperf3Report> report = ParseIperf3Json(client->Output());
  if (absl::IsUnavailable(report.status())) {
    return absl::UnavailableError(absl::StrCat("iperf3 client: ", report.status().message()));
  }
  if (!report.ok()) {
    return absl::InternalError(
        absl::StrCat("iperf3 client (", client->DescribeExit(), "): ", report.status().message()));
  }

  BenchEntry e;
  e.name = "iperf3";
  e.gbytes_per_s = report->bits_per_second / 8 / 1e9;
  e.extra.emplace_back("measured_seconds", absl::StrCat(report->measured_seconds));
  e.extra.emplace_back("omitted_seconds", absl::StrCat(omit));
  if (report->block_size.has_value()) {
    e.extra.emplace_back("block_size", absl::StrCat(*report->block_size));
  }
  if (!report->version.empty()) {
    e.extra.emplace_back("iperf3_version", JsonString(report->version));
  }
  return e;
}

int RunZmqPeer(Args args) {
  std::string mode = "push";
  uint64_t size = 8;
  OptionParser parser(
      "sluice zmq-peer",
      "The other side of the ZeroMQ baselines of 'sluice bench', started by it: binds a PUSH or\n"
      "a REP socket on 127.0.0.1 and prints 'ADDR <endpoint>' on stdout. push: sends messages\n"
      "until it reads STOP on stdin, then prints 'SENT <messages>'. rep: echoes each request.\n"
      "Exits when stdin ends.");
  parser.AddChoice("--mode", {"push", "rep"}, "Send messages (push) or echo requests (rep)", &mode);
  parser.AddBytes("--size", "Bytes per message", 0, kMaxZmqMessage, &size);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
#if !SLUICE_HAVE_ZMQ
  absl::FPrintF(stderr, "sluice zmq-peer: %s\n", NoZeroMq().message());
  return kExitFailure;
#else
  const absl::Status s = mode == "push" ? ServePush(size) : ServeRep(size);
  // Cancelled: the parent gave up, and says why itself.
  if (!s.ok() && !absl::IsCancelled(s)) {
    absl::FPrintF(stderr, "sluice zmq-peer (%s): %s\n", mode, s.message());
  }
  return s.ok() ? kExitOk : kExitFailure;
#endif
}

}  // namespace sluice::tools
