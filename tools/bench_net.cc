#include "tools/bench_net.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/checksum.h"
#include "base/clock.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/sync.h"
#include "net/transport.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"

namespace sluice::tools {
namespace {

// Distinct payloads the stream cycles through, so that a lost, repeated or reordered frame
// changes the CRC.
constexpr size_t kPatterns = 8;
// How long the client waits for the peer to acknowledge, answer or close before giving up.
constexpr absl::Duration kReplyTimeout = absl::Seconds(30);

std::vector<std::string> MakePatterns(size_t frame_size) {
  std::vector<std::string> patterns(kPatterns, std::string(frame_size, '\0'));
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (std::string& p : patterns) {
    for (size_t i = 0; i < frame_size; i += 8) {
      // splitmix64
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::memcpy(p.data() + i, &z, std::min<size_t>(8, frame_size - i));
    }
  }
  return patterns;
}

// The CRC32C of a stream of `frames` frames totalling `bytes`: frame i carries pattern i % K,
// cut short for the last one.
uint32_t ExpectedCrc(const std::vector<std::string>& patterns, uint64_t frames, uint64_t bytes) {
  uint32_t crc = 0;
  for (uint64_t i = 0; i < frames; ++i) {
    const std::string& p = patterns[i % patterns.size()];
    const size_t len = static_cast<size_t>(std::min<uint64_t>(p.size(), bytes));
    crc = Crc32c(crc, p.data(), len);
    bytes -= len;
  }
  return crc;
}

struct StreamPlan {
  uint64_t window_frames;
  uint64_t ack_every;
};

absl::StatusOr<StreamPlan> PlanStream(const StreamOptions& o) {
  if (o.frame_size == 0 || o.frame_size > net::kDefaultMaxFrameSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame size %d must be between 1 and %d bytes", o.frame_size, net::kDefaultMaxFrameSize));
  }
  if (o.bytes == 0 && o.seconds <= 0) {
    return absl::InvalidArgumentError("a stream needs a byte count or a duration");
  }
  StreamPlan plan;
  plan.window_frames = std::max<uint64_t>(2, o.window_bytes / o.frame_size);
  plan.ack_every = std::max<uint64_t>(1, plan.window_frames / 4);
  return plan;
}

// Checks the peer's summary against what was sent.
absl::Status CheckSummary(const StreamSummary& got, uint64_t frames, uint64_t bytes,
                          const StreamOptions& o, const std::vector<std::string>& patterns) {
  if (got.frames != frames || got.bytes != bytes) {
    return absl::DataLossError(
        absl::StrFormat("sent %d frames / %d bytes, the peer received %d frames / %d bytes", frames,
                        bytes, got.frames, got.bytes));
  }
  if (got.out_of_order != 0) {
    return absl::DataLossError(
        absl::StrFormat("the peer saw %d data frames out of order", got.out_of_order));
  }
  if (o.verify) {
    const uint32_t want = ExpectedCrc(patterns, frames, bytes);
    if (got.crc != want) {
      return absl::DataLossError(
          absl::StrFormat("CRC32C mismatch over %d bytes: sent 0x%08x, the peer computed 0x%08x",
                          bytes, want, got.crc));
    }
  }
  return absl::OkStatus();
}

void FillPing(char* p, size_t size, uint64_t seq, int64_t now) {
  std::memcpy(p, &seq, 8);
  std::memcpy(p + 8, &now, 8);
  if (size > kPingHeaderSize) std::memset(p + kPingHeaderSize, 0x5A, size - kPingHeaderSize);
}

// Parses an echoed ping: its sequence and send time.
absl::Status ParsePing(std::string_view payload, size_t want_size, uint64_t want_seq,
                       int64_t* sent_at) {
  if (payload.size() != want_size) {
    return absl::DataLossError(
        absl::StrFormat("echo of %d bytes, sent %d", payload.size(), want_size));
  }
  uint64_t seq;
  std::memcpy(&seq, payload.data(), 8);
  std::memcpy(sent_at, payload.data() + 8, 8);
  if (seq != want_seq) {
    return absl::DataLossError(absl::StrFormat("echo of ping %d, expected %d", seq, want_seq));
  }
  return absl::OkStatus();
}

absl::Status ValidatePing(const PingOptions& o) {
  if (o.payload_size < kPingHeaderSize || o.payload_size > net::kDefaultMaxFrameSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ping payload of %d bytes must be between %d and %d", o.payload_size,
                        kPingHeaderSize, net::kDefaultMaxFrameSize));
  }
  if (o.count == 0 && o.seconds <= 0) {
    return absl::InvalidArgumentError("a ping-pong needs a count or a duration");
  }
  return absl::OkStatus();
}

