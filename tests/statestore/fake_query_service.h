// An in-memory QueryService for tests of query front ends: states of any kind with their keys,
// a status per state (unavailable, moved, ...), every request recorded. Answers on the calling
// thread by default; requests whose first key starts with a chosen prefix can be held back and
// answered later from another thread in reverse order, and `async` answers everything from a
// worker thread, each batch in reverse order, to test that front ends keep replies in order.
// Thread-safe.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "statestore/query_service.h"

namespace sluice::testing_util {

class FakeQueryService final : public QueryService {
 public:
  explicit FakeQueryService(std::string job) : job_(std::move(job)) {}
  ~FakeQueryService() override {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
      wake_.SignalAll();
    }
    for (std::thread& t : threads_) t.join();
  }

  void Add(const std::string& state, StateKind kind, const std::string& key, QueryValue value) {
    MutexLock lock(&mu_);
    State& s = states_[state];
    s.kind = kind;
    value.kind = kind;
    s.entries[key] = std::move(value);
  }
  void AddValue(const std::string& state, const std::string& key, const std::string& value) {
    QueryValue v;
    v.value = value;
    Add(state, StateKind::kValue, key, std::move(v));
  }
  // Every request for `state` ends with `status` (kMoved: each key, with `detail` the location).
  void SetStatus(const std::string& state, QueryStatus status, const std::string& detail) {
    MutexLock lock(&mu_);
    states_[state].status = status;
    states_[state].detail = detail;
  }

  void DeferKeysStartingWith(const std::string& prefix) {
    MutexLock lock(&mu_);
    defer_prefix_ = prefix;
  }
  bool WaitDeferred(size_t n) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout([&] { return deferred_.size() >= n; }, absl::Seconds(30));
  }
  // Answers the held-back requests from another thread, the newest first.
  void ReleaseDeferredInReverse() {
    std::vector<Pending> batch;
    {
      MutexLock lock(&mu_);
      batch.assign(std::make_move_iterator(deferred_.rbegin()),
                   std::make_move_iterator(deferred_.rend()));
      deferred_.clear();
    }
    threads_.emplace_back([batch = std::move(batch)]() mutable {
      for (Pending& p : batch) std::move(p.done)(std::move(p.response));
    });
  }
  // From now on every request is answered by a worker thread.
  void StartAsync() {
    {
      MutexLock lock(&mu_);
      async_ = true;
    }
    threads_.emplace_back([this] { AnswerQueued(); });
  }

  std::vector<QueryRequest> requests() {
    MutexLock lock(&mu_);
    return requests_;
  }

  void Execute(QueryRequest request, QueryCallback done) override {
    Pending p;
    {
      MutexLock lock(&mu_);
      requests_.push_back(request);
      p = {Answer(request), std::move(done)};
      const bool defer = !defer_prefix_.empty() && !request.keys.empty() &&
                         absl::StartsWith(request.keys[0], defer_prefix_);
      if (defer || async_) {
        (defer ? deferred_ : queued_).push_back(std::move(p));
        wake_.SignalAll();
        return;
      }
    }
    std::move(p.done)(std::move(p.response));
  }

 private:
  struct State {
    StateKind kind = StateKind::kValue;
    std::map<std::string, QueryValue> entries;
    QueryStatus status = QueryStatus::kOk;
    std::string detail;
  };
  struct Pending {
    QueryResponse response;
    QueryCallback done;
  };

  void AnswerQueued() {
    while (true) {
      std::vector<Pending> batch;
      {
        MutexLock lock(&mu_);
        while (queued_.empty() && !stopping_) wake_.Wait(&mu_);
        if (stopping_) return;
        batch.assign(std::make_move_iterator(queued_.rbegin()),
                     std::make_move_iterator(queued_.rend()));
        queued_.clear();
      }
      for (Pending& p : batch) std::move(p.done)(std::move(p.response));
    }
  }

  QueryResponse Answer(const QueryRequest& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    QueryResponse r;
    if (request.type == QueryType::kListStates) {
      for (const auto& [name, s] : states_)
        r.states.push_back({job_, name, s.kind, "", "", 128, {}});
      return r;
    }
    auto it = states_.find(request.state);
    if (request.job != job_ || it == states_.end()) {
      r.status = request.job != job_ ? QueryStatus::kUnknownJob : QueryStatus::kUnknownState;
      r.message = "no such thing here";
      return r;
    }
    const State& s = it->second;
    if (s.status != QueryStatus::kOk && s.status != QueryStatus::kMoved) {
      r.status = s.status;
      r.message = s.detail;
      return r;
    }
    if (request.type == QueryType::kPrefixScan) return Scan(s, request);
    for (const std::string& key : request.keys) {
      KeyResult k;
      k.status = s.status;
      k.location = s.detail;
      auto e = s.entries.find(key);
      k.found = s.status == QueryStatus::kOk && e != s.entries.end();
      if (k.found) k.value = e->second;
      r.results.push_back(std::move(k));
    }
    return r;
  }

  // Pages through keys with the prefix; the continuation is binary, as a real one may be.
  static QueryResponse Scan(const State& s, const QueryRequest& request) {
    static const std::string kMark("\0\xff", 2);
    QueryResponse r;
    const size_t limit = request.limit == 0 ? 100 : request.limit;
    auto it = request.continuation.empty()
                  ? s.entries.lower_bound(request.prefix)
                  : s.entries.upper_bound(request.continuation.substr(kMark.size()));
    for (; it != s.entries.end() && absl::StartsWith(it->first, request.prefix); ++it) {
      if (r.entries.size() == limit) {
        r.continuation = kMark + r.entries.back().key;
        break;
      }
      r.entries.push_back({it->first, it->second});
    }
    return r;
  }

  const std::string job_;
  std::vector<std::thread> threads_;  // touched by the test thread only
  Mutex mu_;
  CondVar wake_;
  std::map<std::string, State> states_ ABSL_GUARDED_BY(mu_);
  std::vector<QueryRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::string defer_prefix_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> deferred_ ABSL_GUARDED_BY(mu_);
  std::vector<Pending> queued_ ABSL_GUARDED_BY(mu_);
  bool async_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace sluice::testing_util
