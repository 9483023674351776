#include "shuffle/net_shuffle.h"

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "net/transport.h"
#include "shuffle/internal/received_queue.h"
#include "shuffle/net_messages.h"
#include "shuffle/shuffle_service.h"

namespace sluice {
namespace {

using netshuffle::ErrorCode;

constexpr std::string_view kOptionKeys[] = {
    "shuffle.net.bind",
    "shuffle.net.transport",
    "shuffle.net.connections-per-worker",
    "shuffle.net.token",
    "shuffle.net.zero-copy-threshold",
    "shuffle.net.direct-send-limit",
    "shuffle.net.retry-initial-backoff",
    "shuffle.net.retry-max-backoff",
    "shuffle.net.heartbeat-interval",
    "shuffle.net.connection-timeout",
};

// A connect attempt gives up after this long and is repeated, so that closing the environment
// never waits long for a connect in progress.
constexpr absl::Duration kConnectSlice = absl::Milliseconds(500);

absl::Status ParseHostPort(std::string_view what, std::string_view address, std::string* host,
                           uint16_t* port) {
  const size_t colon = address.rfind(':');
  uint32_t p = 0;
  if (colon == std::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address.data() + colon + 1, address.size() - colon - 1),
                        &p) ||
      p > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: expected host:port, got '%s'", what, std::string(address)));
  }
  *host = std::string(address.substr(0, colon));
  *port = static_cast<uint16_t>(p);
  return absl::OkStatus();
}

struct NetOptions {
  std::string bind_host = "127.0.0.1";
  uint16_t bind_port = 0;
  std::string transport = "auto";
  uint32_t connections_per_worker = 1;
  std::string token;
  uint64_t zero_copy_threshold = 0;
  uint64_t direct_send_limit = net::TransportOptions{}.direct_send_limit;
  absl::Duration retry_initial_backoff = absl::Milliseconds(5);
  absl::Duration retry_max_backoff = absl::Milliseconds(500);
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration connection_timeout = absl::Seconds(10);

  static absl::StatusOr<NetOptions> FromConfig(const Config& c) {
    NetOptions o;
    SLUICE_RETURN_IF_ERROR(ParseHostPort("shuffle.net.bind",
                                         c.GetString("shuffle.net.bind", "127.0.0.1:0"),
                                         &o.bind_host, &o.bind_port));
    o.transport = c.GetString("shuffle.net.transport", o.transport);
    SLUICE_ASSIGN_OR_RETURN(int64_t connections,
                            c.GetInt("shuffle.net.connections-per-worker", 1, 1, 64));
    o.connections_per_worker = static_cast<uint32_t>(connections);
    o.token = c.GetString("shuffle.net.token", "");
    SLUICE_ASSIGN_OR_RETURN(o.zero_copy_threshold,
                            c.GetBytes("shuffle.net.zero-copy-threshold", 0));
    SLUICE_ASSIGN_OR_RETURN(o.direct_send_limit,
                            c.GetBytes("shuffle.net.direct-send-limit", o.direct_send_limit));
    SLUICE_ASSIGN_OR_RETURN(
        o.retry_initial_backoff,
        c.GetDuration("shuffle.net.retry-initial-backoff", o.retry_initial_backoff));
    SLUICE_ASSIGN_OR_RETURN(o.retry_max_backoff,
                            c.GetDuration("shuffle.net.retry-max-backoff", o.retry_max_backoff));
    SLUICE_ASSIGN_OR_RETURN(o.heartbeat_interval,
                            c.GetDuration("shuffle.net.heartbeat-interval", o.heartbeat_interval));
    SLUICE_ASSIGN_OR_RETURN(o.connection_timeout,
                            c.GetDuration("shuffle.net.connection-timeout", o.connection_timeout));
    const std::pair<std::string_view, absl::Duration> positive[] = {
        {"shuffle.net.retry-initial-backoff", o.retry_initial_backoff},
        {"shuffle.net.retry-max-backoff", o.retry_max_backoff},
        {"shuffle.net.heartbeat-interval", o.heartbeat_interval},
        {"shuffle.net.connection-timeout", o.connection_timeout},
    };
    for (const auto& [key, value] : positive) {
      if (value <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s must be positive, got %s", key, absl::FormatDuration(value)));
      }
    }
    if (o.heartbeat_interval >= o.connection_timeout) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "shuffle.net.heartbeat-interval (%s) must be shorter than shuffle.net.connection-timeout "
          "(%s)",
          absl::FormatDuration(o.heartbeat_interval), absl::FormatDuration(o.connection_timeout)));
    }
    return o;
  }
};

void SendControl(net::Connection& connection, const netshuffle::ControlMessage& message) {
  // A failure means the connection is closing; its OnClosed cleans up.
  (void)connection.Send(netshuffle::ControlHeader(), netshuffle::EncodeControl(message));
}

// ================================================================ producer side

// One subpartition sent on one connection: polls the view while the consumer has credit.
class ServerChannel final : public SubpartitionListener {
 public:
  ServerChannel(std::shared_ptr<net::Connection> connection, uint32_t channel, uint32_t credit)
      : connection_(std::move(connection)), channel_(channel), credit_(credit) {}

  void Attach(std::unique_ptr<SubpartitionView> view) {
    {
      MutexLock lock(&mu_);
      if (released_) return;  // the view's destructor releases the subpartition
      view_ = std::move(view);
    }
    Pump();
  }

  void OnDataAvailable(bool /*priority*/) override { Pump(); }

  void AddCredit(uint32_t credit) {
    {
      MutexLock lock(&mu_);
      credit_ += credit;
    }
    Pump();
  }

  // Drops the view: the subpartition releases its buffers. Idempotent.
  void Release() {
    std::unique_ptr<SubpartitionView> view;
    {
      MutexLock lock(&mu_);
      released_ = true;
      view = std::move(view_);
    }
  }

