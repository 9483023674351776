// Clients of the native query protocol.
//
// QueryConnections: one net/ connection per query server address, made on first use on a thread
// of its own (Send never blocks), with requests pipelined on it and answers matched by id. It is
// also how a worker forwards requests (QueryForwarder). Thread-safe.
//
// QueryClient: what applications use. It hashes each key to its key group, sends it to the worker
// that holds it (locations learnt from ListStates and from Moved answers, and cached), follows
// Moved, retries Unavailable with exponential backoff up to a deadline, and makes a committed
// MultiGet read one checkpoint id on every worker. Calls block the calling thread; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "statestore/state_query_service.h"

namespace sluice {

struct QueryConnectionsOptions {
  std::string transport = "auto";
  std::string token;
  std::string name = "query-client";
  absl::Duration connect_timeout = absl::Seconds(5);
  // A request without an answer for this long is answered Unavailable.
  absl::Duration request_timeout = absl::Seconds(30);
  size_t max_response_bytes = 64 << 20;
};

class QueryConnections : public QueryForwarder {
 public:
  static absl::StatusOr<std::shared_ptr<QueryConnections>> Create(
      const QueryConnectionsOptions& options);
  ~QueryConnections() override = default;

  // Sends `request` to the server at `address` ("host:port"); `done` runs once with its answer,
  // or with Unavailable (cannot connect, connection lost, timed out) or Unauthorized (token
  // refused), on a thread of the connections.
  virtual void Send(const std::string& address, QueryRequest request, QueryCallback done) = 0;
  void Forward(const std::string& address, QueryRequest request, QueryCallback done) override {
    Send(address, std::move(request), std::move(done));
  }
};

struct QueryClientOptions {
  QueryConnectionsOptions connections;
  // Where to start: any worker's query address.
  std::string address;
  // Each call, retries included, ends by then with the last answer.
  absl::Duration deadline = absl::Seconds(10);
  absl::Duration initial_backoff = absl::Milliseconds(10);
  absl::Duration max_backoff = absl::Milliseconds(500);
};

class QueryClient {
 public:
  static absl::StatusOr<std::unique_ptr<QueryClient>> Create(const QueryClientOptions& options);

  // Answers a request as a whole: keys routed to their workers (one request per worker for a
  // MultiGet), Moved followed, Unavailable retried until the deadline. The response's status is
  // that of the request; each key's result has its own.
  QueryResponse Execute(const QueryRequest& request);

  // One key's result (its status says how the read went).
  KeyResult Get(const std::string& job, const std::string& state, const std::string& key,
                Consistency consistency = Consistency::kLatest);
  // Every page of a PrefixScan, through `fn`, which returns false to stop; the status of the
  // first failed page, or OK.
  QueryResponse ScanAll(const QueryRequest& request, absl::FunctionRef<bool(const ScanEntry&)> fn);

  // How many requests went to each kind of answer (for tests and reports).
  struct Stats {
    uint64_t sent = 0;
    uint64_t moved = 0;
    uint64_t retried_unavailable = 0;
  };
  Stats stats() const;

 private:
  explicit QueryClient(const QueryClientOptions& options,
                       std::shared_ptr<QueryConnections> connections);
  // One request to one worker, until an answer other than Moved or Unavailable or the deadline.
  QueryResponse SendRouted(QueryRequest request, uint32_t key_group, absl::Time deadline);
  QueryResponse SendTo(const std::string& address, const QueryRequest& request);
  QueryResponse MultiGet(const QueryRequest& request, absl::Time deadline);
  // Where `key_group` of the request's job and state is served, as far as known.
  std::string AddressOf(const QueryRequest& request, uint32_t key_group);
  // The job's maximum parallelism (asking the first worker when unknown); 0 with *failure set
  // when it cannot be learnt.
  uint32_t MaxParallelism(const QueryRequest& request, absl::Time deadline, QueryResponse* failure);
  void Learn(const QueryRequest& request, uint32_t key_group, const std::string& address);

  const QueryClientOptions options_;
  const std::shared_ptr<QueryConnections> connections_;
  mutable absl::Mutex mu_;
  // job -> max parallelism and, per state ("*" for any), the known locations.
  struct JobLocations {
    uint32_t max_parallelism = 0;
    std::map<std::string, std::vector<StateLocation>> states;
  };
  std::map<std::string, JobLocations> jobs_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice
