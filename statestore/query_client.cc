#include "statestore/query_client.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/buffer_pool.h"
#include "base/status.h"
#include "net/transport.h"
#include "statestore/query_protocol.h"

namespace sluice {
namespace {

QueryStatus StatusOf(const absl::Status& s) {
  return absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s) ? QueryStatus::kUnauthorized
                                                                   : QueryStatus::kUnavailable;
}

absl::StatusOr<net::ConnectOptions> ParseAddress(const std::string& address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("query address '", address, "' must be host:port"));
  }
  net::ConnectOptions c;
  c.host = address.substr(0, colon);
  c.port = static_cast<uint16_t>(port);
  return c;
}

// The connection to one server and the requests waiting for its answers.
// Whether this thread is running an answer's callback (on a connection's I/O thread).
thread_local bool t_on_io_thread = false;

class Peer final : public net::ConnectionHandler, public std::enable_shared_from_this<Peer> {
 public:
  explicit Peer(std::string address) : address_(std::move(address)) {}

  // Queues the request until the connection is up, or sends it.
  void Submit(uint32_t id, Buffer request, QueryCallback done, absl::Time deadline) {
    std::shared_ptr<net::Connection> c;
    absl::Status failure;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failure = failure_;
      if (failure.ok()) pending_.emplace(id, Pending{std::move(done), deadline});
    }
    if (!failure.ok()) {  // failed after the sender found it in the map
      std::move(done)(FailedQuery(
          StatusOf(failure), absl::StrCat("query server ", address_, ": ", failure.message())));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (connection_ == nullptr) {
        queued_.emplace_back(id, std::move(request));
        return;
      }
      c = connection_;
    }
    SendNow(*c, id, std::move(request));
  }

  void Connected(std::shared_ptr<net::Connection> c) {
    std::vector<std::pair<uint32_t, Buffer>> queued;
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection_ = c;
      queued.swap(queued_);
    }
    for (auto& [id, request] : queued) SendNow(*c, id, std::move(request));
  }

  // Fails every request waiting; the peer is not used again.
  void Fail(const absl::Status& cause) {
    absl::flat_hash_map<uint32_t, Pending> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      failure_ = cause;
      pending.swap(pending_);
      queued_.clear();
      connection_.reset();
    }
    for (auto& [id, p] : pending) {
      std::move(p.done)(FailedQuery(
          StatusOf(cause), absl::StrCat("query server ", address_, ": ", cause.message())));
    }
  }

  // Answers Unavailable to requests past their deadline.
  void Expire(absl::Time now) {
    std::vector<QueryCallback> expired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
          expired.push_back(std::move(it->second.done));
          pending_.erase(it++);
        } else {
          ++it;
        }
      }
    }
    for (QueryCallback& done : expired) {
      std::move(done)(
          FailedQuery(QueryStatus::kUnavailable,
                      absl::StrCat("query server ", address_, " did not answer in time")));
    }
  }

  void OnFrame(net::Connection& connection, const net::FrameHeader& header,
               Buffer payload) override {
    if (header.type != kQueryResponseFrame) {
      connection.Abort(absl::InvalidArgumentError(
          absl::StrCat("query client: unexpected frame type ", net::FrameTypeName(header.type))));
      return;
    }
    absl::StatusOr<QueryResponse> response = DecodeQueryResponse(payload.readable());
    payload.Release();
    if (!response.ok()) {
      connection.Abort(response.status());
      return;
    }
    QueryCallback done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = pending_.find(header.channel);
      if (it == pending_.end()) return;  // expired already
      done = std::move(it->second.done);
      pending_.erase(it);
    }
    t_on_io_thread = true;
    std::move(done)(*std::move(response));
    t_on_io_thread = false;
  }

  void OnClosed(net::Connection&, const absl::Status& cause) override {
    Fail(cause.ok() ? absl::UnavailableError("connection closed by the server") : cause);
    if (on_closed_) on_closed_();
  }

  std::function<void()> on_closed_;
  const std::string& address() const { return address_; }

 private:
  struct Pending {
    QueryCallback done;
    absl::Time deadline;
  };

  // From another thread the request is written at once (SendDirect); from a callback on the I/O
  // thread (a request sent in answer to an answer) it is queued, so that what the callbacks of
  // one batch of answers send leaves together when the batch is done.
  void SendNow(net::Connection& c, uint32_t id, Buffer request) {
    net::FrameHeader h;
    h.type = kQueryRequestFrame;
    h.channel = id;
    // A closing connection refuses it: OnClosed fails what is pending, this request included.
    (t_on_io_thread ? c.Send(h, std::move(request)) : c.SendDirect(h, std::move(request)))
        .IgnoreError();
  }

  const std::string address_;
  std::mutex mu_;
  absl::Status failure_;
  std::shared_ptr<net::Connection> connection_;
  std::vector<std::pair<uint32_t, Buffer>> queued_;
  absl::flat_hash_map<uint32_t, Pending> pending_;
};