 private:
  // Sends what the subpartition offers, data only against credit; events always.
  void Pump() {
    std::unique_ptr<SubpartitionView> failed_view;  // released after the lock
    MutexLock lock(&mu_);
    while (!released_ && view_ != nullptr) {
      absl::StatusOr<std::optional<PolledBuffer>> polled = view_->Poll(credit_ > 0);
      if (!polled.ok()) {
        SendControl(*connection_,
                    netshuffle::ErrorResponse{channel_, false, ErrorCode::kPartitionFailed,
                                              std::string(polled.status().message()),
                                              polled.status().code()});
        released_ = true;
        failed_view = std::move(view_);
        return;
      }
      if (!polled->has_value()) {
        // Data waits without credit while the consumer believes nothing is queued (the last
        // buffer it got said backlog 0): announce the backlog so that it can lend floating
        // buffers now. Otherwise the consumer knows; it returns credit as it reads, and each
        // buffer sent carries the current backlog.
        const uint32_t backlog = view_->backlog();
        if (credit_ == 0 && reported_backlog_ == 0 && backlog > 0) {
          reported_backlog_ = backlog;
          SendControl(*connection_, netshuffle::BacklogAnnouncement{channel_, backlog});
        }
        return;
      }
      PolledBuffer& p = **polled;
      if (p.type == DataType::kData) {
        --credit_;
        reported_backlog_ = p.backlog;
      }
      const net::FrameHeader header = netshuffle::BufferResponseHeader(
          netshuffle::BufferResponse{channel_, sequence_++, p.backlog, p.type});
      // A small buffer is one flushed early, so someone is waiting for it: it goes out from
      // this thread when the connection is idle. Full ones go through the I/O thread.
      if (!connection_->SendDirect(header, std::move(p.buffer)).ok()) return;  // closing
    }
  }

  const std::shared_ptr<net::Connection> connection_;
  const uint32_t channel_;
  Mutex mu_;
  uint32_t credit_ ABSL_GUARDED_BY(mu_);
  uint32_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t reported_backlog_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<SubpartitionView> view_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// The partitions of one worker, which its data server serves. Thread-safe.
class PartitionDirectory {
 public:
  explicit PartitionDirectory(std::string worker_id) : worker_id_(std::move(worker_id)) {}
  std::shared_ptr<ResultPartition> FindPartition(const PartitionId& id) {
    MutexLock lock(&mu_);
    auto it = partitions_.find(id);
    return it == partitions_.end() ? nullptr : it->second;
  }
  const std::string& worker_id() const { return worker_id_; }
  absl::Status Add(const PartitionId& id, std::shared_ptr<ResultPartition> p) {
    MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("the net shuffle environment is closed");
    if (!partitions_.emplace(id, std::move(p)).second) {
      return absl::AlreadyExistsError(
          absl::StrFormat("partition %s already exists on worker %s", id.ToString(), worker_id_));
    }
    return absl::OkStatus();
  }
  std::shared_ptr<ResultPartition> Remove(const PartitionId& id) {
    MutexLock lock(&mu_);
    auto it = partitions_.find(id);
    if (it == partitions_.end()) return nullptr;
    std::shared_ptr<ResultPartition> p = std::move(it->second);
    partitions_.erase(it);
    return p;
  }
  absl::flat_hash_map<PartitionId, std::shared_ptr<ResultPartition>> TakeAll() {
    MutexLock lock(&mu_);
    closed_ = true;
    return std::exchange(partitions_, {});
  }
  size_t size() const {
    MutexLock lock(&mu_);
    return partitions_.size();
  }

 private:
  const std::string worker_id_;
  mutable Mutex mu_;
  absl::flat_hash_map<PartitionId, std::shared_ptr<ResultPartition>> partitions_
      ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The data server's side of one connection: the channels a consumer worker reads from here.
class ServerConnection final : public net::ConnectionHandler {
 public:
  ServerConnection(std::shared_ptr<PartitionDirectory> directory,
                   std::shared_ptr<net::Connection> connection)
      : directory_(std::move(directory)), connection_(std::move(connection)) {}

  void OnFrame(net::Connection& connection, const net::FrameHeader& header,
               Buffer payload) override {
    if (header.type != netshuffle::kControlFrame) {
      Refuse(connection, absl::StrFormat("unexpected frame type %s from a shuffle consumer",
                                         net::FrameTypeName(header.type)));
      return;
    }
    absl::StatusOr<netshuffle::ControlMessage> message =
        netshuffle::DecodeControl(payload.valid() ? payload.readable() : std::string_view());
    if (!message.ok()) {
      Refuse(connection, std::string(message.status().message()),
             absl::IsFailedPrecondition(message.status()) ? ErrorCode::kUnsupportedVersion
                                                          : ErrorCode::kBadRequest);
      return;
    }
    std::visit([&](auto& m) { Handle(connection, m); }, *message);
  }

  void OnClosed(net::Connection& /*connection*/, const absl::Status& cause) override {
    if (!cause.ok()) {
      SLUICE_LOG_DEBUG("shuffle data connection from {} closed: {}", connection_->peer(),
                       cause.message());
    }
    ReleaseAll();
  }

