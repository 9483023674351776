// StreamServer: a TCP server for text protocols (RESP and the like), where the framed Transport
// does not fit. Each epoll I/O thread (`io_threads` of them, each with its own listening socket
// on the one port, SO_REUSEPORT spreading connections) serves its connections: it reads into one
// reused buffer, hands the bytes to the connection's StreamHandler, and sends what handlers wrote
// with one writev per readiness event.
//
// Threading: StreamConnection's methods are safe from any thread and never block; a write from
// another thread wakes the connection's I/O thread through an eventfd. StreamHandler callbacks
// run on the connection's I/O thread, one connection's in order, and must not block; the accept
// callback and the handlers of different connections may run on different threads at once.
// Destroying the server closes every connection (their handlers get OnClosed(Cancelled) on their
// I/O thread) and joins the threads, so a handler must not destroy its server.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::net {

// One accepted connection, as handlers and other threads see it.
class StreamConnection {
 public:
  virtual ~StreamConnection() = default;

  // Queues `bytes` behind everything queued before. Fails with FailedPrecondition once the
  // connection is closing or closed (nothing is queued then).
  virtual absl::Status Write(std::string bytes) = 0;
  // Orderly close: queued output goes out first, then the handler gets OnClosed(OK). Writes are
  // refused from now on.
  virtual void Close() = 0;
  // Backpressure: stops reading from the socket until ResumeReading. Bytes already delivered to
  // OnData are the handler's to keep.
  virtual void PauseReading() = 0;
  // Reading goes on; afterwards the handler's OnResumed runs on the I/O thread (also when the
  // pause had not taken effect yet), so that it can work through what it held back.
  virtual void ResumeReading() = 0;

  virtual bool open() const = 0;
  // "host:port" of the client, for errors and logs.
  virtual const std::string& peer() const = 0;
  // Unique among the server's connections, counting from 1.
  virtual uint64_t id() const = 0;
};

// Receives what arrives on one connection. Every callback runs on the I/O thread.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  // Bytes in arrival order, in chunks cut anywhere. `data` is only valid during the call.
  virtual void OnData(StreamConnection& connection, std::string_view data) = 0;
  // The client will send nothing more (it shut down its side). By default the connection
  // closes once queued output is out; a handler that still owes replies closes it later.
  virtual void OnEndOfInput(StreamConnection& connection) { connection.Close(); }
  // Reading resumed after ResumeReading.
  virtual void OnResumed(StreamConnection& /*connection*/) {}
  // Exactly once, last: OK after an orderly close by either side; otherwise why the server
  // closed it (idle, slow client, reset, shutdown).
  virtual void OnClosed(StreamConnection& connection, const absl::Status& cause) = 0;
};

struct StreamServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see StreamServer::port)
  // Connections accepted beyond this many are sent `refusal` (best effort) and closed at once.
  // With several I/O threads, connections accepted at the same instant may pass it by up to
  // io_threads - 1.
  size_t max_connections = 10'000;
  std::string refusal;
  // A connection on which nothing was received or sent for this long is closed.
  absl::Duration idle_timeout = absl::InfiniteDuration();
  // A client that leaves more than `slow_client_bytes` of output queued for longer than
  // `slow_client_timeout` is closed, and so is one with more than `max_output_bytes` queued.
  size_t slow_client_bytes = 16 << 20;
  absl::Duration slow_client_timeout = absl::Seconds(10);
  size_t max_output_bytes = 256 << 20;
  // Bytes asked of the socket per read.
  size_t read_size = 64 * 1024;
  // After an orderly close has sent everything, how long to wait for the client's own close
  // (closing with unread input would reset the connection and could destroy the last replies).
  absl::Duration linger_timeout = absl::Seconds(5);
  // I/O threads; a connection stays on the one that accepted it.
  size_t io_threads = 1;
};

// Counters since the server started; read with relaxed loads, for reports.
struct StreamServerStats {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};  // over max_connections
  std::atomic<uint64_t> open{0};
  std::atomic<uint64_t> closed_idle{0};
  std::atomic<uint64_t> closed_slow{0};
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_sent{0};
};

// Returns the handler of a new connection, or nullptr to refuse it (closed without callbacks).
// Runs on the I/O thread that accepted the connection.
using StreamAcceptCallback =
    std::function<std::shared_ptr<StreamHandler>(const std::shared_ptr<StreamConnection>&)>;

class StreamServer {
 public:
  // Listens on options.host:port and starts the I/O threads.
  static absl::StatusOr<std::unique_ptr<StreamServer>> Create(const StreamServerOptions& options,
                                                              StreamAcceptCallback on_accept);
  virtual ~StreamServer() = default;

  virtual uint16_t port() const = 0;
  virtual std::string address() const = 0;  // "host:port"
  virtual const StreamServerStats& stats() const = 0;
};

}  // namespace sluice::net
