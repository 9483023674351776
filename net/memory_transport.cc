// The in-memory transport for unit tests. Listen registers "host:port" in a process-wide
// registry, Connect looks it up there, and a frame travels as the sender's Buffer itself, handed
// to the receiving transport's delivery thread (no socket, no copy). The handshake rules are the
// socket transports' own: the server's CheckHello judges the client's Hello, and a refusal reads
// as it would after an error frame. Stats count header + payload bytes, as on a wire.
#include <algorithm>
#include <atomic>
#include <deque>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/sync.h"
#include "net/internal/socket.h"
#include "net/internal/transports.h"

namespace sluice::net::internal {
namespace {

// "The transport's I/O thread": runs posted tasks one at a time, in the order posted.
class DeliveryLoop {
 public:
  DeliveryLoop() : thread_([this] { Run(); }) {}
  ~DeliveryLoop() { Stop(); }

  // False once stopped (the task is dropped).
  bool Post(absl::AnyInvocable<void()> task) {
    {
      MutexLock lock(&mu_);
      if (stopped_) return false;
      tasks_.push_back(std::move(task));
    }
    wake_.Signal();
    return true;
  }
  // Refuses new tasks, runs those already posted (and whatever they post), then joins.
  void Stop() {
    {
      MutexLock lock(&mu_);
      stopped_ = true;
    }
    wake_.SignalAll();
    if (thread_.joinable()) thread_.join();
  }
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  void Run() {
    while (true) {
      std::deque<absl::AnyInvocable<void()>> batch;
      {
        MutexLock lock(&mu_);
        while (!stopped_ && tasks_.empty()) wake_.Wait(&mu_);
        if (tasks_.empty()) return;  // stopped and drained
        batch.swap(tasks_);
      }
      for (auto& task : batch) task();
    }
  }

  Mutex mu_;
  CondVar wake_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class MemoryConnection;

// What a transport shares with its connections and listeners, which may outlive it.
struct Core {
  explicit Core(const TransportOptions& o) : options(o) {}

  // False once the transport is shutting down.
  bool Register(std::shared_ptr<MemoryConnection> c) {
    MutexLock lock(&mu);
    if (shut_down) return false;
    open.emplace(c.get(), std::move(c));
    return true;
  }
  void Unregister(MemoryConnection* c) {
    MutexLock lock(&mu);
    open.erase(c);
  }

  const TransportOptions options;
  TransportStats stats;
  Mutex mu;
  bool shut_down ABSL_GUARDED_BY(mu) = false;
  absl::flat_hash_map<MemoryConnection*, std::shared_ptr<MemoryConnection>> open
      ABSL_GUARDED_BY(mu);
  DeliveryLoop loop;  // last: stops before the rest goes
};

class MemoryConnection final : public Connection,
                               public std::enable_shared_from_this<MemoryConnection> {
 public:
  MemoryConnection(std::shared_ptr<Core> core, std::string peer, std::string peer_name,
                   std::shared_ptr<ConnectionHandler> handler)
      : core_(std::move(core)),
        peer_(std::move(peer)),
        peer_name_(std::move(peer_name)),
        handler_(std::move(handler)) {}

  // REQUIRES: before either side is shared.
  static void Link(const std::shared_ptr<MemoryConnection>& a,
                   const std::shared_ptr<MemoryConnection>& b) {
    a->other_ = b;
    b->other_ = a;
  }

  absl::Status Send(FrameHeader header, Buffer payload) override {
    const size_t len = payload.valid() ? payload.readable_bytes() : 0;
    if (len > core_->options.max_frame_size) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "frame of %d bytes exceeds the maximum frame size of %d bytes (option max_frame_size)",
          len, core_->options.max_frame_size));
    }
    header.length = static_cast<uint32_t>(len);
    if (len == 0) payload.Release();
    // Posting under mu_ keeps every frame that passed this check ahead of a later Close.
    MutexLock lock(&mu_);
    if (closing_ || !PostToPeer([header, p = std::move(payload)](MemoryConnection& peer) mutable {
          peer.Deliver(header, std::move(p));
        })) {
      return absl::FailedPreconditionError(absl::StrCat("connection to ", peer_, " is closed"));
    }
    core_->stats.frames_sent.fetch_add(1, std::memory_order_relaxed);
    core_->stats.bytes_sent.fetch_add(kFrameHeaderSize + len, std::memory_order_relaxed);
    return absl::OkStatus();
  }

