// The query side of the state store: the requests that every front end (the native FlatBuffers
// server, query_server.h; the RESP gateway, resp_gateway.h) executes, and the QueryService that
// answers them. Requests are read-only. A key lives in one key group, held by one subtask on one
// worker; a worker answers for the subtasks it holds and forwards (or answers Moved) for the
// others.
//
// QueryService::Execute is thread-safe and never blocks: a local answer is computed on the
// calling thread from a pinned view of the state; a forwarded one completes on the thread that
// receives it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "base/key_group.h"
#include "statestore/state.h"

namespace sluice {

// How a request (or one key of it) ended. Numbers are part of the wire protocol.
enum class QueryStatus : uint8_t {
  kOk = 0,            // answered; a key without a value is kOk with found == false
  kUnknownJob = 1,    // no job of that name here or in the location table
  kUnknownState = 2,  // the job has no state of that name
  kMoved = 3,         // another worker holds the key: `location` says which
  kUnavailable = 4,   // the state is being restored, or the committed view is not there yet
  kBadRequest = 5,    // malformed, or impossible (the message says what)
  kUnauthorized = 6,  // wrong or missing token
  kTooLarge = 7,      // the request or its answer exceeds a limit (named)
  kInternal = 8,      // the state store failed (the message says how)
};
std::string_view QueryStatusName(QueryStatus status);

enum class Consistency : uint8_t {
  kLatest = 0,     // the live state
  kCommitted = 1,  // the state as of the last completed checkpoint
};
std::string_view ConsistencyName(Consistency consistency);

// One key's state as a query returns it.
struct QueryValue {
  StateKind kind = StateKind::kValue;
  std::string value;                                     // value, reducing, aggregating
  std::vector<std::string> list;                         // list, in the order added
  std::vector<std::pair<std::string, std::string>> map;  // map, in user-key byte order
  bool operator==(const QueryValue&) const = default;
};

struct KeyResult {
  QueryStatus status = QueryStatus::kOk;
  std::string message;  // what went wrong, when status is not kOk
  bool found = false;   // kOk: whether the key has a value
  QueryValue value;
  uint64_t checkpoint_id = 0;  // committed reads: the checkpoint that was read
  std::string location;        // kMoved: the query address ("host:port") holding the key
};

enum class QueryType : uint8_t { kGet = 0, kMultiGet = 1, kPrefixScan = 2, kListStates = 3 };

struct QueryRequest {
  QueryType type = QueryType::kGet;
  std::string job;
  std::string state;
  std::vector<std::string> keys;  // Get: one; MultiGet: one or more (serialized keys)
  std::string ns;                 // the namespace; empty by default
  Consistency consistency = Consistency::kLatest;
  // Committed reads: the checkpoint to read (0: the newest published). A worker keeps the newest
  // two, so that a multi-key read can ask every worker for the same one.
  uint64_t checkpoint_id = 0;
  std::string prefix;        // PrefixScan: keys that start with these bytes
  uint32_t limit = 0;        // PrefixScan: at most this many entries (0: the server's default)
  std::string continuation;  // PrefixScan: where the previous page stopped (empty: the start)
  // False: a key held elsewhere is answered Moved rather than forwarded (clients that route by
  // themselves). A forwarded request is never forwarded again.
  bool forward = true;
};

struct ScanEntry {
  std::string key;
  QueryValue value;
};

// Where one state's key groups are served.
struct StateLocation {
  KeyGroupRange key_groups;
  std::string address;  // query address, "host:port"
};

struct StateInfo {
  std::string job;
  std::string name;
  StateKind kind = StateKind::kValue;
  std::string key_type;  // Serializer<T>::TypeName() of keys, "" for raw bytes
  std::string value_type;
  uint32_t max_parallelism = 0;
  std::vector<StateLocation> locations;
};

struct QueryResponse {
  QueryStatus status = QueryStatus::kOk;  // of the request as a whole
  std::string message;
  std::string location;  // kMoved (a PrefixScan or ListStates): the address to ask instead
  std::vector<KeyResult> results;  // Get, MultiGet: one per key, in request order
  std::vector<ScanEntry> entries;  // PrefixScan, in (key group, key) order
  std::string continuation;        // PrefixScan: pass back for the next page; empty when done
  uint64_t checkpoint_id = 0;      // PrefixScan, committed: the checkpoint read
  std::vector<StateInfo> states;   // ListStates: of `job`, or of every job when it is empty
};

// The I/O threads a query front end (QueryServer, RespGateway) runs when asked for `asked`: that
// many, or for 0 one per two CPUs, 1 to 4 (the tasks need the other CPUs).
inline size_t QueryIoThreads(size_t asked) {
  return asked != 0 ? asked : std::clamp<size_t>(std::thread::hardware_concurrency() / 2, 1, 4);
}

// An answer that is only a failure of the whole request.
inline QueryResponse FailedQuery(QueryStatus status, std::string message) {
  QueryResponse r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

using QueryCallback = absl::AnyInvocable<void(QueryResponse) &&>;

class QueryService {
 public:
  virtual ~QueryService() = default;
  // Answers `request`; `done` runs exactly once (see the file comment for the thread).
  virtual void Execute(QueryRequest request, QueryCallback done) = 0;
};

}  // namespace sluice