 private:
  void Handle(net::Connection& c, const netshuffle::PartitionRequest& m) {
    auto fail = [&](ErrorCode code, std::string message) {
      SendControl(c, netshuffle::ErrorResponse{m.channel, false, code, std::move(message)});
    };
    std::shared_ptr<ResultPartition> partition = directory_->FindPartition(m.partition);
    if (partition == nullptr) {
      fail(ErrorCode::kPartitionNotFound,
           absl::StrFormat("partition %s is not produced on worker %s", m.partition.ToString(),
                           directory_->worker_id()));
      return;
    }
    auto channel = std::make_shared<ServerChannel>(connection_, m.channel, m.initial_credit);
    {
      MutexLock lock(&mu_);
      if (!channels_.emplace(m.channel, channel).second) {
        fail(ErrorCode::kBadRequest,
             absl::StrFormat("channel %d is already in use on this connection", m.channel));
        return;
      }
    }
    absl::StatusOr<std::unique_ptr<SubpartitionView>> view =
        partition->CreateView(m.subpartition, channel);
    if (!view.ok()) {
      Forget(m.channel);
      fail(absl::IsOutOfRange(view.status()) || absl::IsInvalidArgument(view.status()) ||
                   absl::IsAlreadyExists(view.status()) || absl::IsFailedPrecondition(view.status())
               ? ErrorCode::kBadRequest
               : ErrorCode::kPartitionFailed,
           absl::StrFormat("partition %s on worker %s: %s", m.partition.ToString(),
                           directory_->worker_id(), view.status().message()));
      return;
    }
    channel->Attach(*std::move(view));
  }
  void Handle(net::Connection& c, const netshuffle::AddCredit& m) {
    if (std::shared_ptr<ServerChannel> ch = Find(c, m.channel, "AddCredit"))
      ch->AddCredit(m.credit);
  }
  void Handle(net::Connection& /*c*/, const netshuffle::CancelPartitionRequest& m) {
    // A consumer may cancel a channel the server already ended (failure): nothing to do then.
    if (std::shared_ptr<ServerChannel> ch = Forget(m.channel)) ch->Release();
  }
  void Handle(net::Connection& c, const netshuffle::ResumeConsumption& m) {
    // Producers do not block their subpartitions after a barrier yet; the request only has to
    // name a live channel.
    (void)Find(c, m.channel, "ResumeConsumption");
  }
  void Handle(net::Connection& c, const netshuffle::CloseRequest&) {
    ReleaseAll();
    c.Close();
  }
  void Handle(net::Connection& c, const netshuffle::ErrorResponse& m) {
    SLUICE_LOG_WARN("shuffle consumer {} reports: {}", c.peer(), m.message);
    if (m.whole_connection) {
      ReleaseAll();
      c.Close();
    } else if (std::shared_ptr<ServerChannel> ch = Forget(m.channel)) {
      ch->Release();
    }
  }
  void Handle(net::Connection& c, const netshuffle::BacklogAnnouncement&) {
    Refuse(c, "BacklogAnnouncement is sent by producers, not to them");
  }

  std::shared_ptr<ServerChannel> Find(net::Connection& c, uint32_t channel, std::string_view what) {
    {
      MutexLock lock(&mu_);
      auto it = channels_.find(channel);
      if (it != channels_.end()) return it->second;
    }
    SendControl(
        c, netshuffle::ErrorResponse{channel, false, ErrorCode::kBadRequest,
                                     absl::StrFormat("%s for unknown channel %d", what, channel)});
    return nullptr;
  }
  std::shared_ptr<ServerChannel> Forget(uint32_t channel) {
    MutexLock lock(&mu_);
    auto it = channels_.find(channel);
    if (it == channels_.end()) return nullptr;
    std::shared_ptr<ServerChannel> ch = std::move(it->second);
    channels_.erase(it);
    return ch;
  }
  void ReleaseAll() {
    absl::flat_hash_map<uint32_t, std::shared_ptr<ServerChannel>> channels;
    {
      MutexLock lock(&mu_);
      channels.swap(channels_);
    }
    for (auto& [id, ch] : channels) ch->Release();
  }
  // Malformed input: tell the consumer why, then close; other connections are untouched.
  void Refuse(net::Connection& c, std::string message, ErrorCode code = ErrorCode::kBadRequest) {
    SLUICE_LOG_WARN("closing shuffle data connection from {}: {}", c.peer(), message);
    SendControl(c, netshuffle::ErrorResponse{0, true, code, std::move(message)});
    ReleaseAll();
    c.Close();
  }

