#include "statestore/state_query_service.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status.h"

namespace sluice {

namespace {

KeyResult ErrorResult(QueryStatus status, std::string message) {
  KeyResult r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

const SnapshotState* FindState(const StateView& view, std::string_view name) {
  const auto& states = view.states();
  auto it = std::lower_bound(states.begin(), states.end(), name,
                             [](const SnapshotState& s, std::string_view n) { return s.name < n; });
  return it != states.end() && it->name == name ? &*it : nullptr;
}

KeyResult FromStatus(const absl::Status& s) {
  return ErrorResult(absl::IsNotFound(s) ? QueryStatus::kUnknownState : QueryStatus::kInternal,
                     std::string(s.message()));
}

// One key's state from `view`.
KeyResult ReadKey(const StateView& view, const QueryRequest& request, std::string_view key) {
  const SnapshotState* state = FindState(view, request.state);
  if (state == nullptr) {
    return ErrorResult(QueryStatus::kUnknownState,
                       absl::StrCat("job '", request.job, "' has no state '", request.state, "'"));
  }
  KeyResult r;
  r.value.kind = state->kind;
  switch (state->kind) {
    case StateKind::kList: {
      absl::StatusOr<std::vector<std::string>> list = view.GetList(request.state, key, request.ns);
      if (!list.ok()) return FromStatus(list.status());
      r.found = !list->empty();
      r.value.list = *std::move(list);
      break;
    }
    case StateKind::kMap: {
      absl::Status s = view.ForEachMapEntry(request.state, key, request.ns,
                                            [&](std::string_view user_key, std::string_view value) {
                                              r.value.map.emplace_back(user_key, value);
                                              return true;
                                            });
      if (!s.ok()) return FromStatus(s);
      r.found = !r.value.map.empty();
      break;
    }
    default: {
      absl::StatusOr<std::optional<std::string>> value =
          view.GetValue(request.state, key, request.ns);
      if (!value.ok()) return FromStatus(value.status());
      r.found = value->has_value();
      if (r.found) r.value.value = **std::move(value);
    }
  }
  return r;
}

}  // namespace

// Where a key group is read.
struct StateQueryService::Route {
  QueryStatus status = QueryStatus::kOk;
  std::string message;
  std::shared_ptr<const StateView> view;  // local
  uint64_t checkpoint_id = 0;             // local, committed
  KeyGroupRange partition;                // local: the key groups of its partition
  std::string address;                    // another worker's
};

QueryablePartition::QueryablePartition(StateQueryService* service, std::string job,
                                       KeyGroupRange key_groups, uint32_t max_parallelism)
    : service_(service),
      job_(std::move(job)),
      key_groups_(key_groups),
      max_parallelism_(max_parallelism) {}

QueryablePartition::~QueryablePartition() {
  absl::MutexLock lock(&service_->mu_);
  auto& all = service_->partitions_;
  all.erase(std::remove(all.begin(), all.end(), this), all.end());
  service_->UpdateJobs();
}

void QueryablePartition::PublishLatest(std::shared_ptr<const StateView> view) {
  std::shared_ptr<const StateView> old;
  absl::MutexLock lock(&service_->mu_);
  old = std::exchange(latest_, std::move(view));
  restoring_ = false;
}

absl::Status QueryablePartition::PinAtBarrier(uint64_t checkpoint_id, KeyedStateBackend& backend) {
  SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<const StateView> view, backend.PinView());
  absl::MutexLock lock(&service_->mu_);
  pinned_[checkpoint_id] = std::move(view);
  return absl::OkStatus();
}

void QueryablePartition::SetRestoring() {
  absl::MutexLock lock(&service_->mu_);
  restoring_ = true;
  latest_.reset();
  pinned_.clear();
  committed_.clear();
}

StateQueryService::StateQueryService(StateQueryServiceOptions options,
                                     std::shared_ptr<QueryForwarder> forwarder)
    : options_(std::move(options)), forwarder_(std::move(forwarder)), address_(options_.address) {}

void StateQueryService::SetAddress(std::string address) {
  absl::MutexLock lock(&mu_);
  address_ = std::move(address);
}

StateQueryService::~StateQueryService() = default;

absl::StatusOr<std::unique_ptr<QueryablePartition>> StateQueryService::Register(
    const std::string& job, KeyGroupRange key_groups, uint32_t max_parallelism) {
  SLUICE_RETURN_IF_ERROR(ValidateParallelism(1, max_parallelism));
  if (key_groups.count == 0 || key_groups.end() > max_parallelism) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key groups ", key_groups.ToString(), " do not fit maximum parallelism ", max_parallelism));
  }
  absl::MutexLock lock(&mu_);
  for (const QueryablePartition* p : partitions_) {
    if (p->job_ != job) continue;
    if (p->max_parallelism_ != max_parallelism) {
      return absl::InvalidArgumentError(absl::StrCat("job '", job, "' has maximum parallelism ",
                                                     p->max_parallelism_, " here, not ",
                                                     max_parallelism));
    }
    if (p->key_groups_.Intersect(key_groups).count != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("key groups ", key_groups.ToString(), " of job '", job, "' overlap ",
                       p->key_groups_.ToString(), ", registered already"));
    }
  }
  std::unique_ptr<QueryablePartition> p(
      new QueryablePartition(this, job, key_groups, max_parallelism));
  partitions_.push_back(p.get());
  UpdateJobs();
  return p;
}

void StateQueryService::PublishCompleted(const std::string& job, uint64_t checkpoint_id) {
  std::vector<std::shared_ptr<const StateView>> dropped;  // released outside the lock
  absl::MutexLock lock(&mu_);
  for (QueryablePartition* p : partitions_) {
    if (p->job_ != job) continue;
    auto it = p->pinned_.find(checkpoint_id);
    if (it == p->pinned_.end()) continue;  // restored since its barrier: nothing to publish
    p->committed_[checkpoint_id] = std::move(it->second);
    for (auto old = p->pinned_.begin(); old != p->pinned_.end() && old->first <= checkpoint_id;) {
      dropped.push_back(std::move(old->second));
      old = p->pinned_.erase(old);
    }
    while (p->committed_.size() > std::max<uint32_t>(1, options_.retained_checkpoints)) {
      dropped.push_back(std::move(p->committed_.begin()->second));
      p->committed_.erase(p->committed_.begin());
    }
  }
}

void StateQueryService::SetLocations(LocationTable table) {
  absl::MutexLock lock(&mu_);
  locations_ = std::move(table);
  UpdateJobs();
}

void StateQueryService::UpdateJobs() {
  jobs_ = locations_.Jobs();
  for (const QueryablePartition* p : partitions_) jobs_.push_back(p->job_);
  std::sort(jobs_.begin(), jobs_.end());
  jobs_.erase(std::unique(jobs_.begin(), jobs_.end()), jobs_.end());
}

uint32_t StateQueryService::MaxParallelismOf(const std::string& job) const {
  for (const QueryablePartition* p : partitions_) {
    if (p->job_ == job) return p->max_parallelism_;
  }
  return locations_.MaxParallelism(job);
}

StateQueryService::Route StateQueryService::RouteKeyGroup(const QueryRequest& request,
                                                          uint32_t key_group) const {
  Route route;
  for (const QueryablePartition* p : partitions_) {
    if (p->job_ != request.job || !p->key_groups_.Contains(key_group)) continue;
    route.partition = p->key_groups_;
    if (p->restoring_) {
      route.status = QueryStatus::kUnavailable;
      route.message =
          absl::StrCat("key group ", key_group, " of job '", request.job, "' is being restored");
      return route;
    }
    if (request.consistency == Consistency::kLatest) {
      route.view = p->latest_;
      return route;
    }
    if (p->committed_.empty()) {
      route.status = QueryStatus::kUnavailable;
      route.message = absl::StrCat("no checkpoint of job '", request.job,
                                   "' has completed since its state was loaded here");
      return route;
    }
    auto it = request.checkpoint_id == 0 ? std::prev(p->committed_.end())
                                         : p->committed_.find(request.checkpoint_id);
    if (it == p->committed_.end()) {
      route.status = QueryStatus::kUnavailable;
      route.message =
          absl::StrCat("checkpoint ", request.checkpoint_id, " of job '", request.job,
                       "' is not readable here; the newest is ", p->committed_.rbegin()->first);
      return route;
    }
    route.checkpoint_id = it->first;
    route.view = it->second;
    return route;
  }
  std::optional<std::string> address = locations_.Find(request.job, request.state, key_group);
  if (address.has_value() && *address != address_) {
    route.address = *std::move(address);
    return route;
  }
  route.status = QueryStatus::kUnavailable;
  route.message =
      absl::StrCat("no worker serves key group ", key_group, " of job '", request.job, "'");
  return route;
}

QueryStatus StateQueryService::ResolveJob(QueryRequest& request, std::string* message) const {
  absl::ReaderMutexLock lock(&mu_);
  const std::vector<std::string>& jobs = jobs_;
  if (request.job.empty()) {
    if (request.type == QueryType::kListStates) return QueryStatus::kOk;
    if (jobs.size() == 1) {
      request.job = jobs[0];
      return QueryStatus::kOk;
    }
    *message = jobs.empty()
                   ? "no job is served here"
                   : absl::StrCat("name the job: this worker knows ", absl::StrJoin(jobs, ", "));
    return QueryStatus::kBadRequest;
  }
  if (!std::binary_search(jobs.begin(), jobs.end(), request.job)) {
    *message = absl::StrCat("no job '", request.job, "' here");
    return QueryStatus::kUnknownJob;
  }
  return QueryStatus::kOk;
}

void StateQueryService::Execute(QueryRequest request, QueryCallback done) {
  std::string message;
  if (QueryStatus s = ResolveJob(request, &message); s != QueryStatus::kOk) {
    std::move(done)(FailedQuery(s, std::move(message)));
    return;
  }
  switch (request.type) {
    case QueryType::kGet:
    case QueryType::kMultiGet:
      return ExecuteGet(std::move(request), std::move(done));
    case QueryType::kPrefixScan:
      return ExecuteScan(std::move(request), std::move(done));
    case QueryType::kListStates:
      return ExecuteListStates(std::move(request), std::move(done));
  }
  std::move(done)(FailedQuery(QueryStatus::kBadRequest, "unknown request type"));
}

void StateQueryService::Forward(const std::string& address, QueryRequest request,
                                QueryCallback done) {
  request.forward = false;  // one hop: the owner answers Moved if the table was wrong
  forwarder_->Forward(address, std::move(request), std::move(done));
}