net::FrameHeader Header(BenchFrame type, uint32_t sequence = 0, uint16_t flags = 0) {
  net::FrameHeader h;
  h.type = FrameTypeOf(type);
  h.sequence = sequence;
  h.flags = flags;
  return h;
}

// ---------------------------------------------------------------------------------------------
// Client over a Transport.

// The state a ping-pong run shares between the caller and the I/O thread. Between Start and
// `done`, only the I/O thread touches it.
struct PingRun {
  PingOptions options;
  uint64_t next = 0;  // sequence of the ping in flight
  int64_t start_ns = 0;
  int64_t deadline_ns = std::numeric_limits<int64_t>::max();
  int64_t end_ns = 0;
  Histogram rtt;
  absl::Status error;
  bool finished = false;
  Notification done;
  void Finish(absl::Status s) {
    if (finished) return;
    finished = true;
    error = std::move(s);
    end_ns = MonotonicNanos();
    done.Notify();
  }
};

class ClientHandler final : public net::ConnectionHandler {
 public:
  explicit ClientHandler(BufferPool* pool) : pool_(pool) {}

  void OnFrame(net::Connection& connection, const net::FrameHeader& h, Buffer payload) override {
    switch (static_cast<BenchFrame>(h.type)) {
      case BenchFrame::kEcho:
        OnEcho(connection, payload);
        return;
      case BenchFrame::kAck: {
        MutexLock lock(&mu_);
        acked_.store(Widen(acked_.load(std::memory_order_relaxed), h.sequence),
                     std::memory_order_release);
        return;
      }
      case BenchFrame::kStreamResult: {
        MutexLock lock(&mu_);
        summary_ = DecodeStreamSummary(payload.readable());
        return;
      }
      case BenchFrame::kStats: {
        MutexLock lock(&mu_);
        stats_ = DecodePeerStats(payload.readable());
        return;
      }
      default:
        connection.Abort(absl::InvalidArgumentError(
            absl::StrCat("unexpected frame type ", net::FrameTypeName(h.type))));
    }
  }

  void OnClosed(net::Connection&, const absl::Status& cause) override {
    {
      MutexLock lock(&mu_);
      closed_ = true;
      close_cause_ = cause;
    }
    if (std::shared_ptr<PingRun> run = CurrentPing()) {
      run->Finish(cause.ok() ? absl::UnavailableError("the peer closed during the ping-pong")
                             : cause);
    }
  }

  // ---- caller side ----
  void ResetStream() {
    MutexLock lock(&mu_);
    acked_.store(0, std::memory_order_relaxed);
    summary_.reset();
  }
  uint64_t acked() const { return acked_.load(std::memory_order_acquire); }