  const std::shared_ptr<PartitionDirectory> directory_;
  const std::shared_ptr<net::Connection> connection_;
  Mutex mu_;
  absl::flat_hash_map<uint32_t, std::shared_ptr<ServerChannel>> channels_ ABSL_GUARDED_BY(mu_);
};

// ================================================================ consumer side

class ClientConnection;

// What a remote channel shares with its connection, the floating credits and timers.
class RemoteChannelCore final : public FloatingCreditWaiter,
                                public std::enable_shared_from_this<RemoteChannelCore> {
 public:
  RemoteChannelCore(ChannelOwner* gate, uint32_t index, InputChannelSpec spec,
                    std::shared_ptr<LocalBufferPool> buffers, std::shared_ptr<TimerService> timer,
                    const NetOptions& options, absl::Duration request_timeout)
      : gate_(gate),
        index_(index),
        spec_(std::move(spec)),
        description_(absl::StrFormat(
            "partition %s subpartition %d on worker %s at %s", spec_.partition.partition.ToString(),
            spec_.subpartition, spec_.partition.producer_worker, spec_.partition.producer_address)),
        buffers_(std::move(buffers)),
        timer_(std::move(timer)),
        request_timeout_(request_timeout),
        initial_backoff_(options.retry_initial_backoff),
        max_backoff_(options.retry_max_backoff),
        credit_(gate->exclusive_credits_per_channel()) {}

  const std::string& description() const { return description_; }

  // Starts reading over `connection` (which may still be connecting).
  void Start(std::shared_ptr<ClientConnection> connection);

  // ---- From the connection (I/O thread).
  Buffer ReceiveBuffer() { return buffers_->TryRequest(); }
  void OnBuffer(const netshuffle::BufferResponse& r, Buffer payload);
  void OnBacklog(uint32_t backlog) {
    uint32_t grant = 0;
    {
      MutexLock lock(&mu_);
      if (!Live()) return;
      RequestFloating(credit_.OnBacklog(backlog));
      grant = TakeCreditToAnnounce();
    }
    AnnounceCredit(grant);
  }
  void OnError(const netshuffle::ErrorResponse& e);
  void Fail(absl::Status cause) {
    MutexLock lock(&mu_);
    FailLocked(std::move(cause));
  }

  // ---- InputChannel.
  absl::StatusOr<std::optional<ReceivedBuffer>> Poll(bool priority_only) {
    MutexLock lock(&mu_);
    if (!failure_.ok()) {
      received_.TakeAll();
      return failure_;
    }
    return received_.Pop(priority_only);
  }
  void OnBufferConsumed() {
    uint32_t give_back = 0;
    uint32_t grant = 0;
    {
      MutexLock lock(&mu_);
      give_back = credit_.OnBufferConsumed();
      if (Live()) grant = TakeCreditToAnnounce();
    }
    if (give_back > 0) gate_->floating_credits().Return(give_back);
    AnnounceCredit(grant);
  }
  void Release();
  ChannelStats stats() const {
    MutexLock lock(&mu_);
    return MakeChannelStats(credit_, buffers_received_);
  }

  // FloatingCreditWaiter.
  void OnFloatingCredit() override {
    bool give_back = false;
    uint32_t grant = 0;
    {
      MutexLock lock(&mu_);
      give_back = !Live() || !credit_.OnFloatingArrived();
      if (!give_back) grant = TakeCreditToAnnounce();
    }
    if (give_back) gate_->floating_credits().Return(1);
    AnnounceCredit(grant);
  }

 private:
  bool Live() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !released_ && failure_.ok(); }
  void FailLocked(absl::Status cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!Live()) return;
    failure_ = std::move(cause);
    gate_->NotifyChannelNonEmpty(index_, false);
  }
  void RequestFloating(uint32_t wanted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    credit_.RequestFloating(wanted, gate_->floating_credits(), shared_from_this());
  }
  // Credit the producer has not been told of yet: what the channel could hold now, less what the
  // producer may already send.
  uint32_t TakeCreditToAnnounce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!requested_) return 0;  // the next PartitionRequest carries it
    const uint32_t available = credit_.available();
    if (available <= producer_credit_) return 0;
    const uint32_t delta = available - producer_credit_;
    producer_credit_ = available;
    return delta;
  }
  void AnnounceCredit(uint32_t credit);
  void SendRequest();
  void ScheduleRetry(const std::string& answer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ChannelOwner* const gate_;
  const uint32_t index_;
  const InputChannelSpec spec_;
  const std::string description_;
  const std::shared_ptr<LocalBufferPool> buffers_;
  const std::shared_ptr<TimerService> timer_;
  const absl::Duration request_timeout_;
  const absl::Duration initial_backoff_;
  const absl::Duration max_backoff_;

  mutable Mutex mu_;
  std::shared_ptr<ClientConnection> connection_ ABSL_GUARDED_BY(mu_);
  uint32_t channel_id_ ABSL_GUARDED_BY(mu_) = 0;
  ChannelCredit credit_ ABSL_GUARDED_BY(mu_);
  // What the producer may send now, as far as this side knows.
  uint32_t producer_credit_ ABSL_GUARDED_BY(mu_) = 0;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;  // a PartitionRequest is being served
  uint32_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time deadline_ ABSL_GUARDED_BY(mu_);
  absl::Duration backoff_ ABSL_GUARDED_BY(mu_);
  TimerService::TimerId retry_timer_ ABSL_GUARDED_BY(mu_) = 0;
  internal::ReceivedQueue received_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t buffers_received_ ABSL_GUARDED_BY(mu_) = 0;
};

