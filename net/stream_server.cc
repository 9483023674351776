// StreamServer over epoll: level-triggered readiness, non-blocking sockets, one reused receive
// buffer, and output gathered per connection into one sendmsg per readiness event. Each I/O
// thread is a Loop with its own epoll set, eventfd and listening socket; the loops share the
// counters, the connection ids and the connection limit.
//
// A connection's state is split in two: what any thread may ask (queued writes, close, resume)
// sits under the connection's mutex and is taken by the I/O thread in one go; everything else
// is the I/O thread's alone. A request from another thread puts the connection on the dirty
// list and writes the eventfd unless the loop is already due to look at that list.
#include "net/stream_server.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/sync.h"
#include "net/internal/socket.h"

namespace sluice::net {
namespace {

using internal::ErrnoStatus;

constexpr int kMaxIov = 64;
constexpr int kReadsPerEvent = 16;
constexpr int kMaxEvents = 256;
constexpr int kProcessRounds = 4;

class Loop;

// What other threads asked of a connection since the I/O thread last looked.
struct Requests {
  std::vector<std::string> out;
  bool close = false;
  bool resume = false;
};

// The I/O thread's own state of a connection.
struct LoopState {
  std::shared_ptr<StreamHandler> handler;
  std::deque<std::string> out;
  size_t out_offset = 0;  // bytes of out.front() already sent
  size_t queued = 0;      // bytes in `out` not sent yet
  uint32_t armed = 0;     // the epoll events registered
  bool want_out = false;  // the socket was full: wait for EPOLLOUT
  bool closing = false;   // Close() asked: finish once `out` drains
  bool half_closed = false;
  bool peer_eof = false;
  bool finished = false;
  absl::Time last_activity;
  absl::Time over_limit_since = absl::InfiniteFuture();
  absl::Time linger_deadline;
};

class Conn final : public StreamConnection, public std::enable_shared_from_this<Conn> {
 public:
  Conn(Loop* server, int fd, uint64_t id, std::string peer)
      : server_(server), fd_(fd), id_(id), peer_(std::move(peer)) {}

  absl::Status Write(std::string bytes) override {
    MutexLock lock(&mu_);
    if (closing_) {
      return absl::FailedPreconditionError(
          absl::StrCat("connection ", id_, " from ", peer_, " is closed or closing"));
    }
    if (bytes.empty()) return absl::OkStatus();
    pending_.push_back(std::move(bytes));
    NotifyLocked();
    return absl::OkStatus();
  }

  void Close() override {
    MutexLock lock(&mu_);
    if (closing_) return;
    closing_ = true;
    close_requested_ = true;
    NotifyLocked();
  }

  void PauseReading() override {
    paused_.store(true, std::memory_order_relaxed);
    MutexLock lock(&mu_);
    if (!finished_) NotifyLocked();
  }

  void ResumeReading() override {
    paused_.store(false, std::memory_order_relaxed);
    MutexLock lock(&mu_);
    if (finished_) return;
    resume_requested_ = true;
    NotifyLocked();
  }

  bool open() const override {
    MutexLock lock(&mu_);
    return !closing_;
  }
  const std::string& peer() const override { return peer_; }
  uint64_t id() const override { return id_; }

  int fd() const { return fd_; }
  bool paused() const { return paused_.load(std::memory_order_relaxed); }

  // I/O thread: moves the requests into `r` (whose `out` must be empty).
  void TakeRequests(Requests* r) {
    MutexLock lock(&mu_);
    r->out.swap(pending_);
    r->close = std::exchange(close_requested_, false);
    r->resume = std::exchange(resume_requested_, false);
    notified_ = false;
  }

  // I/O thread: from now on every request is refused and wakes nobody.
  void MarkFinished() {
    MutexLock lock(&mu_);
    closing_ = true;
    finished_ = true;
    pending_.clear();
  }

  LoopState loop;

 private:
  // Requests are made under mu_, and the I/O thread marks a connection finished under mu_
  // before the server goes away: a request either reaches a live server or sees finished_.
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Loop* const server_;
  const int fd_;
  const uint64_t id_;
  const std::string peer_;
  std::atomic<bool> paused_{false};