  // Waits until `at_least` data frames are acknowledged or the connection is gone.
  absl::Status WaitForAck(uint64_t at_least) {
    MutexLock lock(&mu_);
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return closed_ || acked_.load(std::memory_order_relaxed) >= at_least;
    };
    if (!mu_.AwaitWithTimeout(ready, kReplyTimeout)) {
      return absl::DeadlineExceededError(absl::StrCat("no acknowledgement from the peer for ",
                                                      absl::FormatDuration(kReplyTimeout)));
    }
    return ClosedErrorLocked();
  }

  absl::StatusOr<StreamSummary> WaitForSummary() {
    MutexLock lock(&mu_);
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_ || summary_.has_value(); };
    if (!mu_.AwaitWithTimeout(ready, kReplyTimeout)) {
      return absl::DeadlineExceededError("the peer did not report the stream's result");
    }
    if (summary_.has_value()) return *summary_;
    return ClosedErrorLocked();
  }

  absl::StatusOr<PeerStats> WaitForStats() {
    MutexLock lock(&mu_);
    auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_ || stats_.has_value(); };
    if (!mu_.AwaitWithTimeout(ready, kReplyTimeout)) {
      return absl::DeadlineExceededError("the peer did not report its stats");
    }
    if (stats_.has_value()) return *stats_;
    return ClosedErrorLocked();
  }

  absl::Status WaitForClose() {
    MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout([&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return closed_; },
                              kReplyTimeout)) {
      return absl::DeadlineExceededError("the connection did not close");
    }
    return close_cause_;
  }

  // Why the connection is unusable, or OK while it is open.
  absl::Status ClosedError() {
    MutexLock lock(&mu_);
    return ClosedErrorLocked();
  }

  // Runs a ping-pong: the first ping goes from here, the others from OnFrame.
  absl::StatusOr<PingResult> PingPong(net::Connection& connection, const PingOptions& options) {
    auto run = std::make_shared<PingRun>();
    run->options = options;
    {
      MutexLock lock(&ping_mu_);
      ping_ = run;
    }
    // The I/O thread touches `run` only once this ping's echo is back.
    absl::Status sent = SendPing(connection, *run, 0);
    const double expected = options.seconds + 1e-4 * static_cast<double>(options.count);
    const absl::Duration limit = kReplyTimeout + absl::Seconds(expected * 2);
    const bool finished = sent.ok() && run->done.WaitForNotificationWithTimeout(limit);
    {
      MutexLock lock(&ping_mu_);
      ping_.reset();  // the I/O thread may still hold `run`: it is shared
    }
    if (!sent.ok()) return sent;
    if (!finished) {
      return absl::DeadlineExceededError(
          absl::StrCat("ping-pong did not finish within ", absl::FormatDuration(limit)));
    }
    if (!run->error.ok()) return run->error;
    PingResult result;
    result.rtt_nanos = run->rtt;
    result.seconds = static_cast<double>(run->end_ns - run->start_ns) * 1e-9;
    return result;
  }

 private:
  // The acknowledged count from its low 32 bits on the wire.
  static uint64_t Widen(uint64_t previous, uint32_t low) {
    return previous + static_cast<uint32_t>(low - static_cast<uint32_t>(previous));
  }

  std::shared_ptr<PingRun> CurrentPing() {
    MutexLock lock(&ping_mu_);
    return ping_;
  }

  absl::Status ClosedErrorLocked() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    if (!closed_) return absl::OkStatus();
    if (close_cause_.ok()) return absl::UnavailableError("the peer closed the connection");
    return close_cause_;
  }

  absl::Status SendPing(net::Connection& connection, PingRun& run, uint64_t seq) {
    const size_t size = run.options.payload_size;
    Buffer b = size <= pool_->segment_size() ? pool_->TryRequest() : Buffer();
    if (!b.valid()) b = Buffer::AllocateUnpooled(size);
    const int64_t now = MonotonicNanos();
    FillPing(b.write_ptr(), size, seq, now);
    b.Commit(size);
    if (seq == run.options.warmup) {
      run.start_ns = now;
      if (run.options.count == 0) {
        run.deadline_ns = now + static_cast<int64_t>(run.options.seconds * 1e9);
      }
    }
    run.next = seq;
    return connection.Send(Header(BenchFrame::kEcho, static_cast<uint32_t>(seq)), std::move(b));
  }

  // On the I/O thread.
  void OnEcho(net::Connection& connection, const Buffer& payload) {
    const int64_t now = MonotonicNanos();
    std::shared_ptr<PingRun> run = CurrentPing();
    if (run == nullptr || run->finished) {
      connection.Abort(absl::InvalidArgumentError("an echo arrived outside a ping-pong"));
      return;
    }
    int64_t sent_at = 0;
    if (absl::Status s =
            ParsePing(payload.readable(), run->options.payload_size, run->next, &sent_at);
        !s.ok()) {
      run->Finish(s);
      return;
    }
    const PingOptions& o = run->options;
    const uint64_t seq = run->next;
    if (seq >= o.warmup) run->rtt.Record(static_cast<uint64_t>(now - sent_at));
    const bool more =
        o.count > 0 ? seq + 1 < o.warmup + o.count : seq < o.warmup || now < run->deadline_ns;
    if (!more) {
      run->Finish(absl::OkStatus());
      return;
    }
    if (absl::Status s = SendPing(connection, *run, seq + 1); !s.ok()) run->Finish(s);
  }

  BufferPool* const pool_;
  std::atomic<uint64_t> acked_{0};

  Mutex ping_mu_;
  std::shared_ptr<PingRun> ping_ ABSL_GUARDED_BY(ping_mu_);

  Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_cause_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::StatusOr<StreamSummary>> summary_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::StatusOr<PeerStats>> stats_ ABSL_GUARDED_BY(mu_);
};