class Connections final : public QueryConnections,
                          public std::enable_shared_from_this<Connections> {
 public:
  explicit Connections(const QueryConnectionsOptions& options) : options_(options) {}

  ~Connections() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (sweeper_.joinable()) sweeper_.join();
    for (std::thread& t : connectors_) t.join();
    std::map<std::string, std::shared_ptr<Peer>> peers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      peers.swap(peers_);
    }
    transport_.reset();  // closes the connections: their peers fail what is pending
    for (auto& [address, peer] : peers) peer->Fail(absl::CancelledError("client closed"));
  }

  absl::Status Start() {
    BufferPoolOptions pool_options;
    pool_options.num_segments = 256;
    pool_options.try_hugepages = false;
    SLUICE_ASSIGN_OR_RETURN(pool_, BufferPool::Create(pool_options));
    net::TransportOptions t;
    t.pool = pool_.get();
    t.name = options_.name;
    t.token = options_.token;
    t.max_frame_size = options_.max_response_bytes;
    // Requests sent from the callbacks of a batch of answers leave every 16 answers, so that
    // the server works on them while the rest of the batch is handled here.
    t.flush_after_frames = 16;
    SLUICE_ASSIGN_OR_RETURN(transport_, net::Transport::Create(options_.transport, t));
    sweeper_ = std::thread([this] { Sweep(); });
    return absl::OkStatus();
  }

  void Send(const std::string& address, QueryRequest request, QueryCallback done) override {
    absl::StatusOr<net::ConnectOptions> connect = ParseAddress(address);
    if (!connect.ok()) {
      std::move(done)(
          FailedQuery(QueryStatus::kBadRequest, std::string(connect.status().message())));
      return;
    }
    std::shared_ptr<Peer> peer;
    bool fresh = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        std::move(done)(FailedQuery(QueryStatus::kUnavailable, "query client closed"));
        return;
      }
      std::shared_ptr<Peer>& slot = peers_[address];
      if (slot == nullptr) {
        slot = std::make_shared<Peer>(address);
        fresh = true;
      }
      peer = slot;
    }
    const uint32_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    peer->Submit(id, EncodeQueryRequest(request), std::move(done),
                 absl::Now() + options_.request_timeout);
    if (fresh) StartConnect(peer, *connect);
  }

 private:
  void StartConnect(std::shared_ptr<Peer> peer, net::ConnectOptions connect) {
    connect.timeout = options_.connect_timeout;
    std::weak_ptr<Connections> weak = weak_from_this();
    peer->on_closed_ = [this, weak, p = std::weak_ptr<Peer>(peer)] {
      if (auto self = weak.lock()) Forget(p.lock());
    };
    std::lock_guard<std::mutex> lock(mu_);
    connectors_.emplace_back([this, peer, connect] {
      absl::StatusOr<std::shared_ptr<net::Connection>> c = transport_->Connect(connect, peer);
      if (c.ok()) {
        peer->Connected(*std::move(c));
        return;
      }
      Forget(peer);
      peer->Fail(c.status());
    });
  }

  void Forget(const std::shared_ptr<Peer>& peer) {
    if (peer == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = peers_.find(peer->address());
    if (it != peers_.end() && it->second == peer) peers_.erase(it);
  }

  void Sweep() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(100));
      std::vector<std::shared_ptr<Peer>> peers;
      for (auto& [address, peer] : peers_) peers.push_back(peer);
      lock.unlock();
      const absl::Time now = absl::Now();
      for (auto& peer : peers) peer->Expire(now);
      lock.lock();
    }
  }

  const QueryConnectionsOptions options_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<net::Transport> transport_;
  std::atomic<uint32_t> next_id_{1};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Peer>> peers_;
  std::vector<std::thread> connectors_;
  std::thread sweeper_;
};

