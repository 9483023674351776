// The gateway's connections: a Session per connection parses requests, runs them, and keeps a
// queue of reply slots so that replies go out in request order whichever thread completes them.
// Completed replies at the head of the queue go out together in one write.
#include "statestore/resp_gateway.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/sync.h"
#include "statestore/internal/resp_commands.h"

namespace sluice {
namespace {

using statestore_internal::After;
using statestore_internal::Call;
using statestore_internal::ClientState;
using statestore_internal::GatewayContext;
using statestore_internal::Reply;
using statestore_internal::ReplyQueue;

class Session final : public net::StreamHandler,
                      public ReplyQueue,
                      public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<GatewayContext> context, std::shared_ptr<net::StreamConnection> conn)
      : context_(std::move(context)),
        conn_(std::move(conn)),
        max_in_flight_(std::max<size_t>(context_->options.max_in_flight, 1)),
        parser_(context_->options.limits) {
    client_.id = conn_->id();
    client_.authenticated = context_->options.token.empty();
  }

  void OnData(net::StreamConnection&, std::string_view data) override {
    if (done_reading_) return;  // QUIT or a protocol error: what follows is never run
    parser_.Feed(data);
    Pump();
  }
  void OnResumed(net::StreamConnection&) override { Pump(); }
  // The client sent its last request: close once every reply owed is out.
  void OnEndOfInput(net::StreamConnection&) override {
    done_reading_ = true;
    MutexLock lock(&mu_);
    closing_ = true;
    FlushLocked();
  }
  void OnClosed(net::StreamConnection&, const absl::Status& cause) override {
    if (!cause.ok()) SLUICE_LOG_DEBUG("resp client {}: {}", conn_->peer(), cause);
    MutexLock lock(&mu_);
    closed_ = true;
    slots_.clear();
  }

  void Complete(uint64_t slot, std::string reply) override {
    const RespGatewayOptions& options = context_->options;
    if (reply.size() > options.max_reply_bytes) {
      const size_t size = reply.size();
      reply.clear();
      AppendError(&reply, absl::StrFormat("ERR reply of %d bytes exceeds the gateway's limit of "
                                          "%d bytes (max reply bytes)",
                                          size, options.max_reply_bytes));
    }
    if (!reply.empty() && reply[0] == '-') {
      context_->stats.error_replies.fetch_add(1, std::memory_order_relaxed);
    }
    MutexLock lock(&mu_);
    if (closed_) return;
    Slot& s = slots_[slot - first_slot_];
    s.reply = std::move(reply);
    s.done = true;
    if (!dispatching_ && slot == first_slot_) FlushLocked();
  }

 private:
  struct Slot {
    std::string reply;
    bool done = false;
  };

  // Runs the commands parsed so far, as long as the connection has room for more in flight.
  void Pump() {
    {
      MutexLock lock(&mu_);
      dispatching_ = true;
    }
    while (HasRoom()) {
      absl::StatusOr<bool> next = parser_.Next(&args_);
      if (!next.ok()) {
        ProtocolError(next.status());
        break;
      }
      if (!*next) break;
      Run();
    }
    MutexLock lock(&mu_);
    dispatching_ = false;
    FlushLocked();
  }

  // Whether another command may start; pauses reading when the connection is at its limit.
  bool HasRoom() {
    MutexLock lock(&mu_);
    if (closing_ || closed_) return false;
    if (slots_.size() < max_in_flight_) return true;
    FlushLocked();  // replies already complete make room at once
    if (slots_.size() < max_in_flight_) return true;
    paused_ = true;
    conn_->PauseReading();
    return false;
  }

  uint64_t OpenSlot() {
    MutexLock lock(&mu_);
    slots_.emplace_back();
    return first_slot_ + slots_.size() - 1;
  }

  void Run() {
    context_->stats.commands.fetch_add(1, std::memory_order_relaxed);
    const uint64_t slot = OpenSlot();
    const After after = RunCommand(Call{args_, context_, client_, Reply(shared_from_this(), slot)});
    if (after == After::kClose) StopReading();
  }