class TransportClient final : public BenchClient {
 public:
  static absl::StatusOr<std::unique_ptr<BenchClient>> Connect(const ClientOptions& o) {
    auto client = std::unique_ptr<TransportClient>(new TransportClient());
    BufferPoolOptions pool_options;
    pool_options.num_segments = 1024;  // 32 MiB: the send window plus receive segments
    SLUICE_ASSIGN_OR_RETURN(client->pool_, BufferPool::Create(pool_options));
    net::TransportOptions t;
    t.pool = client->pool_.get();
    t.receive_max_segments = 256;
    t.name = "sluice-bench";
    t.zero_copy_threshold = o.zero_copy_threshold;
    SLUICE_ASSIGN_OR_RETURN(client->transport_, net::Transport::Create(o.transport, t));
    client->handler_ = std::make_shared<ClientHandler>(client->pool_.get());
    net::ConnectOptions c;
    c.port = o.port;
    SLUICE_ASSIGN_OR_RETURN(client->connection_, client->transport_->Connect(c, client->handler_));
    return client;
  }

  std::string name() const override { return std::string(transport_->name()); }

  absl::StatusOr<StreamResult> Stream(const StreamOptions& o) override {
    SLUICE_ASSIGN_OR_RETURN(StreamPlan plan, PlanStream(o));
    const std::vector<std::string> patterns = MakePatterns(o.frame_size);
    std::vector<Buffer> payloads;
    for (const std::string& p : patterns) {
      Buffer b = o.frame_size <= pool_->segment_size() ? pool_->TryRequest() : Buffer();
      if (!b.valid()) b = Buffer::AllocateUnpooled(o.frame_size);
      b.Append(p);
      payloads.push_back(std::move(b));
    }
    handler_->ResetStream();
    SLUICE_RETURN_IF_ERROR(
        Send(Header(BenchFrame::kStreamBegin, static_cast<uint32_t>(plan.ack_every),
                    o.verify ? kVerifyFlag : 0),
             Buffer()));
    const int64_t start = MonotonicNanos();
    const int64_t deadline = start + static_cast<int64_t>(o.seconds * 1e9);
    uint64_t frames = 0;
    uint64_t bytes = 0;
    uint64_t acked = 0;
    while (true) {
      size_t len = o.frame_size;
      if (o.bytes > 0) {
        if (bytes >= o.bytes) break;
        len = static_cast<size_t>(std::min<uint64_t>(len, o.bytes - bytes));
      } else if (MonotonicNanos() >= deadline) {
        break;
      }
      if (frames >= acked + plan.window_frames) {
        acked = handler_->acked();
        if (frames >= acked + plan.window_frames) {
          SLUICE_RETURN_IF_ERROR(handler_->WaitForAck(frames - plan.window_frames + 1));
          acked = handler_->acked();
        }
      }
      SLUICE_RETURN_IF_ERROR(Send(Header(BenchFrame::kData, static_cast<uint32_t>(frames)),
                                  payloads[frames % payloads.size()].Slice(0, len)));
      ++frames;
      bytes += len;
    }
    SLUICE_RETURN_IF_ERROR(Send(Header(BenchFrame::kStreamEnd), Buffer()));
    SLUICE_ASSIGN_OR_RETURN(StreamSummary summary, handler_->WaitForSummary());
    const int64_t end = MonotonicNanos();
    payloads.clear();
    SLUICE_RETURN_IF_ERROR(CheckSummary(summary, frames, bytes, o, patterns));
    StreamResult r;
    r.bytes = bytes;
    r.frames = frames;
    r.seconds = static_cast<double>(end - start) * 1e-9;
    r.crc_checked = o.verify;
    return r;
  }

  absl::StatusOr<PingResult> PingPong(const PingOptions& o) override {
    SLUICE_RETURN_IF_ERROR(ValidatePing(o));
    return handler_->PingPong(*connection_, o);
  }

  absl::StatusOr<PeerStats> FetchPeerStats() override {
    SLUICE_RETURN_IF_ERROR(Send(Header(BenchFrame::kStatsRequest), Buffer()));
    return handler_->WaitForStats();
  }

  absl::Status Close() override {
    connection_->Close();
    return handler_->WaitForClose();
  }

 private:
  TransportClient() = default;

