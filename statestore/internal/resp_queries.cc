// The gateway's commands that read state: GET, MGET, EXISTS and SCAN, as QueryRequests to the
// QueryService. A key is spelled "state:key"; MGET and EXISTS send one request per state named.
// QueryStatus becomes the error a Redis client expects for it: -TRYAGAIN while a state is not
// available, -NOAUTH when the service refuses, -ERR with the status name otherwise.
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "statestore/internal/resp_commands.h"
#include "statestore/resp.h"

namespace sluice::statestore_internal {
namespace {

constexpr std::string_view kBadSpelling = "ERR key must be spelled state:key";
constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
constexpr uint32_t kDefaultScanCount = 10;  // as redis-server

// "state:key" -> state, key. False without a ':' or with an empty state name.
bool SplitKey(std::string_view spelled, std::string_view* state, std::string_view* key) {
  const size_t colon = spelled.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  *state = spelled.substr(0, colon);
  *key = spelled.substr(colon + 1);
  return true;
}

// The error reply text for a request (or key) that ended with `status`.
std::string StatusError(QueryStatus status, std::string_view message, std::string_view state,
                        std::string_view location) {
  if (status == QueryStatus::kUnknownState) {
    return absl::StrCat("ERR unknown state '", Absl(state), "'");
  }
  if (status == QueryStatus::kMoved) return absl::StrCat("ERR moved to ", Absl(location));
  const std::string_view code = status == QueryStatus::kUnavailable    ? "TRYAGAIN"
                                : status == QueryStatus::kUnauthorized ? "NOAUTH"
                                                                       : "ERR";
  std::string text = absl::StrCat(Absl(code), " ", Absl(QueryStatusName(status)));
  if (!message.empty()) absl::StrAppend(&text, ": ", Absl(message));
  return text;
}

bool IsSingleValue(StateKind kind) {
  return kind == StateKind::kValue || kind == StateKind::kReducing ||
         kind == StateKind::kAggregating;
}

QueryRequest NewRequest(const GatewayContext& context, QueryType type, std::string_view state) {
  QueryRequest request;
  request.type = type;
  request.job = context.options.job;
  request.state = std::string(state);
  request.consistency = context.options.consistency;
  return request;
}

// The answer for each of `n` keys asked in one request, passed to `put(k, result)`: the request's
// own error for every key when it failed as a whole.
template <typename Put>
void SplitResults(QueryResponse response, size_t n, Put put) {
  if (response.status == QueryStatus::kOk && response.results.size() != n) {
    response.status = QueryStatus::kInternal;
    response.message = absl::StrFormat("the query service answered %d results for %d keys",
                                       response.results.size(), n);
  }
  for (size_t k = 0; k < n; ++k) {
    if (response.status != QueryStatus::kOk) {
      KeyResult failed;
      failed.status = response.status;
      failed.message = response.message;
      put(k, std::move(failed));
    } else {
      put(k, std::move(response.results[k]));
    }
  }
}

// GET's reply for one key's result; counts hits and misses.
void AppendValue(GatewayContext& context, const KeyResult& result, std::string_view state,
                 std::string* out) {
  if (result.status != QueryStatus::kOk) {
    AppendError(out, StatusError(result.status, result.message, state, result.location));
  } else if (!result.found) {
    context.stats.keyspace_misses.fetch_add(1, std::memory_order_relaxed);
    AppendNullBulk(out);
  } else if (!IsSingleValue(result.value.kind)) {
    AppendError(out, kWrongType);
  } else {
    context.stats.keyspace_hits.fetch_add(1, std::memory_order_relaxed);
    AppendBulk(out, result.value.value);
  }
}

using KeysDone = absl::AnyInvocable<void(std::vector<KeyResult>) &&>;

// One lookup of several keys: the results fill in as the requests answer; the last answer
// (or the issuer, holding one count of its own) calls `done`.
struct Lookup {
  std::vector<KeyResult> results;
  std::atomic<size_t> pending{1};
  KeysDone done;

  void Release() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) std::move(done)(std::move(results));
  }
};

// Looks up `spelled` keys with one request per state and calls `done` with a result per key, in
// order, on the thread of the last answer. A key not spelled state:key is a kBadRequest result.
void LookupKeys(const GatewayContext& context, absl::Span<const std::string_view> spelled,
                KeysDone done) {
  auto lookup = std::make_shared<Lookup>();
  lookup->results.resize(spelled.size());
  lookup->done = std::move(done);
  std::vector<QueryRequest> requests;
  std::vector<std::vector<size_t>> indices;  // of each request's keys in `spelled`
  absl::flat_hash_map<std::string_view, size_t> by_state;
  for (size_t i = 0; i < spelled.size(); ++i) {
    std::string_view state, key;
    if (!SplitKey(spelled[i], &state, &key)) {
      lookup->results[i].status = QueryStatus::kBadRequest;
      lookup->results[i].message = "key must be spelled state:key";
      continue;
    }
    const auto [it, added] = by_state.try_emplace(state, requests.size());
    if (added) {
      requests.push_back(NewRequest(context, QueryType::kMultiGet, state));
      indices.emplace_back();
    }
    requests[it->second].keys.emplace_back(key);
    indices[it->second].push_back(i);
  }
  lookup->pending.fetch_add(requests.size(), std::memory_order_relaxed);
  for (size_t r = 0; r < requests.size(); ++r) {
    context.service->Execute(
        std::move(requests[r]), [lookup, keys = std::move(indices[r])](QueryResponse response) {
          SplitResults(std::move(response), keys.size(), [&](size_t k, KeyResult result) {
            lookup->results[keys[k]] = std::move(result);
          });
          lookup->Release();
        });
  }
  lookup->Release();
}