// A key's or a whole request's failure, whichever the answer carries.
const KeyResult* SingleResult(const QueryResponse& r) {
  return r.results.size() == 1 ? &r.results[0] : nullptr;
}

}  // namespace

absl::StatusOr<std::shared_ptr<QueryConnections>> QueryConnections::Create(
    const QueryConnectionsOptions& options) {
  auto c = std::make_shared<Connections>(options);
  SLUICE_RETURN_IF_ERROR(c->Start());
  return c;
}

absl::StatusOr<std::unique_ptr<QueryClient>> QueryClient::Create(
    const QueryClientOptions& options) {
  SLUICE_RETURN_IF_ERROR(ParseAddress(options.address).status());
  SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<QueryConnections> connections,
                          QueryConnections::Create(options.connections));
  return std::unique_ptr<QueryClient>(new QueryClient(options, std::move(connections)));
}

QueryClient::QueryClient(const QueryClientOptions& options,
                         std::shared_ptr<QueryConnections> connections)
    : options_(options), connections_(std::move(connections)) {}

QueryClient::Stats QueryClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

QueryResponse QueryClient::SendTo(const std::string& address, const QueryRequest& request) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.sent;
  }
  absl::Notification answered;
  QueryResponse response;
  connections_->Send(address, request, [&](QueryResponse r) {
    response = std::move(r);
    answered.Notify();
  });
  answered.WaitForNotification();
  return response;
}

std::string QueryClient::AddressOf(const QueryRequest& request, uint32_t key_group) {
  absl::MutexLock lock(&mu_);
  auto job = jobs_.find(request.job);
  if (job != jobs_.end()) {
    for (const char* state : {request.state.c_str(), "*"}) {
      auto it = job->second.states.find(state);
      if (it == job->second.states.end()) continue;
      // Newest first: what Moved answers taught comes after the ListStates map.
      for (auto l = it->second.rbegin(); l != it->second.rend(); ++l) {
        if (l->key_groups.Contains(key_group)) return l->address;
      }
    }
  }
  return options_.address;
}

void QueryClient::Learn(const QueryRequest& request, uint32_t key_group,
                        const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto& locations = jobs_[request.job].states[request.state];
  locations.push_back(StateLocation{KeyGroupRange{key_group, 1}, address});
  ++stats_.moved;
}

uint32_t QueryClient::MaxParallelism(const QueryRequest& request, absl::Time deadline,
                                     QueryResponse* failure) {
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(request.job);
    if (it != jobs_.end() && it->second.max_parallelism != 0) return it->second.max_parallelism;
  }
  QueryRequest list;
  list.type = QueryType::kListStates;
  list.job = request.job;
  QueryResponse states = SendRouted(list, 0, deadline);
  absl::MutexLock lock(&mu_);
  for (const StateInfo& s : states.states) {
    JobLocations& job = jobs_[s.job];
    job.max_parallelism = s.max_parallelism;
    job.states[s.name] = s.locations;
    // A worker that does not know its own address: the one asked.
    for (StateLocation& l : job.states[s.name]) {
      if (l.address.empty()) l.address = options_.address;
    }
  }
  auto it = jobs_.find(request.job);
  if (it != jobs_.end() && it->second.max_parallelism != 0) return it->second.max_parallelism;
  *failure = states.status != QueryStatus::kOk
                 ? std::move(states)
                 : FailedQuery(QueryStatus::kUnknownJob,
                               absl::StrCat(options_.address, " knows no job '", request.job, "'"));
  return 0;
}