  // A failed Send names why the connection went, when it did.
  absl::Status Send(net::FrameHeader h, Buffer payload) {
    absl::Status s = connection_->Send(h, std::move(payload));
    if (s.ok()) return s;
    absl::Status cause = handler_->ClosedError();
    return cause.ok() ? s : cause;
  }

  // Destroyed in reverse: the connection and transport let go of their buffers before the pool.
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<net::Transport> transport_;
  std::shared_ptr<ClientHandler> handler_;
  std::shared_ptr<net::Connection> connection_;
};

// ---------------------------------------------------------------------------------------------
// Client over plain blocking sockets: the baseline.

class RawClient final : public BenchClient {
 public:
  static absl::StatusOr<std::unique_ptr<BenchClient>> Connect(uint16_t port) {
    SLUICE_ASSIGN_OR_RETURN(RawSocket s, RawSocket::Connect(port, absl::Seconds(10)));
    SLUICE_RETURN_IF_ERROR(s.SetReceiveTimeout(kReplyTimeout));
    return std::unique_ptr<BenchClient>(new RawClient(std::move(s)));
  }

  std::string name() const override { return std::string(kRawTcp); }

  absl::StatusOr<StreamResult> Stream(const StreamOptions& o) override {
    SLUICE_ASSIGN_OR_RETURN(StreamPlan plan, PlanStream(o));
    const std::vector<std::string> patterns = MakePatterns(o.frame_size);
    acked_ = 0;
    SLUICE_RETURN_IF_ERROR(
        socket_.WriteFrame(Header(BenchFrame::kStreamBegin, static_cast<uint32_t>(plan.ack_every),
                                  o.verify ? kVerifyFlag : 0),
                           {}));
    const int64_t start = MonotonicNanos();
    const int64_t deadline = start + static_cast<int64_t>(o.seconds * 1e9);
    uint64_t frames = 0;
    uint64_t bytes = 0;
    std::optional<StreamSummary> summary;
    while (true) {
      size_t len = o.frame_size;
      if (o.bytes > 0) {
        if (bytes >= o.bytes) break;
        len = static_cast<size_t>(std::min<uint64_t>(len, o.bytes - bytes));
      } else if (MonotonicNanos() >= deadline) {
        break;
      }
      while (frames >= acked_ + plan.window_frames) {
        SLUICE_RETURN_IF_ERROR(ReadReply(&summary, nullptr));
      }
      SLUICE_RETURN_IF_ERROR(
          socket_.WriteFrame(Header(BenchFrame::kData, static_cast<uint32_t>(frames)),
                             std::string_view(patterns[frames % patterns.size()]).substr(0, len)));
      ++frames;
      bytes += len;
    }
    SLUICE_RETURN_IF_ERROR(socket_.WriteFrame(Header(BenchFrame::kStreamEnd), {}));
    while (!summary.has_value()) SLUICE_RETURN_IF_ERROR(ReadReply(&summary, nullptr));
    const int64_t end = MonotonicNanos();
    SLUICE_RETURN_IF_ERROR(CheckSummary(*summary, frames, bytes, o, patterns));
    StreamResult r;
    r.bytes = bytes;
    r.frames = frames;
    r.seconds = static_cast<double>(end - start) * 1e-9;
    r.crc_checked = o.verify;
    return r;
  }

  absl::StatusOr<PingResult> PingPong(const PingOptions& o) override {
    SLUICE_RETURN_IF_ERROR(ValidatePing(o));
    std::string frame(net::kFrameHeaderSize + o.payload_size, '\0');
    std::string echo;
    PingResult result;
    int64_t start = 0;
    int64_t deadline = std::numeric_limits<int64_t>::max();
    for (uint64_t seq = 0;; ++seq) {
      const int64_t now = MonotonicNanos();
      if (seq == o.warmup) {
        start = now;
        if (o.count == 0) deadline = now + static_cast<int64_t>(o.seconds * 1e9);
      }
      net::FrameHeader h = Header(BenchFrame::kEcho, static_cast<uint32_t>(seq));
      h.length = static_cast<uint32_t>(o.payload_size);
      net::EncodeFrameHeader(h, frame.data());
      FillPing(frame.data() + net::kFrameHeaderSize, o.payload_size, seq, now);
      iovec iov{frame.data(), frame.size()};
      SLUICE_RETURN_IF_ERROR(socket_.WriteAll(&iov, 1));
      SLUICE_ASSIGN_OR_RETURN(net::FrameHeader reply, reader_.ReadHeader());
      if (reply.type != FrameTypeOf(BenchFrame::kEcho)) {
        return absl::DataLossError(
            absl::StrCat("expected an echo, got frame type ", net::FrameTypeName(reply.type)));
      }
      SLUICE_RETURN_IF_ERROR(reader_.ReadPayloadInto(reply.length, &echo));
      const int64_t back = MonotonicNanos();
      int64_t sent_at = 0;
      SLUICE_RETURN_IF_ERROR(ParsePing(echo, o.payload_size, seq, &sent_at));
      if (seq >= o.warmup) result.rtt_nanos.Record(static_cast<uint64_t>(back - sent_at));
      const bool more =
          o.count > 0 ? seq + 1 < o.warmup + o.count : seq < o.warmup || back < deadline;
      if (!more) {
        result.seconds = static_cast<double>(back - start) * 1e-9;
        return result;
      }
    }
  }