// SCAN cursor [MATCH pattern] [COUNT n], as parsed.
struct ScanArgs {
  uint64_t cursor = 0;
  std::string pattern;  // "" without MATCH
  uint32_t count = kDefaultScanCount;
};

// False after sending the error when the arguments are not valid.
bool ParseScanArgs(Call& call, ScanArgs* out) {
  const auto& args = call.args;
  const std::string_view cursor = args[1];
  if (cursor.empty() || cursor.find_first_not_of("0123456789") != std::string_view::npos ||
      !absl::SimpleAtoi(Absl(cursor), &out->cursor)) {
    call.SendError("ERR invalid cursor");
    return false;
  }
  for (size_t i = 2; i < args.size(); i += 2) {
    if (i + 1 == args.size()) {
      call.SendError("ERR syntax error");
      return false;
    }
    int64_t count = 0;
    if (EqualsIgnoreCase(args[i], "MATCH")) {
      out->pattern = std::string(args[i + 1]);
    } else if (!EqualsIgnoreCase(args[i], "COUNT")) {
      call.SendError(absl::StrCat("ERR syntax error: SCAN option '", Absl(args[i]),
                                  "' is not supported (MATCH and COUNT are)"));
      return false;
    } else if (!absl::SimpleAtoi(Absl(args[i + 1]), &count)) {
      call.SendError("ERR value is not an integer or out of range");
      return false;
    } else if (count < 1) {
      call.SendError("ERR syntax error");
      return false;
    } else {
      const uint32_t most = std::max<uint32_t>(call.context->options.max_scan_count, 1);
      out->count = static_cast<uint32_t>(std::min<int64_t>(count, most));
    }
  }
  return true;
}

// MATCH state:prefix* -> state and prefix. "*" (or no MATCH) is every state: an empty state.
bool ParsePattern(std::string_view pattern, std::string* state, std::string* prefix) {
  if (pattern.empty() || pattern == "*") return true;
  const size_t colon = pattern.find(':');
  if (colon == std::string_view::npos || colon == 0 || pattern.back() != '*') return false;
  const std::string_view literal = pattern.substr(0, pattern.size() - 1);
  if (literal.find_first_of("*?[]\\") != std::string_view::npos) return false;
  *state = std::string(literal.substr(0, colon));
  *prefix = std::string(literal.substr(colon + 1));
  return true;
}

// SCAN's reply: the next cursor, then the keys spelled state:key.
std::string ScanReply(uint64_t cursor, std::string_view state,
                      const std::vector<ScanEntry>& entries) {
  std::string out;
  AppendArrayHeader(&out, 2);
  AppendBulk(&out, absl::StrCat(cursor));
  AppendArrayHeader(&out, entries.size());
  for (const ScanEntry& e : entries) {
    absl::StrAppend(&out, "$", state.size() + 1 + e.key.size(), "\r\n", Absl(state), ":", e.key,
                    "\r\n");
  }
  return out;
}

// Reads the page of `position`'s state at its continuation and replies with it and the cursor
// of what follows.
void ScanPage(std::shared_ptr<GatewayContext> context, ScanPosition position, uint32_t count,
              Reply reply) {
  if (position.index >= position.states.size()) {
    std::move(reply).Send(ScanReply(0, "", {}));
    return;
  }
  QueryRequest request =
      NewRequest(*context, QueryType::kPrefixScan, position.states[position.index]);
  request.prefix = position.prefix;
  request.limit = count;
  request.continuation = position.continuation;
  request.checkpoint_id = position.checkpoint_id;
  QueryService* service = context->service;
  service->Execute(
      std::move(request), [context = std::move(context), position = std::move(position),
                           reply = std::move(reply)](QueryResponse response) mutable {
        const std::string state = position.states[position.index];
        if (response.status != QueryStatus::kOk) {
          std::string out;
          AppendError(&out, StatusError(response.status, response.message, state, ""));
          std::move(reply).Send(std::move(out));
          return;
        }
        if (position.checkpoint_id == 0) position.checkpoint_id = response.checkpoint_id;
        position.continuation = std::move(response.continuation);
        if (position.continuation.empty()) ++position.index;
        const uint64_t cursor =
            position.index < position.states.size() ? context->cursors.Add(std::move(position)) : 0;
        std::move(reply).Send(ScanReply(cursor, state, response.entries));
      });
}