  mutable Mutex mu_;
  std::vector<std::string> pending_ ABSL_GUARDED_BY(mu_);
  bool notified_ ABSL_GUARDED_BY(mu_) = false;  // on the server's dirty list
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool resume_requested_ ABSL_GUARDED_BY(mu_) = false;
};

absl::Duration CheckInterval(const StreamServerOptions& o) {
  const absl::Duration shortest =
      std::min({o.idle_timeout, o.slow_client_timeout, o.linger_timeout});
  return std::clamp(shortest / 4, absl::Milliseconds(5), absl::Milliseconds(250));
}

// What the loops of one server share.
struct Shared {
  StreamServerStats stats;
  std::atomic<uint64_t> last_id{0};
};

class Loop {
 public:
  Loop(const StreamServerOptions& options, StreamAcceptCallback on_accept, Shared& shared,
       int listen_fd, int epoll_fd, int wake_fd)
      : options_(options),
        on_accept_(std::move(on_accept)),
        shared_(shared),
        stats_(shared.stats),
        listen_fd_(listen_fd),
        epoll_fd_(epoll_fd),
        wake_fd_(wake_fd),
        port_(internal::LocalPort(listen_fd)),
        check_interval_(CheckInterval(options)),
        read_buffer_(std::max<size_t>(options.read_size, 1)) {
    Arm(listen_fd_, EPOLLIN, &listen_tag_, EPOLL_CTL_ADD);
    Arm(wake_fd_, EPOLLIN, &wake_tag_, EPOLL_CTL_ADD);
    Notification started;
    thread_ = std::thread([this, &started] {
      loop_thread_ = std::this_thread::get_id();
      started.Notify();
      Run();
    });
    started.WaitForNotification();
  }

  ~Loop() {
    stopping_.store(true, std::memory_order_release);
    Signal();
    thread_.join();
    close(wake_fd_);
    close(epoll_fd_);
  }

  uint16_t port() const { return port_; }
  std::string address() const { return absl::StrFormat("%s:%d", options_.host, port_); }

  // Any thread: `c` has requests for the I/O thread.
  void Notify(std::shared_ptr<Conn> c) {
    bool signal = false;
    {
      MutexLock lock(&mu_);
      dirty_.push_back(std::move(c));
      signal = !std::exchange(signaled_, true);
    }
    if (signal && std::this_thread::get_id() != loop_thread_) Signal();
  }

 private:
  void Signal() {
    const uint64_t one = 1;
    ssize_t rc = write(wake_fd_, &one, sizeof(one));
    (void)rc;  // EAGAIN: the counter is already non-zero, the loop wakes anyway
  }

  void Arm(int fd, uint32_t events, void* tag, int op) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = tag;
    if (epoll_ctl(epoll_fd_, op, fd, &ev) != 0) {
      SLUICE_LOG_WARN("epoll_ctl: {}", std::strerror(errno));
    }
  }

  // Whether the loop may block: no connection waits on the dirty list. When it may, the next
  // Notify from another thread writes the eventfd.
  bool MayBlock() {
    MutexLock lock(&mu_);
    if (!dirty_.empty()) return false;
    signaled_ = false;
    return true;
  }