void StateQueryService::ExecuteGet(QueryRequest request, QueryCallback done) {
  if (request.keys.empty() || (request.type == QueryType::kGet && request.keys.size() != 1)) {
    std::move(done)(FailedQuery(QueryStatus::kBadRequest,
                                absl::StrCat(request.type == QueryType::kGet ? "Get" : "MultiGet",
                                             " with ", request.keys.size(), " keys")));
    return;
  }
  if (request.keys.size() > options_.max_keys) {
    std::move(done)(FailedQuery(
        QueryStatus::kTooLarge,
        absl::StrCat(request.keys.size(), " keys in one request; at most ", options_.max_keys)));
    return;
  }
  const bool can_forward = request.forward && forwarder_ != nullptr;
  QueryResponse response;
  response.results.resize(request.keys.size());
  // Keys held elsewhere, by the address that holds them: their indexes in the request.
  std::map<std::string, std::vector<size_t>> remote;
  uint32_t max_parallelism = 0;
  std::vector<Route> routes;
  {
    absl::ReaderMutexLock lock(&mu_);
    max_parallelism = MaxParallelismOf(request.job);
    for (const std::string& key : request.keys) {
      routes.push_back(RouteKeyGroup(request, KeyGroupForKey(key, max_parallelism)));
    }
  }
  for (size_t i = 0; i < routes.size(); ++i) {
    Route& route = routes[i];
    KeyResult& result = response.results[i];
    if (route.status != QueryStatus::kOk) {
      result = ErrorResult(route.status, std::move(route.message));
    } else if (route.view != nullptr) {
      result = ReadKey(*route.view, request, request.keys[i]);
      result.checkpoint_id = route.checkpoint_id;
    } else if (can_forward) {
      remote[route.address].push_back(i);
    } else {
      result = ErrorResult(QueryStatus::kMoved, absl::StrCat("key group held by ", route.address));
      result.location = route.address;
    }
  }
  if (remote.empty()) {
    std::move(done)(std::move(response));
    return;
  }
  // Every forwarded part fills its keys' results; the last one to answer replies.
  struct Gather {
    absl::Mutex mu;
    QueryResponse response;
    size_t pending;
    QueryCallback done;
  };
  auto gather = std::make_shared<Gather>();
  gather->response = std::move(response);
  gather->pending = remote.size();
  gather->done = std::move(done);
  for (auto& [address, indexes] : remote) {
    QueryRequest part = request;
    part.type = indexes.size() == 1 ? QueryType::kGet : QueryType::kMultiGet;
    part.keys.clear();
    for (size_t i : indexes) part.keys.push_back(request.keys[i]);
    Forward(address, std::move(part),
            [gather, indexes = std::move(indexes)](QueryResponse answer) mutable {
              bool last = false;
              {
                absl::MutexLock lock(&gather->mu);
                for (size_t j = 0; j < indexes.size(); ++j) {
                  KeyResult& out = gather->response.results[indexes[j]];
                  if (answer.status != QueryStatus::kOk || j >= answer.results.size()) {
                    out = ErrorResult(
                        answer.status == QueryStatus::kOk ? QueryStatus::kInternal : answer.status,
                        answer.message);
                  } else {
                    out = std::move(answer.results[j]);
                  }
                }
                last = --gather->pending == 0;
              }
              if (last) std::move(gather->done)(std::move(gather->response));
            });
  }
}

void StateQueryService::ExecuteScan(QueryRequest request, QueryCallback done) {
  ScanPosition position;
  if (!request.continuation.empty()) {
    absl::StatusOr<ScanPosition> decoded = DecodeScanPosition(request.continuation);
    if (!decoded.ok()) {
      std::move(done)(
          FailedQuery(QueryStatus::kBadRequest, std::string(decoded.status().message())));
      return;
    }
    position = *std::move(decoded);
  }
  const uint32_t limit = request.limit == 0 ? options_.default_scan_limit : request.limit;
  if (limit > options_.max_scan_limit) {
    std::move(done)(FailedQuery(
        QueryStatus::kTooLarge,
        absl::StrCat("scan limit ", limit, " is above the server's ", options_.max_scan_limit)));
    return;
  }
  if (request.consistency == Consistency::kCommitted && position.checkpoint_id != 0) {
    request.checkpoint_id = position.checkpoint_id;
  }
  uint32_t max_parallelism = 0;
  Route route;
  {
    absl::ReaderMutexLock lock(&mu_);
    max_parallelism = MaxParallelismOf(request.job);
    if (position.key_group < max_parallelism) route = RouteKeyGroup(request, position.key_group);
  }
  if (position.key_group >= max_parallelism) {
    std::move(done)(FailedQuery(QueryStatus::kBadRequest,
                                absl::StrCat("continuation names key group ", position.key_group,
                                             " of ", max_parallelism)));
    return;
  }
  if (route.status != QueryStatus::kOk) {
    std::move(done)(FailedQuery(route.status, std::move(route.message)));
    return;
  }
  if (route.view == nullptr) {
    if (request.forward && forwarder_ != nullptr) {
      Forward(route.address, std::move(request), std::move(done));
      return;
    }
    QueryResponse moved =
        FailedQuery(QueryStatus::kMoved,
                    absl::StrCat("key group ", position.key_group, " is held by ", route.address));
    moved.location = route.address;
    std::move(done)(std::move(moved));
    return;
  }
  QueryResponse response;
  response.checkpoint_id = route.checkpoint_id;
  const StateView& view = *route.view;
  if (FindState(view, request.state) == nullptr) {
    std::move(done)(
        FailedQuery(QueryStatus::kUnknownState,
                    absl::StrCat("job '", request.job, "' has no state '", request.state, "'")));
    return;
  }
  for (uint32_t kg = position.key_group; kg < route.partition.end(); ++kg) {
    std::vector<std::string> keys;
    absl::Status s =
        view.ForEachKey(request.state, kg, [&](std::string_view key, std::string_view ns) {
          if (ns == request.ns && key.starts_with(request.prefix)) keys.emplace_back(key);
          return true;
        });
    if (!s.ok()) {
      std::move(done)(FailedQuery(QueryStatus::kInternal, std::string(s.message())));
      return;
    }
    std::sort(keys.begin(), keys.end());
    auto from = keys.begin();
    if (kg == position.key_group && !position.after_key.empty()) {
      from = std::upper_bound(keys.begin(), keys.end(), position.after_key);
    }
    for (auto it = from; it != keys.end(); ++it) {
      KeyResult r = ReadKey(view, request, *it);
      if (r.status != QueryStatus::kOk) {
        std::move(done)(FailedQuery(r.status, std::move(r.message)));
        return;
      }
      if (!r.found) continue;  // expired
      response.entries.push_back(ScanEntry{*it, std::move(r.value)});
      if (response.entries.size() == limit) {
        response.continuation = EncodeScanPosition({kg, route.checkpoint_id, *it});
        std::move(done)(std::move(response));
        return;
      }
    }
  }
  if (route.partition.end() < max_parallelism) {
    response.continuation = EncodeScanPosition({route.partition.end(), route.checkpoint_id, ""});
  }
  std::move(done)(std::move(response));
}