// SCAN 0 without MATCH: every state of the job, in the order the service lists them.
void ScanAllStates(std::shared_ptr<GatewayContext> context, ScanArgs args, Reply reply) {
  QueryRequest request = NewRequest(*context, QueryType::kListStates, "");
  QueryService* service = context->service;
  service->Execute(std::move(request), [context = std::move(context), args = std::move(args),
                                        reply = std::move(reply)](QueryResponse response) mutable {
    if (response.status != QueryStatus::kOk) {
      std::string out;
      AppendError(&out, StatusError(response.status, response.message, "", ""));
      std::move(reply).Send(std::move(out));
      return;
    }
    ScanPosition position;
    position.pattern = args.pattern;
    for (StateInfo& info : response.states) position.states.push_back(std::move(info.name));
    ScanPage(std::move(context), std::move(position), args.count, std::move(reply));
  });
}

}  // namespace

After RunGet(Call& call) {
  std::string_view state, key;
  if (!SplitKey(call.args[1], &state, &key)) {
    call.SendError(kBadSpelling);
    return After::kContinue;
  }
  QueryRequest request = NewRequest(*call.context, QueryType::kGet, state);
  request.keys.emplace_back(key);
  call.context->service->Execute(
      std::move(request), [context = call.context, reply = std::move(call.reply),
                           state = std::string(state)](QueryResponse response) mutable {
        std::string out;
        SplitResults(std::move(response), 1,
                     [&](size_t, KeyResult result) { AppendValue(*context, result, state, &out); });
        std::move(reply).Send(std::move(out));
      });
  return After::kContinue;
}

After RunMultiGet(Call& call) {
  LookupKeys(*call.context, call.args.subspan(1),
             [context = call.context,
              reply = std::move(call.reply)](std::vector<KeyResult> results) mutable {
               std::string out;
               AppendArrayHeader(&out, results.size());
               for (const KeyResult& r : results) {
                 // As redis-server: errors and whatever is not a single value are nil.
                 if (r.status == QueryStatus::kOk && (!r.found || IsSingleValue(r.value.kind))) {
                   AppendValue(*context, r, "", &out);
                 } else {
                   AppendNullBulk(&out);
                 }
               }
               std::move(reply).Send(std::move(out));
             });
  return After::kContinue;
}

After RunExists(Call& call) {
  LookupKeys(*call.context, call.args.subspan(1),
             [reply = std::move(call.reply)](std::vector<KeyResult> results) mutable {
               std::string out;
               int64_t count = 0;
               for (const KeyResult& r : results) {
                 if (r.status == QueryStatus::kOk) {
                   count += r.found ? 1 : 0;
                 } else if (r.status != QueryStatus::kUnknownState &&
                            r.status != QueryStatus::kBadRequest) {
                   // Neither yes nor no: the key's holder could not be asked.
                   AppendError(&out, StatusError(r.status, r.message, "", r.location));
                   std::move(reply).Send(std::move(out));
                   return;
                 }
               }
               AppendInteger(&out, count);
               std::move(reply).Send(std::move(out));
             });
  return After::kContinue;
}

After RunScan(Call& call) {
  ScanArgs args;
  if (!ParseScanArgs(call, &args)) return After::kContinue;
  std::string state, prefix;
  if (!ParsePattern(args.pattern, &state, &prefix)) {
    call.SendError(absl::StrCat("ERR MATCH pattern '", args.pattern,
                                "' is not supported: use state:prefix* (a state name, ':', a "
                                "literal key prefix, a trailing '*')"));
    return After::kContinue;
  }
  if (args.cursor != 0) {
    std::optional<ScanPosition> found = call.context->cursors.Find(args.cursor);
    if (!found.has_value()) {
      call.SendError("ERR invalid cursor");
    } else if (found->pattern != args.pattern) {
      call.SendError(absl::StrCat("ERR cursor ", args.cursor, " belongs to a scan with MATCH '",
                                  found->pattern, "'"));
    } else {
      ScanPage(call.context, std::move(*found), args.count, std::move(call.reply));
    }
    return After::kContinue;
  }
  if (state.empty()) {  // no state named: every state of the job
    ScanAllStates(call.context, std::move(args), std::move(call.reply));
    return After::kContinue;
  }
  ScanPosition position;
  position.pattern = std::move(args.pattern);
  position.states.push_back(std::move(state));
  position.prefix = std::move(prefix);
  ScanPage(call.context, std::move(position), args.count, std::move(call.reply));
  return After::kContinue;
}

uint64_t ScanCursors::Add(ScanPosition position) {
  MutexLock lock(&mu_);
  uint64_t cursor = 0;
  do {
    cursor = absl::Uniform<uint64_t>(random_, 1, uint64_t{1} << 63);
  } while (positions_.contains(cursor));
  positions_.emplace(cursor, std::move(position));
  order_.push_back(cursor);
  while (order_.size() > std::max<size_t>(capacity_, 1)) {
    positions_.erase(order_.front());
    order_.pop_front();
  }
  return cursor;
}

std::optional<ScanPosition> ScanCursors::Find(uint64_t cursor) {
  MutexLock lock(&mu_);
  auto it = positions_.find(cursor);
  if (it == positions_.end()) return std::nullopt;
  return it->second;
}

}  // namespace sluice::statestore_internal