QueryResponse QueryClient::SendRouted(QueryRequest request, uint32_t key_group,
                                      absl::Time deadline) {
  const bool routed = request.type != QueryType::kListStates;
  request.forward = !routed;
  std::string address = routed ? AddressOf(request, key_group) : options_.address;
  absl::Duration backoff = options_.initial_backoff;
  for (int moves = 0;;) {
    QueryResponse response = SendTo(address, request);
    const KeyResult* single = SingleResult(response);
    const QueryStatus status =
        response.status == QueryStatus::kOk && single != nullptr ? single->status : response.status;
    if (status == QueryStatus::kMoved && moves++ < 8) {
      address =
          single != nullptr && !single->location.empty() ? single->location : response.location;
      Learn(request, key_group, address);
      continue;
    }
    if (status != QueryStatus::kUnavailable || absl::Now() + backoff > deadline) return response;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.retried_unavailable;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    if (routed) address = AddressOf(request, key_group);
  }
}

QueryResponse QueryClient::MultiGet(const QueryRequest& request, absl::Time deadline) {
  QueryResponse out;
  const uint32_t max_parallelism = MaxParallelism(request, deadline, &out);
  if (max_parallelism == 0) return out;
  out.results.resize(request.keys.size());
  // Keys by the worker thought to hold them; each worker gets one request, all at once.
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < request.keys.size(); ++i) {
    groups[AddressOf(request, KeyGroupForKey(request.keys[i], max_parallelism))].push_back(i);
  }
  struct Part {
    std::vector<size_t> indexes;
    absl::Notification answered;
    QueryResponse response;
  };
  std::vector<std::unique_ptr<Part>> parts;
  for (auto& [address, indexes] : groups) {
    auto part = std::make_unique<Part>();
    part->indexes = std::move(indexes);
    QueryRequest sub = request;
    sub.forward = false;
    sub.keys.clear();
    for (size_t i : part->indexes) sub.keys.push_back(request.keys[i]);
    Part* p = part.get();
    connections_->Send(address, std::move(sub), [p](QueryResponse r) {
      p->response = std::move(r);
      p->answered.Notify();
    });
    parts.push_back(std::move(part));
  }
  for (auto& part : parts) {
    part->answered.WaitForNotification();
    for (size_t j = 0; j < part->indexes.size(); ++j) {
      const size_t i = part->indexes[j];
      KeyResult& result = out.results[i];
      if (part->response.status == QueryStatus::kOk && j < part->response.results.size()) {
        result = std::move(part->response.results[j]);
      } else {
        result.status = part->response.status == QueryStatus::kOk ? QueryStatus::kInternal
                                                                  : part->response.status;
        result.message = part->response.message;
      }
      if (result.status == QueryStatus::kMoved || result.status == QueryStatus::kUnavailable) {
        // Routed one by one: Moved followed, Unavailable retried.
        QueryRequest one = request;
        one.type = QueryType::kGet;
        one.keys = {request.keys[i]};
        QueryResponse r = SendRouted(one, KeyGroupForKey(one.keys[0], max_parallelism), deadline);
        if (r.results.size() == 1) {
          result = std::move(r.results[0]);
        } else {
          result.status = r.status;
          result.message = r.message;
        }
      }
    }
  }
  return out;
}

