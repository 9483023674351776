#include "statestore/query_server.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/buffer_pool.h"
#include "base/logging.h"
#include "base/status.h"
#include "net/transport.h"
#include "statestore/query_protocol.h"

namespace sluice {
namespace {

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

constexpr size_t kFlushAfterAnswers = 16;

class Server;

// One client connection.
class Session final : public net::ConnectionHandler, public std::enable_shared_from_this<Session> {
 public:
  explicit Session(Server* server) : server_(server), last_receive_ms_(NowMs()) {}

  void Attach(std::shared_ptr<net::Connection> connection) {
    std::lock_guard<std::mutex> lock(mu_);
    connection_ = std::move(connection);
  }
  std::shared_ptr<net::Connection> connection() {
    std::lock_guard<std::mutex> lock(mu_);
    return connection_;
  }

  void OnFrame(net::Connection& connection, const net::FrameHeader& header,
               Buffer payload) override;
  void OnClosed(net::Connection&, const absl::Status&) override {
    std::lock_guard<std::mutex> lock(mu_);
    connection_.reset();
  }

  // An answer left: the kernel took it, or it was dropped with the connection.
  void AnswerTaken() {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    taken_.fetch_add(1, std::memory_order_relaxed);
  }

  // Housekeeping (the server's timer thread): the reason to close the connection now, if any.
  absl::Status Check(int64_t now_ms, const QueryServerOptions& options, QueryServerStats& stats);

 private:
  void Answer(uint32_t id, const QueryResponse& response);

  Server* const server_;
  std::mutex mu_;
  std::shared_ptr<net::Connection> connection_;
  std::atomic<uint32_t> in_flight_{0};
  std::atomic<uint64_t> taken_{0};
  std::atomic<int64_t> last_receive_ms_;
  // Timer thread only.
  uint64_t seen_taken_ = 0;
  int64_t progress_ms_ = 0;
};

// An answer's memory: returned to the heap when the kernel has sent it (or the connection
// dropped it), which is when its request stops counting as in flight.
struct AnswerSegment : MemorySegment {
  std::shared_ptr<Session> session;
};

class AnswerRecycler final : public SegmentRecycler {
 public:
  static AnswerRecycler& Get() {
    static AnswerRecycler recycler;
    return recycler;
  }
  Buffer Allocate(size_t size, std::shared_ptr<Session> session) {
    void* raw = ::operator new(sizeof(AnswerSegment) + size, std::align_val_t(64));
    auto* segment = new (raw) AnswerSegment();
    segment->data = static_cast<char*>(raw) + sizeof(AnswerSegment);
    segment->size = static_cast<uint32_t>(size);
    segment->recycler = this;
    segment->refs.store(1, std::memory_order_relaxed);
    segment->session = std::move(session);
    return Buffer::Adopt(segment);
  }
  void Recycle(MemorySegment* s) override {
    auto* segment = static_cast<AnswerSegment*>(s);
    std::shared_ptr<Session> session = std::move(segment->session);
    segment->~AnswerSegment();
    ::operator delete(static_cast<void*>(segment), std::align_val_t(64));
    if (session != nullptr) session->AnswerTaken();
  }
};

class Server final : public QueryServer {
 public:
  Server(const QueryServerOptions& options, QueryService& service)
      : options_(options), service_(service) {}

  ~Server() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (timer_.joinable()) timer_.join();
    listeners_.clear();
    for (const std::weak_ptr<Session>& weak : Sessions()) {
      if (auto session = weak.lock()) {
        if (auto c = session->connection()) c->Close();
      }
    }
    transports_.clear();  // joins the I/O threads: no callback runs after this
  }