  absl::StatusOr<PeerStats> FetchPeerStats() override {
    SLUICE_RETURN_IF_ERROR(socket_.WriteFrame(Header(BenchFrame::kStatsRequest), {}));
    std::optional<PeerStats> stats;
    while (!stats.has_value()) SLUICE_RETURN_IF_ERROR(ReadReply(nullptr, &stats));
    return *stats;
  }

  absl::Status Close() override {
    // Half-close, then wait for the peer's end of stream: the peer saw a clean close.
    shutdown(socket_.fd(), SHUT_WR);
    absl::StatusOr<net::FrameHeader> h = reader_.ReadHeader();
    if (absl::IsOutOfRange(h.status())) return absl::OkStatus();
    if (!h.ok()) return h.status();
    return absl::DataLossError(
        absl::StrCat("unexpected frame type ", net::FrameTypeName(h->type), " at close"));
  }

 private:
  explicit RawClient(RawSocket s) : socket_(std::move(s)), reader_(socket_.fd()) {}

  // Reads one frame from the peer: an ack, a stream result or stats.
  absl::Status ReadReply(std::optional<StreamSummary>* summary, std::optional<PeerStats>* stats) {
    absl::StatusOr<net::FrameHeader> h = reader_.ReadHeader();
    if (absl::IsOutOfRange(h.status())) {
      return absl::UnavailableError("the peer closed the connection");
    }
    if (!h.ok()) return h.status();
    std::string payload;
    SLUICE_RETURN_IF_ERROR(reader_.ReadPayloadInto(h->length, &payload));
    switch (static_cast<BenchFrame>(h->type)) {
      case BenchFrame::kAck:
        acked_ += static_cast<uint32_t>(h->sequence - static_cast<uint32_t>(acked_));
        break;
      case BenchFrame::kStreamResult:
        if (summary == nullptr) break;
        { SLUICE_ASSIGN_OR_RETURN(*summary, DecodeStreamSummary(payload)); }
        break;
      case BenchFrame::kStats:
        if (stats == nullptr) break;
        { SLUICE_ASSIGN_OR_RETURN(*stats, DecodePeerStats(payload)); }
        break;
      default:
        return absl::DataLossError(
            absl::StrCat("unexpected frame type ", net::FrameTypeName(h->type)));
    }
    return absl::OkStatus();
  }

  RawSocket socket_;
  RawFrameReader reader_;
  uint64_t acked_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Peer side.

// What the peer keeps of the stream in progress.
struct SinkState {
  uint64_t ack_every = 1;
  bool verify = false;
  StreamSummary summary;
  int64_t first_ns = 0;

  void Begin(const net::FrameHeader& h) {
    ack_every = std::max<uint32_t>(1, h.sequence);
    verify = (h.flags & kVerifyFlag) != 0;
    summary = StreamSummary();
    first_ns = 0;
  }
  void Checksum(const char* p, size_t n) {
    if (verify) summary.crc = Crc32c(summary.crc, p, n);
  }
  // Counts a data frame of `n` payload bytes; true when it should be acknowledged.
  bool Count(const net::FrameHeader& h, size_t n) {
    if (first_ns == 0) first_ns = MonotonicNanos();
    if (h.sequence != static_cast<uint32_t>(summary.frames)) ++summary.out_of_order;
    ++summary.frames;
    summary.bytes += n;
    return summary.frames % ack_every == 0;
  }
  std::string End() {
    summary.receive_nanos = first_ns > 0 ? static_cast<uint64_t>(MonotonicNanos() - first_ns) : 0;
    return EncodeStreamSummary(summary);
  }
};

class PeerHandler final : public net::ConnectionHandler {
 public:
  PeerHandler(const net::Transport* transport, Notification* closed, absl::Status* cause)
      : transport_(transport), closed_(closed), cause_(cause) {}

