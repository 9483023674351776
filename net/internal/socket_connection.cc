#include "net/internal/socket_connection.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "net/internal/socket.h"

namespace sluice::net::internal {

SocketConnection::SocketConnection(int fd, std::string peer, LoopWaker* loop,
                                   LocalBufferPool* rx_pool, const TransportOptions& options,
                                   TransportStats* stats, bool handshaking)
    : fd_(fd),
      peer_(std::move(peer)),
      loop_(loop),
      options_(options),
      max_frame_size_(options.max_frame_size),
      stats_(stats),
      reader_(rx_pool, options.max_frame_size, stats),
      handshaking_(handshaking),
      handshake_deadline_(absl::Now() + options.handshake_timeout) {}

SocketConnection::~SocketConnection() = default;

OutFrame SocketConnection::MakeOutFrame(FrameHeader header, Buffer payload) {
  OutFrame f;
  header.length = static_cast<uint32_t>(payload.valid() ? payload.readable_bytes() : 0);
  EncodeFrameHeader(header, f.header);
  f.payload = std::move(payload);
  return f;
}

absl::Status SocketConnection::Send(FrameHeader header, Buffer payload) {
  // A connection may outlive its transport; then only closed_ and the queue are touched.
  const size_t len = payload.valid() ? payload.readable_bytes() : 0;
  if (len > max_frame_size_) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame of %d bytes exceeds the maximum frame size of %d bytes (option max_frame_size)", len,
        max_frame_size_));
  }
  // The loop is woken under mu_: FinishClose marks the connection closed under mu_ too, and the
  // transport (the waker) outlives every connection's FinishClose, so a connection that outlives
  // its transport never touches it.
  MutexLock lock(&mu_);
  if (closed_.load(std::memory_order_acquire) || close_requested_ || abort_.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("connection to ", peer_, " is closed"));
  }
  pending_.push_back(MakeOutFrame(header, std::move(payload)));
  WakeLocked();
  return absl::OkStatus();
}

void SocketConnection::WakeLocked() {
  if (!std::exchange(wake_pending_, true)) loop_->Wake(shared_from_this());
}

void SocketConnection::Close() {
  MutexLock lock(&mu_);
  if (closed_.load(std::memory_order_acquire)) return;
  close_requested_ = true;
  WakeLocked();
}

void SocketConnection::Abort(const absl::Status& cause) {
  MutexLock lock(&mu_);
  if (closed_.load(std::memory_order_acquire)) return;
  if (!abort_.has_value()) abort_ = cause;
  WakeLocked();
}

void SocketConnection::TakeRequests(Requests* out) {
  MutexLock lock(&mu_);
  wake_pending_ = false;
  while (!pending_.empty()) {
    out->frames.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  out->close = close_requested_;
  if (abort_.has_value()) out->abort = abort_;
}

void SocketConnection::QueueFromLoop(FrameHeader header, Buffer payload) {
  MutexLock lock(&mu_);
  pending_.push_back(MakeOutFrame(header, std::move(payload)));
  WakeLocked();
}

absl::Status SocketConnection::Dispatch(const FrameHeader& header, Buffer payload,
                                        const AcceptCallback* on_accept, bool* tell_peer) {
  *tell_peer = true;
  if (handshaking_) {
    if (header.type != static_cast<uint8_t>(FrameType::kHello)) {
      return absl::DataLossError(absl::StrCat("expected a hello frame first, got frame type ",
                                              FrameTypeName(header.type)));
    }
    std::string name;
    absl::Status s = CheckHello(payload, options_, &name);
    if (!s.ok()) {
      stats_->connections_refused.fetch_add(1, std::memory_order_relaxed);
      SLUICE_LOG_WARN("refused connection from {}: {}", peer_, s.message());
      return s;
    }
    peer_name_ = std::move(name);
    handshaking_ = false;
    FrameHeader ack;
    ack.type = static_cast<uint8_t>(FrameType::kHelloAck);
    QueueFromLoop(ack, BuildHelloAck(options_));
    stats_->connections_accepted.fetch_add(1, std::memory_order_relaxed);
    set_handler(on_accept != nullptr && *on_accept ? (*on_accept)(shared_from_this()) : nullptr);
    if (handler_ == nullptr) {
      return absl::UnavailableError("the server has no handler for this connection");
    }
    return absl::OkStatus();
  }
  if (header.type == static_cast<uint8_t>(FrameType::kError)) {
    // The peer tells why it is closing; report that as the cause.
    *tell_peer = false;
    return StatusFromErrorFrame(payload, peer_);
  }
  if (header.type == static_cast<uint8_t>(FrameType::kPing)) {
    FrameHeader pong = header;
    pong.type = static_cast<uint8_t>(FrameType::kPong);
    QueueFromLoop(pong, std::move(payload));
    return absl::OkStatus();
  }
  if (handler_ != nullptr) handler_->OnFrame(*this, header, std::move(payload));
  return absl::OkStatus();
}

void SocketConnection::FinishClose(const absl::Status& cause) {
  if (finished_) return;
  finished_ = true;
  reader_.Reset();
  reader_.set_buffer_source(nullptr);
  std::deque<OutFrame> dropped;
  {
    MutexLock lock(&mu_);
    closed_.store(true, std::memory_order_release);
    dropped.swap(pending_);
  }
  dropped.clear();  // releases queued payloads, outside the lock
  if (handler_ != nullptr) {
    std::shared_ptr<ConnectionHandler> h = std::move(handler_);
    h->OnClosed(*this, cause);
  }
}

}  // namespace sluice::net::internal