void StateQueryService::ExecuteListStates(QueryRequest request, QueryCallback done) {
  QueryResponse response;
  std::string forward_to;
  {
    absl::ReaderMutexLock lock(&mu_);
    // (job, state) -> its description, merged over the partitions held here.
    std::map<std::pair<std::string, std::string>, StateInfo> states;
    bool local = false;
    bool restoring = false;  // a partition of the job has no view to describe its states
    for (const QueryablePartition* p : partitions_) {
      if (!request.job.empty() && p->job_ != request.job) continue;
      local = true;
      const std::shared_ptr<const StateView>& view =
          p->latest_ != nullptr
              ? p->latest_
              : (p->committed_.empty() ? nullptr : p->committed_.rbegin()->second);
      if (view == nullptr) {
        restoring = true;
        continue;
      }
      for (const SnapshotState& s : view->states()) {
        StateInfo& info = states[{p->job_, s.name}];
        if (info.name.empty()) {
          auto [key_type, value_type] = view->TypeNames(s.name);
          info = StateInfo{p->job_,
                           s.name,
                           s.kind,
                           key_type,
                           value_type,
                           p->max_parallelism_,
                           locations_.LocationsOf(p->job_, s.name)};
        }
        StateLocation here{p->key_groups_, address_};
        auto& l = info.locations;
        l.erase(std::remove_if(l.begin(), l.end(),
                               [&](const StateLocation& o) {
                                 return o.key_groups.Intersect(here.key_groups).count != 0;
                               }),
                l.end());
        l.push_back(here);
      }
    }
    if (!local && !request.job.empty()) {
      for (const LocationTable::Entry& e : locations_.entries()) {
        if (e.job == request.job && e.location.address != address_) {
          forward_to = e.location.address;
          break;
        }
      }
    }
    for (auto& [name, info] : states) {
      std::sort(info.locations.begin(), info.locations.end(),
                [](const StateLocation& a, const StateLocation& b) {
                  return a.key_groups.first < b.key_groups.first;
                });
      response.states.push_back(std::move(info));
    }
    if (response.states.empty() && restoring) {
      response.status = QueryStatus::kUnavailable;
      response.message = absl::StrCat("the state of job '", request.job, "' is being restored");
    }
  }
  if (!forward_to.empty()) {
    if (request.forward && forwarder_ != nullptr) {
      Forward(forward_to, std::move(request), std::move(done));
      return;
    }
    response = FailedQuery(QueryStatus::kMoved,
                           absl::StrCat("job '", request.job, "' is served by ", forward_to));
    response.location = forward_to;
  }
  std::move(done)(std::move(response));
}

}  // namespace sluice