  int WaitMillis() {
    if (conns_.empty() && !accept_paused_) return -1;
    return static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(next_check_ - absl::Now()) + 1));
  }

  void Run() {
    std::vector<epoll_event> events(kMaxEvents);
    now_ = absl::Now();
    next_check_ = now_ + check_interval_;
    while (!stopping_.load(std::memory_order_acquire)) {
      const int timeout = MayBlock() ? WaitMillis() : 0;
      const int n = epoll_wait(epoll_fd_, events.data(), kMaxEvents, timeout);
      if (n < 0 && errno != EINTR) {
        SLUICE_LOG_ERROR("stream server {}: epoll_wait: {}", address(), std::strerror(errno));
        break;
      }
      now_ = absl::Now();
      for (int i = 0; i < n; ++i) Dispatch(events[i]);
      ProcessDirty();
      if (now_ >= next_check_) {
        ExpireDeadlines();
        next_check_ = now_ + check_interval_;
      }
      Reap();
    }
    for (auto& [raw, c] : conns_) Finish(c.get(), absl::CancelledError("server shut down"));
    Reap();
    close(listen_fd_);
  }

  void Dispatch(const epoll_event& ev) {
    if (ev.data.ptr == &wake_tag_) {
      uint64_t v;
      ssize_t rc = read(wake_fd_, &v, sizeof(v));
      (void)rc;
      return;
    }
    if (ev.data.ptr == &listen_tag_) {
      AcceptAll();
      return;
    }
    Conn* c = static_cast<Conn*>(ev.data.ptr);
    if (c->loop.finished) return;
    if (ev.events & EPOLLOUT) Flush(c);
    if (c->loop.finished) return;
    if ((c->loop.armed & EPOLLIN) && (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
      ReadSome(c);
    } else if (ev.events & (EPOLLERR | EPOLLHUP)) {
      Finish(c, SocketError(c));
    }
  }

  absl::Status SocketError(Conn* c) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    return ErrnoStatus(err != 0 ? err : ECONNRESET, "connection from " + c->peer());
  }

  void AcceptAll() {
    while (true) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno == EMFILE || errno == ENFILE) {
          // Level-triggered: the listener would wake the loop at once again. Try later.
          SLUICE_LOG_WARN("stream server {}: accept: {}", address(), std::strerror(errno));
          Arm(listen_fd_, 0, &listen_tag_, EPOLL_CTL_MOD);
          accept_paused_ = true;
        }
        return;
      }
      Accept(fd);
    }
  }

  void Accept(int fd) {
    if (stats_.open.load(std::memory_order_relaxed) >= options_.max_connections) {
      stats_.refused.fetch_add(1, std::memory_order_relaxed);
      ssize_t rc =
          send(fd, options_.refusal.data(), options_.refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)rc;  // best effort
      close(fd);
      return;
    }
    if (absl::Status s = internal::PrepareStreamSocket(fd); !s.ok()) {
      SLUICE_LOG_WARN("stream server {}: accepted socket: {}", address(), s.message());
      close(fd);
      return;
    }
    auto c = std::make_shared<Conn>(this, fd,
                                    shared_.last_id.fetch_add(1, std::memory_order_relaxed) + 1,
                                    internal::PeerAddress(fd));
    c->loop.last_activity = now_;
    c->loop.armed = EPOLLIN | EPOLLRDHUP;
    Arm(fd, c->loop.armed, c.get(), EPOLL_CTL_ADD);
    conns_.emplace(c.get(), c);
    stats_.accepted.fetch_add(1, std::memory_order_relaxed);
    stats_.open.fetch_add(1, std::memory_order_relaxed);
    c->loop.handler = on_accept_(c);
    if (c->loop.handler == nullptr) Finish(c.get(), absl::OkStatus());
  }

  void ReadSome(Conn* c) {
    LoopState& s = c->loop;
    for (int i = 0; i < kReadsPerEvent && (s.armed & EPOLLIN) && !s.finished; ++i) {
      const ssize_t r = recv(c->fd(), read_buffer_.data(), read_buffer_.size(), 0);
      if (r > 0) {
        s.last_activity = now_;
        stats_.bytes_received.fetch_add(static_cast<uint64_t>(r), std::memory_order_relaxed);
        // After Close, whatever the client still sends is read and dropped.
        if (s.closing) continue;
        s.handler->OnData(*c, std::string_view(read_buffer_.data(), static_cast<size_t>(r)));
        Apply(c);
        if (static_cast<size_t>(r) < read_buffer_.size()) return;  // drained for now
        continue;
      }
      if (r == 0) {
        OnEndOfInput(c);
        return;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Finish(c, ErrnoStatus(errno, "receive from " + c->peer()));
      }
      return;
    }
  }

  void OnEndOfInput(Conn* c) {
    LoopState& s = c->loop;
    if (s.half_closed) {
      Finish(c, absl::OkStatus());
      return;
    }
    s.peer_eof = true;
    UpdateInterest(c);
    if (!s.closing) s.handler->OnEndOfInput(*c);
    Apply(c);
  }

  // Takes what the handler or other threads asked of `c` and acts on it.
  void Apply(Conn* c) {
    LoopState& s = c->loop;
    if (s.finished) return;
    c->TakeRequests(&requests_);
    for (std::string& bytes : requests_.out) {
      s.queued += bytes.size();
      s.out.push_back(std::move(bytes));
    }
    requests_.out.clear();
    if (requests_.close) s.closing = true;
    const bool resumed = requests_.resume;
    UpdateInterest(c);
    Flush(c);
    if (resumed && !s.finished && !s.closing) s.handler->OnResumed(*c);
  }

  void ProcessDirty() {
    // What handlers write during a round is picked up by the next one, so that a reply written
    // from OnResumed costs no extra wake-up.
    for (int round = 0; round < kProcessRounds; ++round) {
      {
        MutexLock lock(&mu_);
        dirty_taken_.swap(dirty_);
      }
      if (dirty_taken_.empty()) return;
      for (const std::shared_ptr<Conn>& c : dirty_taken_) Apply(c.get());
      dirty_taken_.clear();
    }
  }

  void UpdateInterest(Conn* c) {
    LoopState& s = c->loop;
    const bool read = !s.peer_eof && (s.closing || s.half_closed || !c->paused());
    const uint32_t events = (read ? EPOLLIN | EPOLLRDHUP : 0u) | (s.want_out ? EPOLLOUT : 0u);
    if (events == s.armed || s.finished) return;
    s.armed = events;
    Arm(c->fd(), events, c, EPOLL_CTL_MOD);
  }

  // Sends as much of the queued output as the socket takes, in one sendmsg per call when it
  // takes everything.
  void Flush(Conn* c) {
    LoopState& s = c->loop;
    while (!s.out.empty()) {
      iovec iov[kMaxIov];
      int n = 0;
      for (auto it = s.out.begin(); it != s.out.end() && n < kMaxIov; ++it, ++n) {
        const size_t skip = n == 0 ? s.out_offset : 0;
        iov[n] = {it->data() + skip, it->size() - skip};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n);
      const ssize_t w = sendmsg(c->fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        Finish(c, ErrnoStatus(errno, "send to " + c->peer()));
        return;
      }
      Consume(c, static_cast<size_t>(w));
    }
    s.want_out = !s.out.empty();
    UpdateInterest(c);
    if (!CheckOutputLimits(c)) return;
    if (s.out.empty() && s.closing) CloseDrained(c);
  }

  void Consume(Conn* c, size_t sent) {
    LoopState& s = c->loop;
    stats_.bytes_sent.fetch_add(sent, std::memory_order_relaxed);
    s.last_activity = now_;
    s.queued -= sent;
    size_t left = sent + s.out_offset;
    while (!s.out.empty() && left >= s.out.front().size()) {
      left -= s.out.front().size();
      s.out.pop_front();
    }
    s.out_offset = left;
  }

  // False when `c` was closed for leaving too much output unread.
  bool CheckOutputLimits(Conn* c) {
    LoopState& s = c->loop;
    if (s.queued > options_.max_output_bytes) {
      stats_.closed_slow.fetch_add(1, std::memory_order_relaxed);
      Finish(c, absl::ResourceExhaustedError(absl::StrFormat(
                    "%s did not read its replies: %d bytes queued, more than the %d allowed",
                    c->peer(), s.queued, options_.max_output_bytes)));
      return false;
    }
    if (s.queued <= options_.slow_client_bytes) {
      s.over_limit_since = absl::InfiniteFuture();
    } else if (s.over_limit_since == absl::InfiniteFuture()) {
      s.over_limit_since = now_;
    }
    return true;
  }

  // Everything queued is out and Close was asked.
  void CloseDrained(Conn* c) {
    LoopState& s = c->loop;
    if (s.peer_eof) {
      Finish(c, absl::OkStatus());
      return;
    }
    if (s.half_closed) return;
    shutdown(c->fd(), SHUT_WR);
    s.half_closed = true;
    s.linger_deadline = now_ + options_.linger_timeout;
    UpdateInterest(c);
  }

  void ExpireDeadlines() {
    if (accept_paused_) {
      accept_paused_ = false;
      Arm(listen_fd_, EPOLLIN, &listen_tag_, EPOLL_CTL_MOD);
    }
    for (auto& [raw, c] : conns_) {
      const LoopState& s = c->loop;
      if (s.finished) continue;
      if (s.half_closed && now_ >= s.linger_deadline) {
        Finish(raw, absl::OkStatus());  // our side is done; the client just never closed
      } else if (now_ - s.last_activity >= options_.idle_timeout) {
        stats_.closed_idle.fetch_add(1, std::memory_order_relaxed);
        Finish(raw, absl::DeadlineExceededError(
                        absl::StrCat(c->peer(), " sent and received nothing for ",
                                     absl::FormatDuration(options_.idle_timeout), " (idle)")));
      } else if (now_ - s.over_limit_since >= options_.slow_client_timeout) {
        stats_.closed_slow.fetch_add(1, std::memory_order_relaxed);
        Finish(raw, absl::ResourceExhaustedError(absl::StrFormat(
                        "%s did not read its replies: more than %d bytes stayed queued for %s",
                        c->peer(), options_.slow_client_bytes,
                        absl::FormatDuration(options_.slow_client_timeout))));
      }
    }
  }

  void Finish(Conn* c, const absl::Status& cause) {
    LoopState& s = c->loop;
    if (s.finished) return;
    s.finished = true;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd(), nullptr);
    close(c->fd());
    c->MarkFinished();
    s.out.clear();
    stats_.open.fetch_sub(1, std::memory_order_relaxed);
    if (!cause.ok()) SLUICE_LOG_DEBUG("stream connection {} closed: {}", c->peer(), cause);
    // The handler goes with this call: it may hold the connection, which holds it.
    std::shared_ptr<StreamHandler> handler = std::move(s.handler);
    if (handler != nullptr) handler->OnClosed(*c, cause);
    reap_.push_back(c);
  }

  // Frees finished connections once no event of this round can point at them any more.
  void Reap() {
    for (Conn* c : reap_) conns_.erase(c);
    reap_.clear();
  }

  const StreamServerOptions options_;
  const StreamAcceptCallback on_accept_;
  Shared& shared_;
  StreamServerStats& stats_;
  const int listen_fd_;
  const int epoll_fd_;
  const int wake_fd_;
  const uint16_t port_;
  const absl::Duration check_interval_;
  char listen_tag_ = 0;  // epoll data of the listener and the eventfd: their addresses
  char wake_tag_ = 0;
  std::thread thread_;
  std::thread::id loop_thread_;
  std::atomic<bool> stopping_{false};

  // I/O thread only.
  std::vector<char> read_buffer_;
  absl::flat_hash_map<Conn*, std::shared_ptr<Conn>> conns_;
  std::vector<Conn*> reap_;
  std::vector<std::shared_ptr<Conn>> dirty_taken_;
  Requests requests_;
  bool accept_paused_ = false;
  absl::Time now_;
  absl::Time next_check_;

  Mutex mu_;
  std::vector<std::shared_ptr<Conn>> dirty_ ABSL_GUARDED_BY(mu_);
  bool signaled_ ABSL_GUARDED_BY(mu_) = false;
};

