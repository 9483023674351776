// RespGateway: the read-only Redis-protocol (RESP2) front end of the state store's queries, so
// that redis-cli, redis-benchmark and Redis client libraries can read a job's state. Keys are
// spelled "state:key": the state's name, a colon, and the key's serialized bytes.
//
// Commands: PING, ECHO, AUTH, HELLO (protocol 2 only), GET, MGET, EXISTS,
// SCAN cursor [MATCH state:prefix*] [COUNT n], COMMAND (COUNT, DOCS, INFO), INFO, CONFIG GET,
// SELECT 0, CLIENT (SETNAME, GETNAME, ID, SETINFO), QUIT. Write commands are refused with
// -READONLY, others with -ERR unknown command. With a token set, every command but AUTH, HELLO
// and QUIT is answered -NOAUTH until the client authenticates.
//
// SCAN's cursors are decimal numbers naming positions the gateway keeps (the newest
// max_scan_cursors), as clients such as redis-cli parse cursors as integers; a forgotten one is
// -ERR invalid cursor. Replies go out in request order, also when the QueryService answers
// pipelined requests out of order. Thread-safe: the gateway runs its own I/O thread; destroying it
// closes every connection.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/stream_server.h"
#include "statestore/query_service.h"
#include "statestore/resp.h"

namespace sluice {

namespace statestore_internal {
struct GatewayContext;
}

struct RespGatewayOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (see RespGateway::port)
  // When non-empty, clients must AUTH with it (as the password, user "default" or none).
  std::string token;
  std::string job;  // the job whose state is read
  Consistency consistency = Consistency::kLatest;
  // Commands of one connection whose replies have not gone out yet; at this many the gateway
  // stops reading the connection until replies go out.
  size_t max_in_flight = 1024;
  size_t max_connections = 10'000;
  absl::Duration idle_timeout = absl::InfiniteDuration();
  // Clients that do not read their replies (see StreamServerOptions).
  size_t slow_client_bytes = 16 << 20;
  absl::Duration slow_client_timeout = absl::Seconds(10);
  size_t max_output_bytes = 256 << 20;
  // A larger reply is replaced by an error saying so.
  size_t max_reply_bytes = 64 << 20;
  RespLimits limits;
  // I/O threads (connections spread over them by the kernel); 0: one per two CPUs, 1 to 4.
  size_t io_threads = 0;
  uint32_t max_scan_count = 10'000;  // SCAN's COUNT is capped here
  size_t max_scan_cursors = 4096;    // SCAN positions kept (the oldest are forgotten)
};

// Counters since the gateway started; read with relaxed loads, for reports (and INFO).
struct RespGatewayStats {
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> keyspace_hits{0};
  std::atomic<uint64_t> keyspace_misses{0};
  std::atomic<uint64_t> error_replies{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> auth_failures{0};
  std::atomic<uint64_t> refused_writes{0};
};

class RespGateway {
 public:
  // Listens on options.host:port. REQUIRES: `service` outlives the gateway and answers every
  // request it was given.
  static absl::StatusOr<std::unique_ptr<RespGateway>> Create(QueryService& service,
                                                             const RespGatewayOptions& options);
  ~RespGateway();

  uint16_t port() const { return server_->port(); }
  std::string address() const { return server_->address(); }
  const RespGatewayStats& stats() const;
  const net::StreamServerStats& server_stats() const { return server_->stats(); }

 private:
  RespGateway(std::shared_ptr<statestore_internal::GatewayContext> context,
              std::unique_ptr<net::StreamServer> server);

  std::shared_ptr<statestore_internal::GatewayContext> context_;
  std::unique_ptr<net::StreamServer> server_;
};

}  // namespace sluice
