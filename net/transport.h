// Transport: framed, authenticated TCP connections carrying pooled Buffers, with pluggable I/O
// engines chosen by name at run time:
//   "uring"  io_uring, one ring per I/O thread, receives into pool segments, zero-copy sends;
//   "epoll"  readiness-based fallback for kernels or containers that refuse io_uring;
//   "auto"   uring when io_uring_setup is allowed here, otherwise epoll (logged once);
//   "memory" in-process pairs for unit tests (addresses are names, no sockets).
//
// Threading: a Transport runs its own I/O thread. Connection::Send and Close are safe from any
// thread. ConnectionHandler callbacks run on the I/O thread, one connection's in order; they
// must not block. Listen/Connect may be called from any thread except the I/O thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "net/frame.h"

namespace sluice::net {

class Connection;

// Receives what arrives on one connection.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;
  // A complete frame. `payload` is a view of the receive segment when the frame lay in one (no
  // copy), else a buffer of its own; it is empty when header.length == 0. Hold it as long as
  // needed: its segment returns to the pool when the last view is released.
  virtual void OnFrame(Connection& connection, const FrameHeader& header, Buffer payload) = 0;
  // Exactly once, last: OK when either side closed in order at a frame boundary; otherwise
  // the cause (reset, peer closed mid-frame, malformed frame, error frame from the peer, ...).
  virtual void OnClosed(Connection& connection, const absl::Status& cause) = 0;
  // Optional: where to receive the payload of a large frame, so that it lands in memory the
  // receiver chose (a consumer's own buffers) without a copy. Called on the I/O thread once the
  // frame's header has arrived, for frames read directly (payloads of at least a quarter of a
  // segment that start a receive); return a Buffer with at least header.length writable bytes,
  // or an empty Buffer to use the transport's receive pool.
  virtual Buffer ReceiveBuffer(const FrameHeader& /*header*/) { return Buffer(); }
};

class Connection {
 public:
  virtual ~Connection() = default;

  // Queues one frame: `header` (its length is set from the payload) and `payload`, whose bytes go
  // out as they lie in the segment. The Buffer is released once the kernel no longer needs it.
  // Fails with FailedPrecondition once the connection is closing or closed.
  virtual absl::Status Send(FrameHeader header, Buffer payload) = 0;
  // As Send, for a frame someone waits for: when the connection has nothing queued and the
  // frame is at most TransportOptions::direct_send_limit bytes, the calling thread writes it to
  // the socket itself instead of waking the I/O thread (what the socket does not take at once
  // is left to the I/O thread). Costs the caller a system call: for latency, not for bulk.
  virtual absl::Status SendDirect(FrameHeader header, Buffer payload) {
    return Send(header, std::move(payload));
  }

  // Orderly close: frames already queued are sent first, then the connection closes and the
  // handler gets OnClosed(OK).
  virtual void Close() = 0;

  // Sends an error frame carrying `cause`, then closes; the handler gets OnClosed(cause).
  virtual void Abort(const absl::Status& cause) = 0;

  virtual bool open() const = 0;
  // "host:port" of the other side, for errors and logs.
  virtual const std::string& peer() const = 0;
  // The name the peer gave in its handshake.
  virtual const std::string& peer_name() const = 0;
};

class Listener {
 public:
  virtual ~Listener() = default;  // stops accepting; open connections stay open
  virtual uint16_t port() const = 0;
  virtual std::string address() const = 0;
};

// Returns the handler for a new connection that passed the handshake.
using AcceptCallback =
    std::function<std::shared_ptr<ConnectionHandler>(std::shared_ptr<Connection> connection)>;

struct TransportOptions {
  // Receive segments come from a local pool drawn from here. REQUIRED.
  BufferPool* pool = nullptr;
  size_t receive_min_segments = 16;
  size_t receive_max_segments = 1024;
  size_t max_frame_size = kDefaultMaxFrameSize;
  // When non-empty every connection must present it; a wrong token is refused and closed.
  std::string token;
  // Name sent in the handshake ("worker-1").
  std::string name = "sluice";
  absl::Duration handshake_timeout = absl::Seconds(5);
  // Payloads of at least this many bytes go out with IORING_OP_SEND_ZC (uring only); 0 = never.
  size_t zero_copy_threshold = 0;
  // Connection::SendDirect writes frames of up to this many bytes (header included) from the
  // calling thread when the connection is idle; 0 = never (every frame through the I/O thread).
  size_t direct_send_limit = 4096;
  // uring: when one receive holds many frames, what the handlers sent in answer goes out after
  // every this many frames instead of after the last, so that the peer can work on the first
  // answers while the rest are computed (request/response protocols). 0 = after the last.
  size_t flush_after_frames = 0;
  // uring: entries of the submission queue and of the provided-buffer ring.
  unsigned ring_entries = 1024;
  unsigned provided_buffers = 64;
  // Listen sets SO_REUSEPORT, so that the listeners of several transports (one I/O thread each)
  // can share a port and the kernel spreads connections over them. Socket transports only: the
  // memory transport refuses a second listener on a port.
  bool reuse_port = false;
};

struct ConnectOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  // Total time for every attempt together, handshake included.
  absl::Duration timeout = absl::Seconds(10);
  // A refused connection is retried with exponential backoff, starting here, up to the max.
  absl::Duration initial_backoff = absl::Milliseconds(5);
  absl::Duration max_backoff = absl::Milliseconds(500);
};

// Counters since the transport started. Read with relaxed loads; for reports, not control.
struct TransportStats {
  std::atomic<uint64_t> bytes_sent{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> frames_sent{0};
  std::atomic<uint64_t> frames_received{0};
  // Payload bytes the receive path copied in user space (frames that straddled segments).
  std::atomic<uint64_t> bytes_copied{0};
  std::atomic<uint64_t> zero_copy_sends{0};
  // Frames written by the sending thread itself (Connection::SendDirect).
  std::atomic<uint64_t> direct_sends{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_refused{0};
};

class Transport {
 public:
  virtual ~Transport() = default;  // closes every connection and joins the I/O thread

  // "uring", "epoll", "memory" or "auto". An unknown name is an InvalidArgument error listing
  // the known ones; "uring" where the kernel refuses io_uring is Unavailable with the reason.
  static absl::StatusOr<std::unique_ptr<Transport>> Create(std::string_view name,
                                                           const TransportOptions& options);
  // Names accepted by Create, for --help.
  static std::vector<std::string> Names();

  virtual std::string_view name() const = 0;

  // Binds host:port (port 0 picks a free one) and accepts connections until the Listener goes.
  virtual absl::StatusOr<std::unique_ptr<Listener>> Listen(const std::string& host, uint16_t port,
                                                           AcceptCallback on_accept) = 0;

  // Connects, retrying refused attempts with backoff until options.timeout, and completes the
  // handshake. Blocks the calling thread (not the I/O thread) until then.
  virtual absl::StatusOr<std::shared_ptr<Connection>> Connect(
      const ConnectOptions& options, std::shared_ptr<ConnectionHandler> handler) = 0;

  virtual const TransportStats& stats() const = 0;
};

// Whether this process may use io_uring here; the error says why not.
absl::Status ProbeIoUring();

}  // namespace sluice::net