void Conn::NotifyLocked() {
  if (notified_) return;
  notified_ = true;
  server_->Notify(shared_from_this());
}

class Server final : public StreamServer {
 public:
  explicit Server(const StreamServerOptions& options) : host_(options.host) {}
  // Joins every loop (their handlers get OnClosed) before the shared counters go.
  ~Server() override { loops_.clear(); }

  absl::Status AddLoop(const StreamServerOptions& options, StreamAcceptCallback on_accept) {
    const uint16_t port = loops_.empty() ? options.port : loops_[0]->port();
    SLUICE_ASSIGN_OR_RETURN(
        const int listen_fd,
        internal::OpenListenSocket(options.host, port, /*reuse_port=*/options.io_threads > 1));
    const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) {
      const int err = errno;
      close(listen_fd);
      return ErrnoStatus(err, "epoll_create1");
    }
    const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) {
      const int err = errno;
      close(listen_fd);
      close(epoll_fd);
      return ErrnoStatus(err, "eventfd");
    }
    loops_.push_back(std::make_unique<Loop>(options, std::move(on_accept), shared_, listen_fd,
                                            epoll_fd, wake_fd));
    return absl::OkStatus();
  }

  uint16_t port() const override { return loops_[0]->port(); }
  std::string address() const override { return absl::StrFormat("%s:%d", host_, port()); }
  const StreamServerStats& stats() const override { return shared_.stats; }

 private:
  const std::string host_;
  Shared shared_;
  std::vector<std::unique_ptr<Loop>> loops_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<StreamServer>> StreamServer::Create(
    const StreamServerOptions& options, StreamAcceptCallback on_accept) {
  if (on_accept == nullptr) return absl::InvalidArgumentError("stream server: no accept callback");
  if (options.io_threads == 0) {
    return absl::InvalidArgumentError("stream server: io_threads must be at least 1");
  }
  auto server = std::make_unique<Server>(options);
  for (size_t i = 0; i < options.io_threads; ++i) {
    SLUICE_RETURN_IF_ERROR(server->AddLoop(options, on_accept));
  }
  return std::unique_ptr<StreamServer>(std::move(server));
}

}  // namespace sluice::net