  // As redis-server: the error, then the connection closes.
  void ProtocolError(const absl::Status& error) {
    context_->stats.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    SLUICE_LOG_DEBUG("resp client {}: protocol error at byte {}: {}", conn_->peer(),
                     parser_.error_offset(), error.message());
    std::string reply;
    AppendError(&reply, absl::StrCat("ERR Protocol error: ", std::string(error.message())));
    Complete(OpenSlot(), std::move(reply));
    StopReading();
  }

  // No more commands: the connection closes once the replies owed are out.
  void StopReading() {
    done_reading_ = true;
    MutexLock lock(&mu_);
    closing_ = true;
  }

  // Writes the completed replies at the head of the queue as one write, then resumes reading or
  // closes as the queue now allows.
  void FlushLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return;
    std::string batch;
    while (!slots_.empty() && slots_.front().done) {
      if (batch.empty()) {
        batch = std::move(slots_.front().reply);
      } else {
        batch += slots_.front().reply;
      }
      slots_.pop_front();
      ++first_slot_;
    }
    // A connection closed under us drops the bytes; OnClosed follows.
    if (!batch.empty()) conn_->Write(std::move(batch)).IgnoreError();
    if (closing_) {
      if (slots_.empty()) conn_->Close();
    } else if (paused_ && slots_.size() < max_in_flight_) {
      paused_ = false;
      conn_->ResumeReading();
    }
  }

  const std::shared_ptr<GatewayContext> context_;
  const std::shared_ptr<net::StreamConnection> conn_;
  const size_t max_in_flight_;

  // I/O thread only.
  RespParser parser_;
  std::vector<std::string_view> args_;
  ClientState client_;
  bool done_reading_ = false;

  Mutex mu_;
  std::deque<Slot> slots_ ABSL_GUARDED_BY(mu_);
  uint64_t first_slot_ ABSL_GUARDED_BY(mu_) = 0;   // the slot number of slots_.front()
  bool dispatching_ ABSL_GUARDED_BY(mu_) = false;  // Pump flushes when it is done
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;  // no more commands; close once replies are out
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

net::StreamServerOptions ServerOptions(const RespGatewayOptions& o) {
  net::StreamServerOptions s;
  s.host = o.host;
  s.port = o.port;
  s.max_connections = o.max_connections;
  s.refusal = "-ERR max number of clients reached\r\n";
  s.idle_timeout = o.idle_timeout;
  s.slow_client_bytes = o.slow_client_bytes;
  s.slow_client_timeout = o.slow_client_timeout;
  s.max_output_bytes = o.max_output_bytes;
  s.io_threads = QueryIoThreads(o.io_threads);
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RespGateway>> RespGateway::Create(
    QueryService& service, const RespGatewayOptions& options) {
  auto context = std::make_shared<GatewayContext>(&service, options);
  SLUICE_ASSIGN_OR_RETURN(
      std::unique_ptr<net::StreamServer> server,
      net::StreamServer::Create(ServerOptions(options),
                                [context](const std::shared_ptr<net::StreamConnection>& c) {
                                  return std::make_shared<Session>(context, c);
                                }));
  context->server.store(server.get());
  SLUICE_LOG_INFO("RESP gateway for job '{}' listening on {} ({} reads{})", options.job,
                  server->address(), ConsistencyName(options.consistency),
                  options.token.empty() ? "" : ", token required");
  return std::unique_ptr<RespGateway>(new RespGateway(std::move(context), std::move(server)));
}

RespGateway::RespGateway(std::shared_ptr<statestore_internal::GatewayContext> context,
                         std::unique_ptr<net::StreamServer> server)
    : context_(std::move(context)), server_(std::move(server)) {}

RespGateway::~RespGateway() {
  server_.reset();  // closes every connection and joins the I/O thread
  context_->server.store(nullptr);
}

const RespGatewayStats& RespGateway::stats() const { return context_->stats; }

}  // namespace sluice