  void OnFrame(net::Connection& c, const net::FrameHeader& h, Buffer payload) override {
    absl::Status s;
    switch (static_cast<BenchFrame>(h.type)) {
      case BenchFrame::kStreamBegin:
        sink_.Begin(h);
        break;
      case BenchFrame::kData:
        sink_.Checksum(payload.read_ptr(), payload.readable_bytes());
        if (sink_.Count(h, payload.readable_bytes())) {
          s = c.Send(Header(BenchFrame::kAck, static_cast<uint32_t>(sink_.summary.frames)),
                     Buffer());
        }
        break;
      case BenchFrame::kStreamEnd:
        s = c.Send(Header(BenchFrame::kStreamResult), Buffer::CopyOf(sink_.End()));
        break;
      case BenchFrame::kEcho:
        s = c.Send(h, std::move(payload));
        break;
      case BenchFrame::kStatsRequest: {
        const net::TransportStats& t = transport_->stats();
        PeerStats p;
        p.transport = std::string(transport_->name());
        p.bytes_received = t.bytes_received.load(std::memory_order_relaxed);
        p.bytes_copied = t.bytes_copied.load(std::memory_order_relaxed);
        p.frames_received = t.frames_received.load(std::memory_order_relaxed);
        p.bytes_sent = t.bytes_sent.load(std::memory_order_relaxed);
        p.frames_sent = t.frames_sent.load(std::memory_order_relaxed);
        p.zero_copy_sends = t.zero_copy_sends.load(std::memory_order_relaxed);
        s = c.Send(Header(BenchFrame::kStats), Buffer::CopyOf(EncodePeerStats(p)));
        break;
      }
      default:
        s = absl::InvalidArgumentError(
            absl::StrCat("unexpected frame type ", net::FrameTypeName(h.type)));
    }
    if (!s.ok()) c.Abort(s);
  }

  void OnClosed(net::Connection&, const absl::Status& cause) override {
    *cause_ = cause;
    closed_->Notify();
  }

 private:
  const net::Transport* const transport_;
  Notification* const closed_;
  absl::Status* const cause_;
  SinkState sink_;
};

absl::Status ServeTransport(std::string_view name, absl::AnyInvocable<void(uint16_t)> on_listening,
                            absl::Duration accept_timeout) {
  // Declared first so that they outlive the transport, whose I/O thread reports into them.
  Notification accepted;
  Notification closed;
  absl::Status cause;
  std::atomic<bool> taken{false};

  BufferPoolOptions pool_options;
  pool_options.num_segments = 2048;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<BufferPool> pool, BufferPool::Create(pool_options));
  net::TransportOptions t;
  t.pool = pool.get();
  t.name = "sluice-net-peer";
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<net::Transport> transport,
                          net::Transport::Create(name, t));
  const net::Transport* tp = transport.get();
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<net::Listener> listener,
      transport->Listen(
          "127.0.0.1", 0,
          [&](std::shared_ptr<net::Connection>) -> std::shared_ptr<net::ConnectionHandler> {
            if (taken.exchange(true)) return nullptr;  // one client only
            accepted.Notify();
            return std::make_shared<PeerHandler>(tp, &closed, &cause);
          }));
  SLUICE_LOG_DEBUG("net peer: {} transport listening on {}", transport->name(),
                   listener->address());
  on_listening(listener->port());
  if (!accepted.WaitForNotificationWithTimeout(accept_timeout)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no client within ", absl::FormatDuration(accept_timeout), " on ", listener->address()));
  }
  closed.WaitForNotification();
  return cause;
}