  absl::Status Start() {
    BufferPoolOptions pool_options;
    // Receive segments: an open connection may hold one while a request is partly in, so there
    // are enough for thousands of clients (mapped at once, touched as used).
    pool_options.num_segments = options_.receive_segments;
    pool_options.try_hugepages = false;
    SLUICE_ASSIGN_OR_RETURN(pool_, BufferPool::Create(pool_options));
    size_t threads = QueryIoThreads(options_.io_threads);
    uint16_t port = options_.port;
    for (size_t i = 0; i < threads; ++i) {
      net::TransportOptions t;
      t.pool = pool_.get();
      t.name = options_.name;
      t.token = options_.token;
      t.max_frame_size = std::max<size_t>(options_.max_request_bytes, 1024);
      t.receive_max_segments = options_.receive_segments;
      t.reuse_port = threads > 1;
      // A client that pipelines many requests gets the first answers while the rest are read.
      t.flush_after_frames = kFlushAfterAnswers;
      SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<net::Transport> transport,
                              net::Transport::Create(options_.transport, t));
      if (transport->name() == "memory") threads = 1;  // one listener per memory port
      SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<net::Listener> listener,
                              transport->Listen(options_.host, port,
                                                [this](std::shared_ptr<net::Connection> c)
                                                    -> std::shared_ptr<net::ConnectionHandler> {
                                                  auto session = std::make_shared<Session>(this);
                                                  session->Attach(std::move(c));
                                                  std::lock_guard<std::mutex> lock(mu_);
                                                  sessions_.push_back(session);
                                                  return session;
                                                }));
      port = listener->port();  // the others join the first one's port
      transports_.push_back(std::move(transport));
      listeners_.push_back(std::move(listener));
    }
    timer_ = std::thread([this] { RunTimer(); });
    return absl::OkStatus();
  }

  uint16_t port() const override { return listeners_[0]->port(); }
  std::string address() const override { return listeners_[0]->address(); }
  std::string_view transport_name() const override { return transports_[0]->name(); }
  size_t io_threads() const override { return transports_.size(); }
  const QueryServerStats& stats() const override { return stats_; }

  const QueryServerOptions& options() const { return options_; }
  QueryService& service() { return service_; }
  QueryServerStats& mutable_stats() { return stats_; }

 private:
  std::vector<std::weak_ptr<Session>> Sessions() {
    std::lock_guard<std::mutex> lock(mu_);
    return sessions_;
  }

  void RunTimer() {
    const absl::Duration period =
        std::clamp(std::min(options_.idle_timeout, options_.slow_client_timeout) / 4,
                   absl::Milliseconds(10), absl::Seconds(1));
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, absl::ToChronoMilliseconds(period));
      if (stopping_) break;
      std::vector<std::weak_ptr<Session>> sessions = sessions_;
      lock.unlock();
      const int64_t now = NowMs();
      for (const std::weak_ptr<Session>& weak : sessions) {
        std::shared_ptr<Session> session = weak.lock();
        if (session == nullptr) continue;
        absl::Status close = session->Check(now, options_, stats_);
        if (close.ok()) continue;
        if (auto c = session->connection()) {
          SLUICE_LOG_DEBUG("query server: closing {}: {}", c->peer(), std::string(close.message()));
          c->Abort(close);
        }
      }
      lock.lock();
      std::erase_if(sessions_, [](const std::weak_ptr<Session>& w) {
        auto s = w.lock();
        return s == nullptr || s->connection() == nullptr;
      });
    }
  }

  const QueryServerOptions options_;
  QueryService& service_;
  QueryServerStats stats_;
  std::unique_ptr<BufferPool> pool_;
  std::vector<std::unique_ptr<net::Transport>> transports_;  // one I/O thread each
  std::vector<std::unique_ptr<net::Listener>> listeners_;    // on one port
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<std::weak_ptr<Session>> sessions_;
  std::thread timer_;
};