  void Close() override {
    MutexLock lock(&mu_);
    if (std::exchange(closing_, true)) return;
    auto self = shared_from_this();
    // Behind the frames already queued for the peer: the peer closes, then this side.
    if (!PostToPeer([self](MemoryConnection& peer) {
          peer.Finish(absl::OkStatus());
          self->core_->loop.Post([self] { self->Finish(absl::OkStatus()); });
        })) {
      core_->loop.Post([self] { self->Finish(absl::OkStatus()); });
    }
  }

  void Abort(const absl::Status& cause) override {
    MutexLock lock(&mu_);
    if (std::exchange(closing_, true)) return;
    PostToPeer([cause](MemoryConnection& peer) { peer.Finish(cause); });
    core_->loop.Post([self = shared_from_this(), cause] { self->Finish(cause); });
  }

  bool open() const override { return !closed_.load(std::memory_order_acquire); }
  const std::string& peer() const override { return peer_; }
  const std::string& peer_name() const override { return peer_name_; }

  // ---- On this side's delivery thread. ----
  void set_handler(std::shared_ptr<ConnectionHandler> h) { handler_ = std::move(h); }

  void Deliver(const FrameHeader& header, Buffer payload) {
    if (finished_) return;
    core_->stats.frames_received.fetch_add(1, std::memory_order_relaxed);
    core_->stats.bytes_received.fetch_add(kFrameHeaderSize + header.length,
                                          std::memory_order_relaxed);
    if (header.type == static_cast<uint8_t>(FrameType::kPing)) {
      FrameHeader pong = header;
      pong.type = static_cast<uint8_t>(FrameType::kPong);
      Send(pong, std::move(payload)).IgnoreError();  // closing: unanswered, as on a socket
      return;
    }
    if (handler_ != nullptr) handler_->OnFrame(*this, header, std::move(payload));
  }

  // Closes this side once; the handler hears `cause` (none when `tell` is false).
  void Finish(const absl::Status& cause, bool tell = true) {
    if (std::exchange(finished_, true)) return;
    auto keep = shared_from_this();  // the open set may hold the last reference
    {
      MutexLock lock(&mu_);
      closing_ = true;
    }
    closed_.store(true, std::memory_order_release);
    core_->Unregister(this);
    std::shared_ptr<ConnectionHandler> h = std::exchange(handler_, nullptr);
    if (tell && h != nullptr) h->OnClosed(*this, cause);
  }

  // Runs `fn(peer)` on the peer's delivery thread; false when the peer or its transport is gone.
  bool PostToPeer(absl::AnyInvocable<void(MemoryConnection&)> fn) {
    std::shared_ptr<MemoryConnection> peer = other_.lock();
    return peer != nullptr &&
           peer->core_->loop.Post([peer, fn = std::move(fn)]() mutable { fn(*peer); });
  }

 private:
  const std::shared_ptr<Core> core_;
  const std::string peer_;
  const std::string peer_name_;
  std::weak_ptr<MemoryConnection> other_;

  // Delivery thread only.
  std::shared_ptr<ConnectionHandler> handler_;
  bool finished_ = false;