absl::Status ServeRaw(absl::AnyInvocable<void(uint16_t)> on_listening,
                      absl::Duration accept_timeout) {
  SLUICE_ASSIGN_OR_RETURN(RawListener listener, RawListener::Listen());
  on_listening(listener.port());
  SLUICE_ASSIGN_OR_RETURN(RawSocket socket, listener.Accept(accept_timeout));
  RawFrameReader reader(socket.fd());
  SinkState sink;
  std::string small;
  uint64_t bytes_sent = 0;
  uint64_t frames_sent = 0;
  auto reply = [&](net::FrameHeader h, std::string_view payload) {
    bytes_sent += net::kFrameHeaderSize + payload.size();
    ++frames_sent;
    return socket.WriteFrame(h, payload);
  };
  while (true) {
    absl::StatusOr<net::FrameHeader> h = reader.ReadHeader();
    if (absl::IsOutOfRange(h.status())) return absl::OkStatus();  // the client closed
    if (!h.ok()) return h.status();
    switch (static_cast<BenchFrame>(h->type)) {
      case BenchFrame::kStreamBegin:
        sink.Begin(*h);
        break;
      case BenchFrame::kData:
        SLUICE_RETURN_IF_ERROR(
            reader.ReadPayload(h->length, [&](const char* p, size_t n) { sink.Checksum(p, n); }));
        if (sink.Count(*h, h->length)) {
          SLUICE_RETURN_IF_ERROR(
              reply(Header(BenchFrame::kAck, static_cast<uint32_t>(sink.summary.frames)), {}));
        }
        break;
      case BenchFrame::kStreamEnd:
        SLUICE_RETURN_IF_ERROR(reply(Header(BenchFrame::kStreamResult), sink.End()));
        break;
      case BenchFrame::kEcho:
        SLUICE_RETURN_IF_ERROR(reader.ReadPayloadInto(h->length, &small));
        SLUICE_RETURN_IF_ERROR(reply(*h, small));
        break;
      case BenchFrame::kStatsRequest: {
        PeerStats p;
        p.transport = std::string(kRawTcp);
        p.bytes_received = reader.bytes_received();
        p.bytes_copied = reader.bytes_copied();
        p.frames_received = reader.frames_received();
        p.bytes_sent = bytes_sent;
        p.frames_sent = frames_sent;
        SLUICE_RETURN_IF_ERROR(reply(Header(BenchFrame::kStats), EncodePeerStats(p)));
        break;
      }
      default:
        return absl::DataLossError(
            absl::StrCat("unexpected frame type ", net::FrameTypeName(h->type)));
    }
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<BenchClient>> ConnectBenchClient(const ClientOptions& options) {
  if (options.transport == kRawTcp) return RawClient::Connect(options.port);
  return TransportClient::Connect(options);
}

absl::StatusOr<SessionResult> RunSession(const SessionOptions& options) {
  auto phase = [&](absl::string_view what, const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(options.transport, " ", what, ": ", s.message()));
  };
  absl::StatusOr<std::unique_ptr<PeerProcess>> peer = PeerProcess::StartNetPeer(
      options.peer_transport.empty() || options.transport == kRawTcp ? options.transport
                                                                     : options.peer_transport,
      absl::Seconds(15));
  if (!peer.ok()) return phase("peer", peer.status());
  ClientOptions c;
  c.transport = options.transport;
  c.port = (*peer)->port();
  c.zero_copy_threshold = options.zero_copy_threshold;
  absl::StatusOr<std::unique_ptr<BenchClient>> client = ConnectBenchClient(c);
  if (!client.ok()) return phase("connect", client.status());

  SessionResult r;
  r.transport = (*client)->name();
  if (options.stream.bytes > 0 || options.stream.seconds > 0) {
    absl::StatusOr<StreamResult> s = (*client)->Stream(options.stream);
    if (!s.ok()) return phase("stream", s.status());
    r.stream = *s;
  }
  if (options.ping.count > 0 || options.ping.seconds > 0) {
    absl::StatusOr<PingResult> p = (*client)->PingPong(options.ping);
    if (!p.ok()) return phase("ping-pong", p.status());
    r.ping = *p;
  }
  absl::StatusOr<PeerStats> stats = (*client)->FetchPeerStats();
  if (!stats.ok()) return phase("peer stats", stats.status());
  r.peer = *stats;
  if (absl::Status s = (*client)->Close(); !s.ok()) return phase("close", s);
  client->reset();
  if (absl::Status s = (*peer)->Wait(absl::Seconds(10)); !s.ok()) return phase("peer exit", s);
  return r;
}

absl::Status ServePeer(std::string_view transport, absl::AnyInvocable<void(uint16_t)> on_listening,
                       absl::Duration accept_timeout) {
  if (transport == kRawTcp) return ServeRaw(std::move(on_listening), accept_timeout);
  return ServeTransport(transport, std::move(on_listening), accept_timeout);
}

}  // namespace sluice::tools