QueryResponse QueryClient::Execute(const QueryRequest& original) {
  const absl::Time deadline = absl::Now() + options_.deadline;
  QueryRequest request = original;
  if (request.type == QueryType::kListStates) return SendRouted(request, 0, deadline);
  if (request.job.empty()) {
    // The job of the states the first worker knows, when they are of one job.
    QueryRequest list;
    list.type = QueryType::kListStates;
    QueryResponse states = SendRouted(list, 0, deadline);
    std::set<std::string> jobs;
    for (const StateInfo& s : states.states) jobs.insert(s.job);
    if (states.status != QueryStatus::kOk) return states;
    if (jobs.size() != 1) {
      return FailedQuery(QueryStatus::kBadRequest,
                         jobs.empty() ? absl::StrCat(options_.address, " serves no job")
                                      : absl::StrCat("name the job: ", options_.address, " serves ",
                                                     absl::StrJoin(jobs, ", ")));
    }
    request.job = *jobs.begin();
  }
  QueryResponse failure;
  const uint32_t max_parallelism = MaxParallelism(request, deadline, &failure);
  if (max_parallelism == 0) return failure;
  switch (request.type) {
    case QueryType::kGet:
      if (request.keys.size() != 1) {
        return FailedQuery(QueryStatus::kBadRequest, "Get takes exactly one key");
      }
      return SendRouted(request, KeyGroupForKey(request.keys[0], max_parallelism), deadline);
    case QueryType::kPrefixScan: {
      uint32_t key_group = 0;
      if (!request.continuation.empty()) {
        absl::StatusOr<ScanPosition> p = DecodeScanPosition(request.continuation);
        if (!p.ok())
          return FailedQuery(QueryStatus::kBadRequest, std::string(p.status().message()));
        key_group = p->key_group;
      }
      return SendRouted(request, key_group, deadline);
    }
    default:
      break;
  }
  QueryResponse response = MultiGet(request, deadline);
  if (request.consistency != Consistency::kCommitted || request.checkpoint_id != 0) {
    return response;
  }
  // Workers may have published different checkpoints: read every key again at the oldest one
  // seen (each keeps the newest two); if that is gone already, try again from the newest.
  for (int attempt = 0; attempt < 3; ++attempt) {
    std::set<uint64_t> ids;
    for (const KeyResult& r : response.results) {
      if (r.status == QueryStatus::kOk) ids.insert(r.checkpoint_id);
    }
    if (ids.size() <= 1) return response;
    request.checkpoint_id = *ids.begin();
    QueryResponse again = MultiGet(request, deadline);
    const bool all_ok =
        std::all_of(again.results.begin(), again.results.end(),
                    [](const KeyResult& r) { return r.status == QueryStatus::kOk; });
    if (all_ok) return again;
    request.checkpoint_id = 0;
    response = MultiGet(request, deadline);
  }
  return response;
}

KeyResult QueryClient::Get(const std::string& job, const std::string& state, const std::string& key,
                           Consistency consistency) {
  QueryRequest request;
  request.type = QueryType::kGet;
  request.job = job;
  request.state = state;
  request.keys = {key};
  request.consistency = consistency;
  QueryResponse response = Execute(request);
  if (response.status != QueryStatus::kOk || response.results.size() != 1) {
    KeyResult r;
    r.status = response.status == QueryStatus::kOk ? QueryStatus::kInternal : response.status;
    r.message = response.message;
    return r;
  }
  return std::move(response.results[0]);
}

QueryResponse QueryClient::ScanAll(const QueryRequest& original,
                                   absl::FunctionRef<bool(const ScanEntry&)> fn) {
  QueryRequest request = original;
  request.type = QueryType::kPrefixScan;
  for (;;) {
    QueryResponse page = Execute(request);
    if (page.status != QueryStatus::kOk) return page;
    for (const ScanEntry& e : page.entries) {
      if (!fn(e)) return QueryResponse();
    }
    if (page.continuation.empty()) return QueryResponse();
    request.continuation = std::move(page.continuation);
  }
}

}  // namespace sluice
