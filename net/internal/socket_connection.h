// SocketConnection: the part of a TCP connection that every socket transport shares: the
// cross-thread send queue, close/abort requests, the handshake state and the frame reader.
// The transport's I/O loop owns the socket and does the actual I/O; other threads only queue
// work here and wake the loop through LoopWaker.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "base/sync.h"
#include "net/frame.h"
#include "net/internal/frame_reader.h"
#include "net/transport.h"

namespace sluice::net::internal {

class SocketConnection;

// The I/O loop, as seen by its connections: Wake asks it to pick up queued work for `c`.
class LoopWaker {
 public:
  virtual ~LoopWaker() = default;
  virtual void Wake(std::shared_ptr<SocketConnection> c) = 0;
};

// One frame on its way out: the encoded header and the payload view it announces.
struct OutFrame {
  char header[kFrameHeaderSize];
  Buffer payload;
  // Bytes of the frame already written by a direct send (SocketConnection::Send): the loop
  // writes the rest. Only the first frame the loop takes after a direct send has any.
  size_t skip = 0;
  size_t size() const {
    return kFrameHeaderSize + (payload.valid() ? payload.readable_bytes() : 0);
  }
};

class SocketConnection : public Connection, public std::enable_shared_from_this<SocketConnection> {
 public:
  // `handshaking`: server side, waiting for the client's Hello before the owner hears of it.
  SocketConnection(int fd, std::string peer, LoopWaker* loop, LocalBufferPool* rx_pool,
                   const TransportOptions& options, TransportStats* stats, bool handshaking);
  ~SocketConnection() override;

  // Connection (any thread).
  absl::Status Send(FrameHeader header, Buffer payload) override;
  absl::Status SendDirect(FrameHeader header, Buffer payload) override;
  void Close() override;
  void Abort(const absl::Status& cause) override;
  bool open() const override { return !closed_.load(std::memory_order_acquire); }
  const std::string& peer() const override { return peer_; }
  const std::string& peer_name() const override { return peer_name_; }

  // ---- I/O loop side. ----
  int fd() const { return fd_; }
  FrameReader& reader() { return reader_; }
  bool handshaking() const { return handshaking_; }
  absl::Time handshake_deadline() const { return handshake_deadline_; }
  void set_handler(std::shared_ptr<ConnectionHandler> h) {
    handler_ = std::move(h);
    reader_.set_buffer_source(handler_.get());
  }
  void set_peer_name(std::string name) { peer_name_ = std::move(name); }
  void set_handshaking(bool v) { handshaking_ = v; }

  // Work queued by other threads since the last call.
  struct Requests {
    std::deque<OutFrame> frames;
    bool close = false;
    std::optional<absl::Status> abort;
  };
  void TakeRequests(Requests* out);
  // Queues a frame from the loop itself (handshake replies, error frames).
  void QueueFromLoop(FrameHeader header, Buffer payload);
  // The loop has written everything it took and has nothing in flight for this connection:
  // Send may write straight to the socket again (see TransportOptions::direct_send_limit).
  // Taking frames (TakeRequests) or StopDirectSends ends that. REQUIRES: established.
  void AllowDirectSends();
  // The loop is about to write to the socket outside its queue (an error frame).
  void StopDirectSends();

  // Delivers a frame to the owner, or handles the handshake. A non-OK status means the
  // connection must close with that cause; `tell_peer` says whether to send it as an error frame
  // first (not when the peer's own error frame is the cause).
  absl::Status Dispatch(const FrameHeader& header, Buffer payload, const AcceptCallback* on_accept,
                        bool* tell_peer);

  // Marks the connection closed, drops the reader's buffers and tells the handler (once).
  // The caller closes the fd afterwards.
  void FinishClose(const absl::Status& cause);
  bool finished() const { return finished_; }

  static OutFrame MakeOutFrame(FrameHeader header, Buffer payload);

 private:
  const int fd_;
  void WakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Queue(FrameHeader header, Buffer payload, bool direct);
  // Writes `frame` to the socket from the calling thread. Returns true when all of it went
  // out; otherwise `frame.skip` says how much did, and the loop must write the rest.
  bool TryDirectSend(OutFrame& frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string peer_;
  std::string peer_name_;
  LoopWaker* const loop_;
  const TransportOptions& options_;  // the transport's; read only while the connection is open
  const size_t max_frame_size_;
  TransportStats* const stats_;
  FrameReader reader_;
  std::shared_ptr<ConnectionHandler> handler_;
  bool handshaking_;
  absl::Time handshake_deadline_;
  bool finished_ = false;

  std::atomic<bool> closed_{false};
  Mutex mu_;
  std::deque<OutFrame> pending_ ABSL_GUARDED_BY(mu_);
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> abort_ ABSL_GUARDED_BY(mu_);
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  // Whether Send may write to the socket itself: the loop holds nothing unsent for it.
  bool direct_ok_ ABSL_GUARDED_BY(mu_) = false;
  const size_t direct_send_limit_;
};

}  // namespace sluice::net::internal