  std::atomic<bool> closed_{false};
  Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

// A listening name and whom it belongs to.
struct Endpoint {
  std::weak_ptr<Core> core;
  AcceptCallback on_accept;
  std::atomic<bool> closed{false};
};

std::string Key(const std::string& host, uint16_t port) {
  // As the socket transports resolve them: "", "localhost" and 127.0.0.1 are one host.
  const std::string h = host.empty() || host == "localhost" ? "127.0.0.1" : host;
  return absl::StrFormat("%s:%d", h, port);
}

// The process-wide address book.
class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = new Registry();
    return *registry;
  }

  absl::StatusOr<uint16_t> Add(const std::string& host, uint16_t port,
                               std::shared_ptr<Endpoint> endpoint) {
    MutexLock lock(&mu_);
    for (int tries = 0; port == 0 && tries < 65535; ++tries) {
      const uint16_t candidate = next_port_;
      next_port_ = next_port_ == 65535 ? 1 : next_port_ + 1;
      if (!endpoints_.contains(Key(host, candidate))) port = candidate;
    }
    if (port == 0) return absl::ResourceExhaustedError("no free memory transport port left");
    if (!endpoints_.emplace(Key(host, port), std::move(endpoint)).second) {
      return absl::FailedPreconditionError(
          absl::StrFormat("listen %s:%d: address already in use", host, port));
    }
    return port;
  }
  std::shared_ptr<Endpoint> Find(const std::string& key) {
    MutexLock lock(&mu_);
    auto it = endpoints_.find(key);
    return it == endpoints_.end() ? nullptr : it->second;
  }
  void Remove(const std::string& key, const Endpoint* endpoint) {
    MutexLock lock(&mu_);
    if (auto it = endpoints_.find(key); it != endpoints_.end() && it->second.get() == endpoint) {
      endpoints_.erase(it);
    }
  }

 private:
  Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  uint16_t next_port_ ABSL_GUARDED_BY(mu_) = 1;
};

class MemoryListener final : public Listener {
 public:
  MemoryListener(std::string host, uint16_t port, std::shared_ptr<Endpoint> endpoint)
      : host_(std::move(host)), port_(port), endpoint_(std::move(endpoint)) {}
  ~MemoryListener() override {
    Registry::Get().Remove(Key(host_, port_), endpoint_.get());
    endpoint_->closed.store(true, std::memory_order_release);
    // Wait out an accept already running on the delivery thread, as the socket transports do.
    std::shared_ptr<Core> core = endpoint_->core.lock();
    if (core != nullptr && !core->loop.on_loop_thread()) {
      Notification done;
      if (core->loop.Post([&done] { done.Notify(); })) done.WaitForNotification();
    }
  }
  uint16_t port() const override { return port_; }
  std::string address() const override { return absl::StrFormat("%s:%d", host_, port_); }

 private:
  const std::string host_;
  const uint16_t port_;
  const std::shared_ptr<Endpoint> endpoint_;
};

class MemoryTransport final : public Transport {
 public:
  explicit MemoryTransport(const TransportOptions& options)
      : core_(std::make_shared<Core>(options)) {}

  ~MemoryTransport() override {
    std::vector<std::shared_ptr<MemoryConnection>> open;
    {
      MutexLock lock(&core_->mu);
      core_->shut_down = true;
      for (auto& [raw, c] : core_->open) open.push_back(c);
    }
    core_->loop.Post([open = std::move(open)] {
      for (const auto& c : open) {
        c->Finish(absl::CancelledError("transport shut down"));
        c->PostToPeer([](MemoryConnection& peer) {
          peer.Finish(absl::UnavailableError("peer transport shut down"));
        });
      }
    });
    core_->loop.Stop();
  }

  std::string_view name() const override { return "memory"; }
  const TransportStats& stats() const override { return core_->stats; }

  absl::StatusOr<std::unique_ptr<Listener>> Listen(const std::string& host, uint16_t port,
                                                   AcceptCallback on_accept) override {
    auto endpoint = std::make_shared<Endpoint>();
    endpoint->core = core_;
    endpoint->on_accept = std::move(on_accept);
    SLUICE_ASSIGN_OR_RETURN(uint16_t bound, Registry::Get().Add(host, port, endpoint));
    return std::unique_ptr<Listener>(new MemoryListener(host, bound, std::move(endpoint)));
  }

