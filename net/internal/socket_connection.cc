#include "net/internal/socket_connection.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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
      handshake_deadline_(absl::Now() + options.handshake_timeout),
      direct_send_limit_(options.zero_copy_threshold > 0
                             ? std::min(options.direct_send_limit, options.zero_copy_threshold)
                             : options.direct_send_limit) {}

SocketConnection::~SocketConnection() = default;

OutFrame SocketConnection::MakeOutFrame(FrameHeader header, Buffer payload) {
  OutFrame f;
  header.length = static_cast<uint32_t>(payload.valid() ? payload.readable_bytes() : 0);
  EncodeFrameHeader(header, f.header);
  f.payload = std::move(payload);
  return f;
}

absl::Status SocketConnection::Send(FrameHeader header, Buffer payload) {
  return Queue(header, std::move(payload), /*direct=*/false);
}

absl::Status SocketConnection::SendDirect(FrameHeader header, Buffer payload) {
  return Queue(header, std::move(payload), /*direct=*/true);
}

absl::Status SocketConnection::Queue(FrameHeader header, Buffer payload, bool direct) {
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
  OutFrame frame = MakeOutFrame(header, std::move(payload));
  // Straight to the socket when the loop has nothing of ours: the fd stays open meanwhile, as
  // FinishClose marks the connection closed under mu_ before the loop closes it.
  if (direct && direct_ok_ && pending_.empty() && frame.size() <= direct_send_limit_ &&
      TryDirectSend(frame)) {
    return absl::OkStatus();
  }
  pending_.push_back(std::move(frame));
  WakeLocked();
  return absl::OkStatus();
}

bool SocketConnection::TryDirectSend(OutFrame& frame) {
  iovec iov[2] = {{frame.header, kFrameHeaderSize}, {nullptr, 0}};
  int n = 1;
  if (frame.payload.valid() && frame.payload.readable_bytes() > 0) {
    iov[n++] = {const_cast<char*>(frame.payload.read_ptr()), frame.payload.readable_bytes()};
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<size_t>(n);
  ssize_t w;
  do {
    w = sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (w < 0 && errno == EINTR);
  // Whatever happens next the loop must see it first (a full socket, an error): no more
  // direct sends until it has caught up.
  if (w <= 0) {
    direct_ok_ = false;
    return false;
  }
  stats_->bytes_sent.fetch_add(static_cast<uint64_t>(w), std::memory_order_relaxed);
  if (static_cast<size_t>(w) == frame.size()) {
    stats_->frames_sent.fetch_add(1, std::memory_order_relaxed);
    stats_->direct_sends.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  frame.skip = static_cast<size_t>(w);
  direct_ok_ = false;
  return false;
}

void SocketConnection::AllowDirectSends() {
  MutexLock lock(&mu_);
  // A frame queued meanwhile has woken the loop already; it goes first.
  if (direct_send_limit_ > 0 && pending_.empty() && !close_requested_ && !abort_.has_value() &&
      !closed_.load(std::memory_order_relaxed)) {
    direct_ok_ = true;
  }
}

void SocketConnection::StopDirectSends() {
  MutexLock lock(&mu_);
  direct_ok_ = false;
}

void SocketConnection::WakeLocked() {
  if (!std::exchange(wake_pending_, true)) loop_->Wake(shared_from_this());
}

void SocketConnection::Close() {
  MutexLock lock(&mu_);
  if (closed_.load(std::memory_order_acquire)) return;
  close_requested_ = true;
  direct_ok_ = false;
  WakeLocked();
}

void SocketConnection::Abort(const absl::Status& cause) {
  MutexLock lock(&mu_);
  if (closed_.load(std::memory_order_acquire)) return;
  if (!abort_.has_value()) abort_ = cause;
  direct_ok_ = false;
  WakeLocked();
}

void SocketConnection::TakeRequests(Requests* out) {
  MutexLock lock(&mu_);
  wake_pending_ = false;
  if (!pending_.empty()) direct_ok_ = false;
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
    direct_ok_ = false;
    dropped.swap(pending_);
  }
  dropped.clear();  // releases queued payloads, outside the lock
  if (handler_ != nullptr) {
    std::shared_ptr<ConnectionHandler> h = std::move(handler_);
    h->OnClosed(*this, cause);
  }
}

}  // namespace sluice::net::internal