// One connection to a producer worker, shared by every channel that reads from it. Created
// while it connects; frames sent before the connection is up wait in order.
class ClientConnection final : public net::ConnectionHandler,
                               public std::enable_shared_from_this<ClientConnection> {
 public:
  ClientConnection(std::string worker, std::string address, std::shared_ptr<TimerService> timer,
                   const NetOptions& options)
      : worker_(std::move(worker)),
        address_(std::move(address)),
        timer_(std::move(timer)),
        heartbeat_interval_(options.heartbeat_interval),
        connection_timeout_(options.connection_timeout) {}

  bool usable() const {
    MutexLock lock(&mu_);
    return failure_.ok() && !closing_;
  }

  // Registers a channel; returns its id on this connection, or the connection's failure.
  absl::StatusOr<uint32_t> Add(std::shared_ptr<RemoteChannelCore> channel) {
    MutexLock lock(&mu_);
    if (!failure_.ok()) return failure_;
    const uint32_t id = next_channel_++;
    channels_.emplace(id, std::move(channel));
    return id;
  }
  // A channel is done: the producer is told and, with the last channel, the connection closes.
  void Remove(uint32_t id) {
    std::shared_ptr<net::Connection> close;
    {
      MutexLock lock(&mu_);
      if (channels_.erase(id) == 0 || !failure_.ok()) return;
      SendLocked(netshuffle::ControlHeader(),
                 netshuffle::EncodeControl(netshuffle::CancelPartitionRequest{id}));
      if (channels_.empty()) {
        SendLocked(netshuffle::ControlHeader(),
                   netshuffle::EncodeControl(netshuffle::CloseRequest{}));
        closing_ = true;
        close = connection_;
      }
    }
    if (close != nullptr) close->Close();
  }

  void Send(const netshuffle::ControlMessage& message) {
    Buffer payload = netshuffle::EncodeControl(message);
    MutexLock lock(&mu_);
    if (failure_.ok()) SendLocked(netshuffle::ControlHeader(), std::move(payload));
  }

  // The connect attempt's outcome (connector thread).
  void OnConnected(absl::StatusOr<std::shared_ptr<net::Connection>> connection) {
    if (!connection.ok()) {
      FailAll(
          absl::UnavailableError(absl::StrFormat("cannot connect to worker %s at %s: %s", worker_,
                                                 address_, connection.status().message())));
      return;
    }
    std::deque<Pending> pending;
    {
      MutexLock lock(&mu_);
      if (!failure_.ok()) {
        // Failed (or the environment closed) while connecting.
        (*connection)->Close();
        return;
      }
      connection_ = *connection;
      pending.swap(pending_);
      // Queued frames go first, under the lock, so that later sends stay behind them.
      for (Pending& p : pending) (void)connection_->Send(p.header, std::move(p.payload));
      last_heard_ = absl::Now();
    }
    ScheduleHeartbeat();
  }

  // ---- net::ConnectionHandler (I/O thread).
  void OnFrame(net::Connection& c, const net::FrameHeader& header, Buffer payload) override {
    heard_.store(true, std::memory_order_relaxed);
    if (header.type == netshuffle::kBufferFrame) {
      absl::StatusOr<netshuffle::BufferResponse> r = netshuffle::DecodeBufferResponse(header);
      if (!r.ok()) {
        Refuse(c, r.status());
        return;
      }
      if (std::shared_ptr<RemoteChannelCore> ch = Find(r->channel)) {
        ch->OnBuffer(*r, std::move(payload));
      }
      return;
    }
    if (header.type == static_cast<uint8_t>(net::FrameType::kPong)) return;
    if (header.type != netshuffle::kControlFrame) {
      Refuse(c, absl::InvalidArgumentError(
                    absl::StrFormat("unexpected frame type %s from a shuffle producer",
                                    net::FrameTypeName(header.type))));
      return;
    }
    absl::StatusOr<netshuffle::ControlMessage> m =
        netshuffle::DecodeControl(payload.valid() ? payload.readable() : std::string_view());
    if (!m.ok()) {
      Refuse(c, m.status());
      return;
    }
    if (const auto* backlog = std::get_if<netshuffle::BacklogAnnouncement>(&*m)) {
      if (std::shared_ptr<RemoteChannelCore> ch = Find(backlog->channel)) {
        ch->OnBacklog(backlog->backlog);
      }
    } else if (const auto* error = std::get_if<netshuffle::ErrorResponse>(&*m)) {
      if (error->whole_connection) {
        FailAll(absl::UnavailableError(absl::StrFormat("worker %s at %s closed the connection: %s",
                                                       worker_, address_, error->message)));
      } else if (std::shared_ptr<RemoteChannelCore> ch = Find(error->channel)) {
        ch->OnError(*error);
      }
    } else {
      Refuse(c, absl::InvalidArgumentError(absl::StrFormat("%s is sent by consumers, not to them",
                                                           netshuffle::MessageName(*m))));
    }
  }

  Buffer ReceiveBuffer(const net::FrameHeader& header) override {
    if (header.type != netshuffle::kBufferFrame ||
        header.flags != static_cast<uint16_t>(DataType::kData)) {
      return Buffer();
    }
    std::shared_ptr<RemoteChannelCore> ch = Find(header.channel);
    return ch != nullptr ? ch->ReceiveBuffer() : Buffer();
  }

  void OnClosed(net::Connection& /*c*/, const absl::Status& cause) override {
    bool expected = false;
    {
      MutexLock lock(&mu_);
      expected = closing_ && channels_.empty();
    }
    if (expected) return;
    FailAll(absl::UnavailableError(absl::StrFormat(
        "connection to worker %s at %s lost: %s", worker_, address_,
        cause.ok() ? std::string("the producer worker closed it while channels were still open "
                                 "(did its process exit?)")
                   : std::string(cause.message()))));
  }

  void FailAll(absl::Status cause) {
    absl::flat_hash_map<uint32_t, std::shared_ptr<RemoteChannelCore>> channels;
    std::shared_ptr<net::Connection> connection;
    {
      MutexLock lock(&mu_);
      if (!failure_.ok()) return;
      failure_ = cause;
      channels.swap(channels_);
      pending_.clear();
      connection = connection_;
      timer_->Cancel(heartbeat_);
    }
    for (auto& [id, ch] : channels) ch->Fail(cause);
    if (connection != nullptr) connection->Abort(cause);
  }

  size_t open() const {
    MutexLock lock(&mu_);
    return connection_ != nullptr && failure_.ok() && !closing_ ? 1 : 0;
  }

 private:
  struct Pending {
    net::FrameHeader header;
    Buffer payload;
  };

  void SendLocked(const net::FrameHeader& header, Buffer payload)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (connection_ == nullptr) {
      pending_.push_back(Pending{header, std::move(payload)});
    } else {
      (void)connection_->Send(header, std::move(payload));
    }
  }

  std::shared_ptr<RemoteChannelCore> Find(uint32_t id) {
    MutexLock lock(&mu_);
    auto it = channels_.find(id);
    return it == channels_.end() ? nullptr : it->second;
  }

  void Refuse(net::Connection& c, const absl::Status& cause) {
    SendControl(c, netshuffle::ErrorResponse{0, true, ErrorCode::kBadRequest,
                                             std::string(cause.message())});
    FailAll(absl::DataLossError(absl::StrFormat("worker %s at %s sent a malformed frame: %s",
                                                worker_, address_, cause.message())));
  }

  // Pings an idle connection; fails it when nothing arrived for connection_timeout.
  void ScheduleHeartbeat() {
    std::weak_ptr<ClientConnection> weak = weak_from_this();
    MutexLock lock(&mu_);
    if (!failure_.ok() || closing_) return;
    heartbeat_ = timer_->Schedule(heartbeat_interval_, [weak] {
      if (auto self = weak.lock()) self->Heartbeat();
    });
  }
  void Heartbeat() {
    std::shared_ptr<net::Connection> connection;
    absl::Duration silent;
    {
      MutexLock lock(&mu_);
      if (!failure_.ok() || closing_) return;
      if (heard_.exchange(false, std::memory_order_relaxed)) last_heard_ = absl::Now();
      silent = absl::Now() - last_heard_;
      connection = connection_;
    }
    if (silent >= connection_timeout_) {
      FailAll(absl::DeadlineExceededError(
          absl::StrFormat("worker %s at %s sent nothing for %s (shuffle.net.connection-timeout)",
                          worker_, address_, absl::FormatDuration(silent))));
      return;
    }
    net::FrameHeader ping;
    ping.type = static_cast<uint8_t>(net::FrameType::kPing);
    (void)connection->Send(ping, Buffer());
    ScheduleHeartbeat();
  }

  const std::string worker_;
  const std::string address_;
  const std::shared_ptr<TimerService> timer_;
  const absl::Duration heartbeat_interval_;
  const absl::Duration connection_timeout_;
  std::atomic<bool> heard_{false};

  mutable Mutex mu_;
  std::shared_ptr<net::Connection> connection_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint32_t, std::shared_ptr<RemoteChannelCore>> channels_ ABSL_GUARDED_BY(mu_);
  uint32_t next_channel_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_heard_ ABSL_GUARDED_BY(mu_);
  TimerService::TimerId heartbeat_ ABSL_GUARDED_BY(mu_) = 0;
};

