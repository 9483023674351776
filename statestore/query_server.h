// QueryServer: the native query server of a worker. It accepts net/ connections (io_uring, or
// epoll where io_uring is refused), reads pipelined FlatBuffers requests (query_protocol.h), has
// them answered by a QueryService off the task threads, and sends each answer as soon as it is
// ready (answers carry their request's id, so they may pass each other).
//
// Connections are spread over `io_threads` I/O threads; requests are answered on the thread that
// read them (a read of local state does not block).
//
// Limits: the token (checked by the connection handshake, before any request is read), request
// and response sizes, requests in flight per connection (a request counts until the kernel has
// taken its answer), idle connections, and clients that stop reading their answers. A malformed
// request is answered BadRequest and the connection goes on; bytes that are not frames close it.
//
// Thread-safe; the destructor closes every connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "statestore/query_service.h"

namespace sluice {

struct QueryServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;               // 0: any free port
  std::string transport = "auto";  // net::Transport::Names()
  std::string token;               // required of every client when set
  std::string name = "query";      // in the handshake
  size_t max_request_bytes = 1 << 20;
  size_t max_response_bytes = 16 << 20;
  // Requests of one connection whose answers the kernel has not taken yet. One more is answered
  // Unavailable; twice as many closes the connection.
  uint32_t max_in_flight = 256;
  absl::Duration idle_timeout = absl::Seconds(300);  // nothing received and nothing in flight
  // Receive buffers of 32 KiB shared by the connections.
  size_t receive_segments = 4096;
  // I/O threads, each with its own transport and listener on the one port (SO_REUSEPORT: the
  // kernel spreads connections over them); a connection stays on one thread. 0: one per two CPUs,
  // 1 to 4 (the tasks need the other CPUs). The memory transport always has one.
  size_t io_threads = 0;
  // Answers waiting for the client to read them, with none taken for this long: closed.
  absl::Duration slow_client_timeout = absl::Seconds(10);
};

struct QueryServerStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<uint64_t> refused_in_flight{0};
  std::atomic<uint64_t> too_large{0};
  std::atomic<uint64_t> closed_idle{0};
  std::atomic<uint64_t> closed_slow{0};
};

class QueryServer {
 public:
  // Listens on options.host:options.port. `service` must outlive the server.
  static absl::StatusOr<std::unique_ptr<QueryServer>> Create(const QueryServerOptions& options,
                                                             QueryService& service);
  virtual ~QueryServer() = default;

  virtual uint16_t port() const = 0;
  virtual std::string address() const = 0;  // "host:port"
  virtual std::string_view transport_name() const = 0;
  virtual size_t io_threads() const = 0;
  virtual const QueryServerStats& stats() const = 0;
};

}  // namespace sluice
