// The commands of the RESP gateway (resp_gateway.h), apart from the connections that carry them.
// RunCommand checks authentication, looks the command up and runs it; commands that read state
// (resp_queries.cc) execute QueryRequests and reply when the QueryService answers, possibly on
// another thread, through a Reply that keeps the connection's reply order.
//
// GatewayContext and ScanCursors are thread-safe; a ClientState belongs to its connection's
// I/O thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/sync.h"
#include "net/stream_server.h"
#include "statestore/query_service.h"
#include "statestore/resp_gateway.h"

namespace sluice::statestore_internal {

// Abseil's string_view is its own type in this build: for StrCat and friends without a copy.
inline absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Where a connection's replies go, in the order of its commands.
class ReplyQueue {
 public:
  virtual ~ReplyQueue() = default;
  // The reply of the command in `slot`; any thread, once per slot.
  virtual void Complete(uint64_t slot, std::string reply) = 0;
};

// One command's reply slot. Move-only; Send it exactly once, from any thread.
class Reply {
 public:
  Reply(std::shared_ptr<ReplyQueue> queue, uint64_t slot) : queue_(std::move(queue)), slot_(slot) {}
  Reply(Reply&&) = default;
  Reply& operator=(Reply&&) = default;

  void Send(std::string bytes) && {
    std::exchange(queue_, nullptr)->Complete(slot_, std::move(bytes));
  }

 private:
  std::shared_ptr<ReplyQueue> queue_;
  uint64_t slot_;
};

// Where a SCAN stopped: the states it walks (one with MATCH, else every state of the job), the
// one it is in, and the QueryService's continuation in that state.
struct ScanPosition {
  std::string pattern;  // the MATCH it was started with ("" for none)
  std::vector<std::string> states;
  size_t index = 0;
  std::string prefix;
  std::string continuation;
  uint64_t checkpoint_id = 0;  // committed reads: every page reads the same checkpoint
};

// The positions behind SCAN's cursors. Clients such as redis-cli and redis-py parse a cursor as
// an unsigned integer, so a cursor is a number naming a position kept here (the continuation
// bytes themselves would not survive that). The newest `capacity` are kept.
class ScanCursors {
 public:
  explicit ScanCursors(size_t capacity) : capacity_(capacity) {}
  // A new cursor (never 0, below 2^63) for `position`.
  uint64_t Add(ScanPosition position);
  std::optional<ScanPosition> Find(uint64_t cursor);

 private:
  const size_t capacity_;
  Mutex mu_;
  absl::BitGen random_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, ScanPosition> positions_ ABSL_GUARDED_BY(mu_);
  std::deque<uint64_t> order_ ABSL_GUARDED_BY(mu_);  // oldest first
};

// What every connection of one gateway shares. Replies still in flight keep it alive after the
// gateway is gone.
struct GatewayContext {
  GatewayContext(QueryService* query_service, const RespGatewayOptions& gateway_options)
      : service(query_service),
        options(gateway_options),
        cursors(gateway_options.max_scan_cursors) {}

  QueryService* const service;
  const RespGatewayOptions options;
  RespGatewayStats stats;
  ScanCursors cursors;
  const absl::Time started = absl::Now();
  // Set once the server listens, for INFO (which runs on its I/O thread).
  std::atomic<const net::StreamServer*> server{nullptr};
};

// One connection's session state, as commands see it.
struct ClientState {
  uint64_t id = 0;
  bool authenticated = false;
  std::string name;  // CLIENT SETNAME
};

enum class After { kContinue, kClose };

// A command being run: its arguments (the name first; views valid during the call only), who
// runs it, and where its reply goes.
struct Call {
  absl::Span<const std::string_view> args;
  const std::shared_ptr<GatewayContext>& context;
  ClientState& client;
  Reply reply;

  void Send(std::string bytes) { std::move(reply).Send(std::move(bytes)); }
  void SendError(std::string_view text);
  void SendOk();
};

// Runs one command (REQUIRES: args not empty). kClose: close the connection once this reply is
// out (QUIT).
After RunCommand(Call call);

// The commands that read state (resp_queries.cc).
After RunGet(Call& call);
After RunMultiGet(Call& call);
After RunExists(Call& call);
After RunScan(Call& call);

}  // namespace sluice::statestore_internal