void RemoteChannelCore::Start(std::shared_ptr<ClientConnection> connection) {
  {
    MutexLock lock(&mu_);
    if (!Live()) return;
    deadline_ = absl::Now() + request_timeout_;
    backoff_ = initial_backoff_;
    absl::StatusOr<uint32_t> id = connection->Add(shared_from_this());
    if (!id.ok()) {
      FailLocked(id.status());
      return;
    }
    connection_ = std::move(connection);
    channel_id_ = *id;
  }
  SendRequest();
}

void RemoteChannelCore::SendRequest() {
  std::shared_ptr<ClientConnection> connection;
  netshuffle::PartitionRequest request;
  {
    MutexLock lock(&mu_);
    if (!Live()) return;
    retry_timer_ = 0;
    requested_ = true;
    next_sequence_ = 0;
    producer_credit_ = credit_.available();
    request = netshuffle::PartitionRequest{spec_.partition.partition, spec_.subpartition,
                                           channel_id_, producer_credit_};
    connection = connection_;
  }
  connection->Send(request);
}

void RemoteChannelCore::ScheduleRetry(const std::string& answer) {
  const absl::Time now = absl::Now();
  if (now >= deadline_) {
    FailLocked(absl::NotFoundError(absl::StrFormat(
        "%s: not available within %s (shuffle.partition-request-timeout); the producer's last "
        "answer: %s",
        description_, absl::FormatDuration(request_timeout_), answer)));
    return;
  }
  requested_ = false;
  std::weak_ptr<RemoteChannelCore> weak = weak_from_this();
  // The last attempt is made at the deadline itself.
  retry_timer_ = timer_->Schedule(std::min(backoff_, deadline_ - now), [weak] {
    if (auto self = weak.lock()) self->SendRequest();
  });
  backoff_ = std::min(backoff_ * 2, max_backoff_);
}

void RemoteChannelCore::OnError(const netshuffle::ErrorResponse& e) {
  MutexLock lock(&mu_);
  if (!Live()) return;
  if (e.code == ErrorCode::kPartitionNotFound) {
    ScheduleRetry(e.message);
    return;
  }
  FailLocked(absl::Status(
      e.status_code, absl::StrFormat("%s: the producer failed the channel "
                                     "(%s): %s",
                                     description_, netshuffle::ErrorCodeName(e.code), e.message)));
}

void RemoteChannelCore::OnBuffer(const netshuffle::BufferResponse& r, Buffer payload) {
  bool notify = false;
  bool priority = false;
  uint32_t grant = 0;
  {
    MutexLock lock(&mu_);
    if (!Live()) return;
    if (r.sequence != next_sequence_) {
      FailLocked(absl::DataLossError(absl::StrFormat(
          "%s: expected buffer %d, received buffer %d (buffers were lost or reordered)",
          description_, next_sequence_, r.sequence)));
      return;
    }
    ++next_sequence_;
    notify = received_.empty();
    priority = r.type == DataType::kPriorityEvent;
    received_.Push(std::move(payload), r.type);
    if (r.type == DataType::kData) {
      ++buffers_received_;
      if (producer_credit_ > 0) --producer_credit_;
      RequestFloating(credit_.OnBufferReceived(r.backlog));
      grant = TakeCreditToAnnounce();
    }
    // Under the lock, so that nothing reaches the gate after Release.
    if (priority) gate_->NotifyChannelNonEmpty(index_, true);
    if (notify) gate_->NotifyChannelNonEmpty(index_, false);
  }
  AnnounceCredit(grant);
}

void RemoteChannelCore::AnnounceCredit(uint32_t credit) {
  if (credit == 0) return;
  std::shared_ptr<ClientConnection> connection;
  uint32_t id = 0;
  {
    MutexLock lock(&mu_);
    connection = connection_;
    id = channel_id_;
  }
  if (connection != nullptr) connection->Send(netshuffle::AddCredit{id, credit});
}

void RemoteChannelCore::Release() {
  internal::ReceivedQueue dropped;
  std::shared_ptr<ClientConnection> connection;
  uint32_t id = 0;
  uint32_t give_back = 0;
  {
    MutexLock lock(&mu_);
    if (released_) return;
    released_ = true;
    dropped = received_.TakeAll();
    give_back = credit_.ReleaseAll();
    connection = std::move(connection_);
    id = channel_id_;
    if (retry_timer_ != 0) timer_->Cancel(retry_timer_);
  }
  dropped = {};
  gate_->floating_credits().CancelWaits(this);
  if (give_back > 0) gate_->floating_credits().Return(give_back);
  if (connection != nullptr) connection->Remove(id);
}

class RemoteInputChannel final : public InputChannel {
 public:
  RemoteInputChannel(std::shared_ptr<RemoteChannelCore> core,
                     std::function<absl::StatusOr<std::shared_ptr<ClientConnection>>()> connect)
      : core_(std::move(core)), connect_(std::move(connect)) {}
  ~RemoteInputChannel() override { core_->Release(); }