void Session::OnFrame(net::Connection& connection, const net::FrameHeader& header, Buffer payload) {
  last_receive_ms_.store(NowMs(), std::memory_order_relaxed);
  QueryServerStats& stats = server_->mutable_stats();
  if (header.type != kQueryRequestFrame) {
    connection.Abort(absl::InvalidArgumentError(
        absl::StrCat("query server: unexpected frame type ", net::FrameTypeName(header.type))));
    return;
  }
  stats.requests.fetch_add(1, std::memory_order_relaxed);
  const uint32_t in_flight = in_flight_.fetch_add(1, std::memory_order_relaxed) + 1;
  const uint32_t limit = server_->options().max_in_flight;
  if (in_flight > 2 * limit) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    connection.Abort(absl::ResourceExhaustedError(absl::StrCat(
        "query server: ", in_flight, " requests in flight, twice the limit of ", limit)));
    return;
  }
  QueryResponse refused;
  if (in_flight > limit) {
    stats.refused_in_flight.fetch_add(1, std::memory_order_relaxed);
    refused.status = QueryStatus::kUnavailable;
    refused.message = absl::StrCat(in_flight - 1, " requests in flight on this connection; the ",
                                   "limit is ", limit, ": wait for answers");
    return Answer(header.channel, refused);
  }
  absl::StatusOr<QueryRequest> request = DecodeQueryRequest(payload.readable());
  payload.Release();
  if (!request.ok()) {
    stats.bad_requests.fetch_add(1, std::memory_order_relaxed);
    refused.status = QueryStatus::kBadRequest;
    refused.message = std::string(request.status().message());
    return Answer(header.channel, refused);
  }
  server_->service().Execute(*std::move(request),
                             [self = shared_from_this(), id = header.channel](
                                 QueryResponse response) { self->Answer(id, response); });
}

void Session::Answer(uint32_t id, const QueryResponse& response) {
  const size_t limit = server_->options().max_response_bytes;
  auto allocate = [this](size_t n) {
    return AnswerRecycler::Get().Allocate(n, shared_from_this());
  };
  Buffer answer = EncodeQueryResponse(response, allocate);
  if (answer.readable_bytes() > limit) {
    server_->mutable_stats().too_large.fetch_add(1, std::memory_order_relaxed);
    QueryResponse too_large;
    too_large.status = QueryStatus::kTooLarge;
    too_large.message = absl::StrCat("the answer has ", answer.readable_bytes(),
                                     " bytes; the server sends at most ", limit);
    in_flight_.fetch_add(1, std::memory_order_relaxed);  // the first answer's release counts
    answer = EncodeQueryResponse(too_large, allocate);
  }
  std::shared_ptr<net::Connection> c = connection();
  if (c == nullptr) return;  // closed: dropping the answer releases it
  net::FrameHeader h;
  h.type = kQueryResponseFrame;
  h.channel = id;
  c->Send(h, std::move(answer)).IgnoreError();  // closing: the answer is dropped
}

absl::Status Session::Check(int64_t now_ms, const QueryServerOptions& options,
                            QueryServerStats& stats) {
  const uint64_t taken = taken_.load(std::memory_order_relaxed);
  if (in_flight_.load(std::memory_order_relaxed) == 0 || taken != seen_taken_) {
    seen_taken_ = taken;
    progress_ms_ = now_ms;
  }
  if (in_flight_.load(std::memory_order_relaxed) == 0) {
    const int64_t idle = now_ms - last_receive_ms_.load(std::memory_order_relaxed);
    if (idle > absl::ToInt64Milliseconds(options.idle_timeout)) {
      stats.closed_idle.fetch_add(1, std::memory_order_relaxed);
      return absl::DeadlineExceededError(
          absl::StrCat("query server: connection idle for ", idle, " ms"));
    }
    return absl::OkStatus();
  }
  if (now_ms - progress_ms_ > absl::ToInt64Milliseconds(options.slow_client_timeout)) {
    stats.closed_slow.fetch_add(1, std::memory_order_relaxed);
    return absl::DeadlineExceededError(absl::StrCat(
        "query server: the client read none of its answers for ", now_ms - progress_ms_, " ms"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<QueryServer>> QueryServer::Create(const QueryServerOptions& options,
                                                                 QueryService& service) {
  auto server = std::make_unique<Server>(options, service);
  SLUICE_RETURN_IF_ERROR(server->Start());
  return server;
}

}  // namespace sluice