  absl::StatusOr<std::shared_ptr<Connection>> Connect(
      const ConnectOptions& options, std::shared_ptr<ConnectionHandler> handler) override {
    const std::string peer = absl::StrFormat("%s:%d", options.host, options.port);
    const absl::Time deadline = absl::Now() + options.timeout;
    absl::Duration backoff = options.initial_backoff;
    for (int attempts = 1;; ++attempts) {
      bool refused = false;
      auto conn = TryConnect(Key(options.host, options.port), peer, handler, &refused);
      if (!refused) return conn;
      // Nobody listens (yet): retried like a refused TCP connection.
      if (absl::Now() + backoff >= deadline) {
        return absl::UnavailableError(absl::StrFormat(
            "connect to %s: no memory transport listens there (after %d attempt%s within %s)", peer,
            attempts, attempts == 1 ? "" : "s", absl::FormatDuration(options.timeout)));
      }
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff));
      backoff = std::min(backoff * 2, options.max_backoff);
    }
  }

 private:
  absl::StatusOr<std::shared_ptr<Connection>> TryConnect(const std::string& key,
                                                         const std::string& peer,
                                                         std::shared_ptr<ConnectionHandler> handler,
                                                         bool* refused) {
    std::shared_ptr<Endpoint> endpoint = Registry::Get().Find(key);
    std::shared_ptr<Core> server = endpoint != nullptr ? endpoint->core.lock() : nullptr;
    if (server == nullptr) {
      *refused = true;
      return absl::UnavailableError("refused");
    }
    static std::atomic<uint64_t> next_id{1};
    const std::string client_peer = absl::StrCat("memory-client-", next_id.fetch_add(1));
    std::string client_name;
    if (absl::Status s = CheckHello(BuildHello(core_->options), server->options, &client_name);
        !s.ok()) {
      server->stats.connections_refused.fetch_add(1, std::memory_order_relaxed);
      SLUICE_LOG_WARN("refused connection from {}: {}", client_peer, s.message());
      return StatusFromErrorFrame(BuildError(s), peer);
    }
    auto client = std::make_shared<MemoryConnection>(core_, peer, server->options.name, handler);
    auto accepted = std::make_shared<MemoryConnection>(server, client_peer, client_name, nullptr);
    MemoryConnection::Link(client, accepted);
    if (!core_->Register(client)) return absl::CancelledError("transport shut down");

    // The server hears of the connection on its own delivery thread, as with a socket.
    absl::Status result;
    auto accept = [&] {
      if (endpoint->closed.load(std::memory_order_acquire) || !server->Register(accepted)) {
        *refused = true;
        return;
      }
      server->stats.connections_accepted.fetch_add(1, std::memory_order_relaxed);
      auto h = endpoint->on_accept ? endpoint->on_accept(accepted) : nullptr;
      if (h == nullptr) {
        result = absl::UnavailableError(
            absl::StrCat("refused by ", peer, ": the server has no handler for this connection"));
        accepted->Finish(result);
        return;
      }
      accepted->set_handler(std::move(h));
    };
    if (server->loop.on_loop_thread()) {
      accept();
    } else {
      Notification done;
      if (server->loop.Post([&] {
            accept();
            done.Notify();
          })) {
        done.WaitForNotification();
      } else {
        *refused = true;
      }
    }
    if (*refused || !result.ok()) {
      // Never handed out: drop it quietly on its own thread.
      core_->loop.Post([client] { client->Finish(absl::OkStatus(), /*tell=*/false); });
      if (*refused) return absl::UnavailableError("refused");
      return result;
    }
    return std::shared_ptr<Connection>(std::move(client));
  }

  const std::shared_ptr<Core> core_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> CreateMemoryTransport(const TransportOptions& options) {
  return std::unique_ptr<Transport>(new MemoryTransport(options));
}

}  // namespace sluice::net::internal