  absl::Status Request() override {
    absl::StatusOr<std::shared_ptr<ClientConnection>> connection = connect_();
    if (!connection.ok()) {
      core_->Fail(connection.status());
    } else {
      core_->Start(*std::move(connection));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<ReceivedBuffer>> Poll(bool priority_only) override {
    return core_->Poll(priority_only);
  }
  void OnBufferConsumed() override { core_->OnBufferConsumed(); }
  void Release() override { core_->Release(); }
  ChannelStats stats() const override { return core_->stats(); }
  std::string description() const override { return core_->description(); }

 private:
  const std::shared_ptr<RemoteChannelCore> core_;
  const std::function<absl::StatusOr<std::shared_ptr<ClientConnection>>()> connect_;
};

// ================================================================ environment

class NetShuffleEnvironment final : public ShuffleEnvironment {
 public:
  static absl::StatusOr<std::unique_ptr<NetShuffleEnvironment>> Create(
      const ShuffleConfig& config, const ShuffleEnvironmentContext& context) {
    if (context.pool == nullptr) {
      return absl::InvalidArgumentError("the net shuffle service needs a buffer pool");
    }
    SLUICE_ASSIGN_OR_RETURN(NetOptions options, NetOptions::FromConfig(config.raw));
    std::unique_ptr<NetShuffleEnvironment> env(
        new NetShuffleEnvironment(config, context, std::move(options)));
    SLUICE_RETURN_IF_ERROR(env->StartServer());
    return env;
  }

  ~NetShuffleEnvironment() override {
    Close();
    {
      MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : connectors_) t.join();
    // Connections close here, while everything their handlers use is still alive.
    listener_.reset();
    transport_.reset();
  }

  std::string_view service() const override { return kNetShuffleService; }
  std::string data_address() const override { return address_; }

  absl::StatusOr<std::shared_ptr<ResultPartition>> CreateResultPartition(
      const ShuffleDescriptor& descriptor, const ResultPartitionOptions& options) override {
    SLUICE_RETURN_IF_ERROR(CheckDescriptor(descriptor));
    if (descriptor.producer_worker != directory_->worker_id()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "partition %s is to be produced on worker %s, not on this worker (%s)",
          descriptor.partition.ToString(), descriptor.producer_worker, directory_->worker_id()));
    }
    SLUICE_RETURN_IF_ERROR(CheckPartitionOptions(descriptor, options));
    SLUICE_ASSIGN_OR_RETURN(
        std::shared_ptr<ResultPartition> partition,
        ResultPartition::Create(descriptor.partition.ToString(), options, pool_, timer_.get()));
    SLUICE_RETURN_IF_ERROR(directory_->Add(descriptor.partition, partition));
    return partition;
  }

  absl::StatusOr<std::unique_ptr<InputGate>> CreateInputGate(
      std::string name, absl::Span<const InputChannelSpec> channels,
      const InputGateOptions& options) override {
    for (const InputChannelSpec& spec : channels) {
      SLUICE_RETURN_IF_ERROR(CheckDescriptor(spec.partition));
    }
    SLUICE_RETURN_IF_ERROR(CheckChannelSpecs(name, channels));
    // The gate's own buffers: every credit its channels can ever grant is backed by one.
    const size_t needed = channels.size() * size_t{options.exclusive_buffers_per_channel} +
                          options.floating_buffers_per_gate;
    absl::StatusOr<std::unique_ptr<LocalBufferPool>> pool =
        pool_->CreateLocalPool(absl::StrCat("gate ", name), needed, needed);
    if (!pool.ok()) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "gate %s needs %d network buffers (%d channels x %d "
          "shuffle.exclusive-buffers-per-channel + %d shuffle.floating-buffers-per-gate): %s",
          name, needed, channels.size(), options.exclusive_buffers_per_channel,
          options.floating_buffers_per_gate, pool.status().message()));
    }
    // A frame being received when the gate goes still holds one of its buffers: the pool is
    // retired, and goes when that buffer does.
    std::shared_ptr<LocalBufferPool> buffers(pool->release(), [](LocalBufferPool* p) {
      LocalBufferPool::Retire(std::unique_ptr<LocalBufferPool>(p));
    });
    {
      MutexLock lock(&mu_);
      if (closed_) return absl::FailedPreconditionError("the net shuffle environment is closed");
      ++gates_created_;
    }
    auto gate = std::make_unique<InputGate>(std::move(name), options);
    for (size_t i = 0; i < channels.size(); ++i) {
      const InputChannelSpec& spec = channels[i];
      auto core =
          std::make_shared<RemoteChannelCore>(gate.get(), static_cast<uint32_t>(i), spec, buffers,
                                              timer_, options_, config_.partition_request_timeout);
      gate->AddChannel(std::make_unique<RemoteInputChannel>(
          std::move(core), [this, spec] { return ConnectionTo(spec.partition); }));
    }
    SLUICE_RETURN_IF_ERROR(gate->Start());
    return gate;
  }

  void ReleasePartition(const PartitionId& id, absl::Status cause) override {
    std::shared_ptr<ResultPartition> partition = directory_->Remove(id);
    if (partition == nullptr) return;
    partition->Release(cause.ok() ? absl::CancelledError("released by the shuffle environment")
                                  : std::move(cause));
  }

  ShuffleEnvironmentStats stats() const override {
    ShuffleEnvironmentStats s;
    s.partitions = directory_->size();
    const net::TransportStats& t = transport_->stats();
    s.bytes_sent = t.bytes_sent.load(std::memory_order_relaxed);
    s.bytes_received = t.bytes_received.load(std::memory_order_relaxed);
    s.bytes_copied = t.bytes_copied.load(std::memory_order_relaxed);
    s.zero_copy_sends = t.zero_copy_sends.load(std::memory_order_relaxed);
    MutexLock lock(&mu_);
    s.gates = gates_created_;
    for (const auto& [key, weak] : clients_) {
      if (auto c = weak.lock()) s.connections += c->open();
    }
    return s;
  }

  void Close() override {
    std::vector<std::shared_ptr<ClientConnection>> clients;
    {
      MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
      for (auto& [key, weak] : clients_) {
        if (auto c = weak.lock()) clients.push_back(std::move(c));
      }
      clients_.clear();
    }
    for (auto& [id, p] : directory_->TakeAll()) {
      p->Release(absl::CancelledError(
          absl::StrFormat("the shuffle environment of worker %s closed", directory_->worker_id())));
    }
    for (auto& c : clients) {
      c->FailAll(absl::CancelledError(
          absl::StrFormat("the shuffle environment of worker %s closed", directory_->worker_id())));
    }
  }

 private:
  NetShuffleEnvironment(const ShuffleConfig& config, const ShuffleEnvironmentContext& context,
                        NetOptions options)
      : config_(config),
        options_(std::move(options)),
        pool_(context.pool),
        directory_(std::make_shared<PartitionDirectory>(context.worker_id)) {
    if (context.timer != nullptr) {
      timer_ = std::shared_ptr<TimerService>(context.timer, [](TimerService*) {});
    } else {
      timer_ = std::make_shared<TimerService>("shuffle-timer");
    }
  }

  absl::Status StartServer() {
    net::TransportOptions t;
    t.pool = pool_;
    t.name = directory_->worker_id();
    t.token = options_.token;
    t.zero_copy_threshold = options_.zero_copy_threshold;
    t.direct_send_limit = options_.direct_send_limit;
    SLUICE_ASSIGN_OR_RETURN(transport_, net::Transport::Create(options_.transport, t));
    SLUICE_ASSIGN_OR_RETURN(
        listener_, transport_->Listen(options_.bind_host, options_.bind_port,
                                      [directory = directory_](std::shared_ptr<net::Connection> c)
                                          -> std::shared_ptr<net::ConnectionHandler> {
                                        return std::make_shared<ServerConnection>(directory,
                                                                                  std::move(c));
                                      }));
    address_ = listener_->address();
    SLUICE_LOG_DEBUG("net shuffle of worker {} serves data at {} ({})", directory_->worker_id(),
                     address_, transport_->name());
    return absl::OkStatus();
  }

  absl::Status CheckDescriptor(const ShuffleDescriptor& d) const {
    if (d.service != kNetShuffleService) {
      return absl::InvalidArgumentError(
          absl::StrFormat("partition %s belongs to the \"%s\" shuffle service, not \"net\"",
                          d.partition.ToString(), d.service));
    }
    if (d.producer_address.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "partition %s has no producer address in its descriptor", d.partition.ToString()));
    }
    return absl::OkStatus();
  }

  // The connection to the descriptor's worker and index: the open one, or a new one whose
  // connect runs on a thread of its own (channels queue their requests meanwhile).
  absl::StatusOr<std::shared_ptr<ClientConnection>> ConnectionTo(const ShuffleDescriptor& d) {
    std::string host;
    uint16_t port = 0;
    SLUICE_RETURN_IF_ERROR(
        ParseHostPort(absl::StrCat("producer address of partition ", d.partition.ToString()),
                      d.producer_address, &host, &port));
    const std::string key = absl::StrCat(d.producer_address, "#", d.connection_index);
    MutexLock lock(&mu_);
    if (closed_) return absl::FailedPreconditionError("the net shuffle environment is closed");
    auto it = clients_.find(key);
    if (it != clients_.end()) {
      if (auto existing = it->second.lock(); existing != nullptr && existing->usable()) {
        return existing;
      }
    }
    auto client =
        std::make_shared<ClientConnection>(d.producer_worker, d.producer_address, timer_, options_);
    clients_[key] = client;
    const absl::Time deadline = absl::Now() + config_.partition_request_timeout;
    connectors_.emplace_back([this, client, host, port, deadline] {
      // Refused connects are retried inside Connect; slices keep Close from waiting long.
      absl::StatusOr<std::shared_ptr<net::Connection>> c = absl::UnavailableError("not attempted");
      while (true) {
        if (stopping()) break;
        net::ConnectOptions o;
        o.host = host;
        o.port = port;
        o.timeout = std::min(kConnectSlice, deadline - absl::Now());
        o.initial_backoff = options_.retry_initial_backoff;
        o.max_backoff = options_.retry_max_backoff;
        c = transport_->Connect(o, client);
        if (c.ok() || absl::Now() >= deadline) break;
      }
      if (!c.ok() && absl::Now() >= deadline) {
        c = absl::DeadlineExceededError(absl::StrFormat(
            "no answer within %s (shuffle.partition-request-timeout): %s",
            absl::FormatDuration(config_.partition_request_timeout), c.status().message()));
      }
      client->OnConnected(std::move(c));
    });
    return client;
  }

  bool stopping() const {
    MutexLock lock(&mu_);
    return stopping_;
  }

  const ShuffleConfig config_;
  const NetOptions options_;
  BufferPool* const pool_;
  const std::shared_ptr<PartitionDirectory> directory_;
  std::shared_ptr<TimerService> timer_;
  std::unique_ptr<net::Transport> transport_;
  std::unique_ptr<net::Listener> listener_;
  std::string address_;

  mutable Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  size_t gates_created_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, std::weak_ptr<ClientConnection>> clients_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connectors_;  // guarded by mu_ for emplace; joined in the destructor
};

class NetShuffleMaster final : public ShuffleMaster {
 public:
  explicit NetShuffleMaster(uint32_t connections_per_worker)
      : connections_per_worker_(connections_per_worker) {}

  absl::StatusOr<ShuffleDescriptor> RegisterPartition(const PartitionId& partition,
                                                      uint32_t num_subpartitions,
                                                      const ProducerLocation& producer) override {
    if (producer.data_address.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("partition %s: the net shuffle service needs the producer's data address "
                          "(ShuffleEnvironment::data_address of worker %s)",
                          partition.ToString(), producer.worker_id));
    }
    ShuffleDescriptor d;
    d.service = std::string(kNetShuffleService);
    d.partition = partition;
    d.num_subpartitions = num_subpartitions;
    d.producer_worker = producer.worker_id;
    d.producer_address = producer.data_address;
    d.connection_index =
        static_cast<uint32_t>((partition.result + partition.producer) % connections_per_worker_);
    return d;
  }
  // Partitions live in their producers' environments; nothing to release here.
  void ReleasePartition(const ShuffleDescriptor&) override {}

 private:
  const uint32_t connections_per_worker_;
};

class NetShuffleFactory final : public ShuffleServiceFactory {
 public:
  std::string_view name() const override { return kNetShuffleService; }
  std::vector<std::string_view> option_keys() const override {
    return {std::begin(kOptionKeys), std::end(kOptionKeys)};
  }
  absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateMaster(
      const ShuffleConfig& config) override {
    SLUICE_ASSIGN_OR_RETURN(NetOptions options, NetOptions::FromConfig(config.raw));
    return std::make_unique<NetShuffleMaster>(options.connections_per_worker);
  }
  absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateEnvironment(
      const ShuffleConfig& config, const ShuffleEnvironmentContext& context) override {
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<NetShuffleEnvironment> env,
                            NetShuffleEnvironment::Create(config, context));
    return env;
  }
};

}  // namespace

SLUICE_REGISTER_SHUFFLE_SERVICE(NetShuffleFactory);

}  // namespace sluice
