// The epoll transport: one I/O thread, level-triggered readiness, non-blocking sockets, and
// scatter-gather sendmsg straight from the payload segments. The fallback where io_uring is
// refused; it shares framing, handshake and connection state with the uring transport.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "base/sync.h"
#include "net/internal/socket.h"
#include "net/internal/socket_connection.h"
#include "net/internal/transports.h"

namespace sluice::net::internal {
namespace {

constexpr int kMaxIov = 128;
constexpr int kReadsPerEvent = 16;

class EpollTransport;

// What an epoll event points at.
struct Pollable {
  enum class Kind { kWake, kListener, kConnection } kind;
};

struct ListenerState : Pollable {
  int fd = -1;
  AcceptCallback on_accept;
};

// Loop-side state of one connection.
struct ConnState : Pollable {
  std::shared_ptr<SocketConnection> conn;
  const AcceptCallback* on_accept = nullptr;  // server side; outlives the connection's handshake
  std::shared_ptr<ListenerState> listener;    // keeps on_accept alive
  std::deque<OutFrame> out;
  size_t out_offset = 0;  // bytes of out.front() already sent
  bool closing = false;   // Close() asked: finish when `out` drains
  // Everything is sent and our FIN is out; reading on until the peer's FIN, so that closing a
  // socket with unread data (which makes the kernel send a reset) cannot destroy what the peer
  // has not read yet.
  bool half_closed = false;
  absl::Time linger_deadline;
  bool peer_eof = false;     // the peer's FIN came while frames were still queued for it
  bool want_out = false;     // EPOLLOUT armed
  bool read_paused = false;  // receive pool dry; waiting for a segment
  // A frame handler asked to close the connection with `error` (after this receive).
  bool closing_on_error = false;
  bool tell_peer = false;
  absl::Status error;
};

class EpollListener final : public Listener {
 public:
  EpollListener(EpollTransport* t, std::shared_ptr<ListenerState> s, uint16_t port,
                std::string host)
      : transport_(t), state_(std::move(s)), port_(port), host_(std::move(host)) {}
  ~EpollListener() override;
  uint16_t port() const override { return port_; }
  std::string address() const override { return absl::StrFormat("%s:%d", host_, port_); }

 private:
  EpollTransport* transport_;
  std::shared_ptr<ListenerState> state_;
  uint16_t port_;
  std::string host_;
};

class EpollTransport final : public Transport, public LoopWaker {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Create(const TransportOptions& options) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) return ErrnoStatus(errno, "epoll_create1");
    int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake < 0) {
      close(ep);
      return ErrnoStatus(errno, "eventfd");
    }
    auto rx = options.pool->CreateLocalPool("epoll-receive", options.receive_min_segments,
                                            options.receive_max_segments);
    if (!rx.ok()) {
      close(ep);
      close(wake);
      return rx.status();
    }
    return std::unique_ptr<Transport>(new EpollTransport(options, ep, wake, std::move(*rx)));
  }

  ~EpollTransport() override {
    RunOnLoop([this] { stopping_ = true; });
    thread_.join();
    // Whatever is still open is cut off now.
    for (auto& [raw, state] : conns_) {
      state->out.clear();
      state->conn->FinishClose(absl::CancelledError("transport shut down"));
      close(state->conn->fd());
    }
    conns_.clear();
    close(wake_fd_);
    close(epoll_fd_);
  }

  std::string_view name() const override { return "epoll"; }
  const TransportStats& stats() const override { return stats_; }

  absl::StatusOr<std::unique_ptr<Listener>> Listen(const std::string& host, uint16_t port,
                                                   AcceptCallback on_accept) override {
    SLUICE_ASSIGN_OR_RETURN(int fd, OpenListenSocket(host, port, options_.reuse_port));
    auto state = std::make_shared<ListenerState>();
    state->kind = Pollable::Kind::kListener;
    state->fd = fd;
    state->on_accept = std::move(on_accept);
    absl::Status added;
    RunOnLoop([&] {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = static_cast<Pollable*>(state.get());
      added = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? absl::OkStatus()
                                                                : ErrnoStatus(errno, "epoll_ctl");
      if (added.ok()) listeners_.push_back(state);
    });
    if (!added.ok()) {
      close(fd);
      return added;
    }
    return std::unique_ptr<Listener>(new EpollListener(this, state, LocalPort(fd), host));
  }

  absl::StatusOr<std::shared_ptr<Connection>> Connect(
      const ConnectOptions& options, std::shared_ptr<ConnectionHandler> handler) override {
    std::string server_name;
    SLUICE_ASSIGN_OR_RETURN(int fd, ConnectAndHandshake(options, options_, &server_name));
    auto conn = std::make_shared<SocketConnection>(
        fd, absl::StrFormat("%s:%d", options.host, options.port), this, rx_pool_.get(), options_,
        &stats_, /*handshaking=*/false);
    conn->set_peer_name(std::move(server_name));
    conn->set_handler(std::move(handler));
    absl::Status added;
    RunOnLoop([&] { added = AddConnection(conn, nullptr, nullptr); });
    if (!added.ok()) {
      conn->FinishClose(added);
      close(fd);
      return added;
    }
    return std::shared_ptr<Connection>(conn);
  }

  void Wake(std::shared_ptr<SocketConnection> c) override {
    bool signal = false;
    {
      MutexLock lock(&mu_);
      dirty_.push_back(std::move(c));
      signal = !std::exchange(signaled_, true);
    }
    if (signal && std::this_thread::get_id() != loop_thread_id_) Signal();
  }

  // Whether the loop may block: no command or woken connection is waiting. When it may, the
  // next Post or Wake from another thread writes the eventfd; until then they only queue.
  bool MayBlock() {
    MutexLock lock(&mu_);
    if (!commands_.empty() || !dirty_.empty()) return false;
    signaled_ = false;
    return true;
  }

  // Runs `fn` on the I/O thread and waits for it.
  void RunOnLoop(absl::AnyInvocable<void()> fn) {
    if (std::this_thread::get_id() == loop_thread_id_) {
      fn();
      return;
    }
    Notification done;
    Post([&] {
      fn();
      done.Notify();
    });
    done.WaitForNotification();
  }

  void Post(absl::AnyInvocable<void()> fn) {
    bool signal = false;
    {
      MutexLock lock(&mu_);
      commands_.push_back(std::move(fn));
      signal = !std::exchange(signaled_, true);
    }
    if (signal && std::this_thread::get_id() != loop_thread_id_) Signal();
  }

  void RemoveListener(const std::shared_ptr<ListenerState>& state) {
    RunOnLoop([&] {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, state->fd, nullptr);
      close(state->fd);
      state->fd = -1;
      std::erase(listeners_, state);
    });
  }

 private:
  EpollTransport(const TransportOptions& options, int ep, int wake,
                 std::unique_ptr<LocalBufferPool> rx)
      : options_(options), epoll_fd_(ep), wake_fd_(wake), rx_pool_(std::move(rx)) {
    wake_.kind = Pollable::Kind::kWake;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    Notification started;
    thread_ = std::thread([this, &started] {
      loop_thread_id_ = std::this_thread::get_id();
      started.Notify();
      Run();
    });
    started.WaitForNotification();
  }

  void Signal() {
    uint64_t one = 1;
    ssize_t rc = write(wake_fd_, &one, sizeof(one));
    (void)rc;  // EAGAIN means the counter is already non-zero: the loop will wake anyway
  }

  absl::Status AddConnection(const std::shared_ptr<SocketConnection>& conn,
                             const AcceptCallback* on_accept,
                             std::shared_ptr<ListenerState> listener) {
    auto state = std::make_unique<ConnState>();
    state->kind = Pollable::Kind::kConnection;
    state->conn = conn;
    state->on_accept = on_accept;
    state->listener = std::move(listener);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = static_cast<Pollable*>(state.get());
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, conn->fd(), &ev) != 0) {
      return ErrnoStatus(errno, "epoll_ctl add connection");
    }
    if (conn->handshaking()) ++handshaking_;
    conns_.emplace(conn.get(), std::move(state));
    // A client connection is established already: its owner may send at once.
    if (!conn->handshaking()) conn->AllowDirectSends();
    return absl::OkStatus();
  }

  void Run() {
    std::vector<epoll_event> events(256);
    while (!stopping_) {
      // Handshakes have a deadline; everything else waits for events.
      const int timeout_ms = !MayBlock() ? 0 : handshaking_ + lingering_ > 0 ? 100 : -1;
      int n = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
      if (n < 0 && errno != EINTR) {
        SLUICE_LOG_ERROR("epoll_wait: {}", std::strerror(errno));
        break;
      }
      for (int i = 0; i < n; ++i) {
        auto* p = static_cast<Pollable*>(events[i].data.ptr);
        switch (p->kind) {
          case Pollable::Kind::kWake: {
            uint64_t v;
            ssize_t rc = read(wake_fd_, &v, sizeof(v));
            (void)rc;
            break;
          }
          case Pollable::Kind::kListener:
            AcceptAll(static_cast<ListenerState*>(p));
            break;
          case Pollable::Kind::kConnection: {
            auto* s = static_cast<ConnState*>(p);
            if (s->conn->finished()) break;
            if (events[i].events & EPOLLOUT) Flush(s);
            if (!s->conn->finished() &&
                (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))) {
              ReadSome(s);
            }
            break;
          }
        }
      }
      RunCommands();
      ProcessDirty();
      if (handshaking_ + lingering_ > 0) ExpireDeadlines();
      Reap();
    }
  }

  void RunCommands() {
    std::vector<absl::AnyInvocable<void()>> commands;
    {
      MutexLock lock(&mu_);
      commands.swap(commands_);
    }
    for (auto& c : commands) c();
  }

  void ProcessDirty() {
    // Frames sent by handlers during this round are picked up in the same round, so an echo
    // costs no extra wake-up.
    for (int round = 0; round < 4; ++round) {
      std::vector<std::shared_ptr<SocketConnection>> dirty;
      {
        MutexLock lock(&mu_);
        dirty.swap(dirty_);
      }
      if (dirty.empty()) return;
      for (auto& c : dirty) {
        auto it = conns_.find(c.get());
        if (it == conns_.end()) {
          // Not registered (yet, or any more): a finished connection drops its requests.
          continue;
        }
        ConnState* s = it->second.get();
        SocketConnection::Requests req;
        s->conn->TakeRequests(&req);
        for (auto& f : req.frames) {
          // A frame a direct send began goes on from where it stopped; nothing was queued
          // before it, or the direct send would not have been allowed.
          if (f.skip > 0 && s->out.empty()) s->out_offset = f.skip;
          s->out.push_back(std::move(f));
        }
        if (req.abort.has_value()) {
          Fail(s, *req.abort, /*tell_peer=*/true);
          continue;
        }
        if (req.close) s->closing = true;
        Flush(s);
      }
    }
    // Work left after the last round makes MayBlock() false: the next epoll_wait polls.
  }

  void AcceptAll(ListenerState* l) {
    while (l->fd >= 0) {
      int fd = accept4(l->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          SLUICE_LOG_WARN("accept: {}", std::strerror(errno));
        }
        return;
      }
      if (absl::Status s = PrepareStreamSocket(fd); !s.ok()) {
        SLUICE_LOG_WARN("accepted socket: {}", s.message());
        close(fd);
        continue;
      }
      auto conn = std::make_shared<SocketConnection>(fd, PeerAddress(fd), this, rx_pool_.get(),
                                                     options_, &stats_, /*handshaking=*/true);
      std::shared_ptr<ListenerState> keep;
      for (auto& ls : listeners_) {
        if (ls.get() == l) keep = ls;
      }
      if (absl::Status s = AddConnection(conn, &l->on_accept, keep); !s.ok()) {
        SLUICE_LOG_WARN("{}", s.message());
        conn->FinishClose(s);
        close(fd);
      }
    }
  }

  void ReadSome(ConnState* s) {
    SocketConnection& c = *s->conn;
    for (int i = 0; i < kReadsPerEvent && !c.finished(); ++i) {
      FrameReader::Target targets[2];
      const int n = c.reader().PrepareTargets(targets);
      if (n == 0) {
        PauseReading(s);
        return;
      }
      iovec iov[2];
      size_t want = 0;
      for (int k = 0; k < n; ++k) {
        iov[k] = {targets[k].data, targets[k].len};
        want += targets[k].len;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n);
      ssize_t r = recvmsg(c.fd(), &msg, 0);
      if (r > 0) {
        absl::Status st = c.reader().OnReceived(
            static_cast<size_t>(r), [&](const FrameHeader& h, Buffer payload) {
              if (c.finished() || s->closing_on_error) return;
              bool tell_peer = true;
              const bool was_handshaking = c.handshaking();
              absl::Status d = c.Dispatch(h, std::move(payload), s->on_accept, &tell_peer);
              if (was_handshaking && !c.handshaking()) --handshaking_;
              if (!d.ok()) {
                s->closing_on_error = true;
                s->error = d;
                s->tell_peer = tell_peer;
              }
            });
        if (!st.ok()) {
          Fail(s, st, /*tell_peer=*/true);
          return;
        }
        if (s->closing_on_error) {
          Fail(s, s->error, s->tell_peer);
          return;
        }
        if (static_cast<size_t>(r) < want) return;  // drained for now
        continue;
      }
      if (r == 0) {
        if (s->half_closed) {
          Finish(s, absl::OkStatus());  // we closed first: what the peer was still sending is moot
        } else if (c.reader().at_frame_boundary() && !c.handshaking()) {
          if (s->out.empty()) {
            Finish(s, absl::OkStatus());
          } else {
            // The peer is done sending but may still read: deliver what is queued, then close.
            s->peer_eof = true;
            s->closing = true;
            s->read_paused = true;
            UpdateInterest(s);
            Flush(s);
          }
        } else {
          Finish(s, absl::UnavailableError(absl::StrFormat(
                        "%s closed the connection mid-frame (%d bytes of a partial frame received)",
                        c.peer(), c.reader().partial_bytes())));
        }
        return;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      Finish(s, ErrnoStatus(errno, "connection to " + c.peer()));
      return;
    }
  }

  void PauseReading(ConnState* s) {
    if (s->read_paused) return;
    s->read_paused = true;
    UpdateInterest(s);
    std::weak_ptr<SocketConnection> weak = s->conn;
    rx_pool_->NotifyWhenAvailable([this, weak]() {
      Post([this, weak] {
        auto c = weak.lock();
        if (!c) return;
        auto it = conns_.find(c.get());
        if (it == conns_.end()) return;
        if (it->second->peer_eof) return;  // nothing more to read on this one
        it->second->read_paused = false;
        UpdateInterest(it->second.get());
      });
    });
  }

  void UpdateInterest(ConnState* s) {
    epoll_event ev{};
    ev.events = (s->read_paused ? 0u : (EPOLLIN | EPOLLRDHUP)) | (s->want_out ? EPOLLOUT : 0u);
    ev.data.ptr = static_cast<Pollable*>(s);
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, s->conn->fd(), &ev);
  }

  // Writes as much of `out` as the socket takes.
  void Flush(ConnState* s) {
    SocketConnection& c = *s->conn;
    while (!s->out.empty() && !c.finished()) {
      iovec iov[kMaxIov];
      int n = 0;
      size_t skip = s->out_offset;
      for (auto it = s->out.begin(); it != s->out.end() && n + 2 <= kMaxIov; ++it) {
        size_t hdr_skip = std::min(skip, kFrameHeaderSize);
        if (hdr_skip < kFrameHeaderSize) {
          iov[n++] = {it->header + hdr_skip, kFrameHeaderSize - hdr_skip};
        }
        skip -= hdr_skip;
        if (it->payload.valid() && it->payload.readable_bytes() > skip) {
          iov[n++] = {const_cast<char*>(it->payload.read_ptr()) + skip,
                      it->payload.readable_bytes() - skip};
        }
        skip = 0;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n);
      ssize_t w = sendmsg(c.fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (!s->want_out) {
            s->want_out = true;
            UpdateInterest(s);
          }
          return;
        }
        Finish(s, ErrnoStatus(errno, "send to " + c.peer()));
        return;
      }
      stats_.bytes_sent.fetch_add(static_cast<uint64_t>(w), std::memory_order_relaxed);
      size_t left = static_cast<size_t>(w) + s->out_offset;
      while (!s->out.empty() && left >= s->out.front().size()) {
        left -= s->out.front().size();
        s->out.pop_front();  // releases the payload: the kernel has copied it
        stats_.frames_sent.fetch_add(1, std::memory_order_relaxed);
      }
      s->out_offset = left;
    }
    if (s->out.empty()) {
      if (s->want_out) {
        s->want_out = false;
        UpdateInterest(s);
      }
      if (!s->closing && !c.handshaking() && !c.finished()) c.AllowDirectSends();
      if (s->closing && s->peer_eof) {
        Finish(s, absl::OkStatus());
      } else if (s->closing && !s->half_closed) {
        shutdown(c.fd(), SHUT_WR);
        s->half_closed = true;
        s->linger_deadline = absl::Now() + options_.handshake_timeout;
        ++lingering_;
      }
    }
  }

  // Sends `cause` as an error frame when asked (best effort), then closes.
  void Fail(ConnState* s, const absl::Status& cause, bool tell_peer) {
    if (s->conn->finished()) return;
    s->conn->StopDirectSends();
    if (tell_peer) {
      s->out.clear();
      s->out_offset = 0;
      FrameHeader h;
      h.type = static_cast<uint8_t>(FrameType::kError);
      OutFrame f = SocketConnection::MakeOutFrame(h, BuildError(cause));
      ssize_t rc =
          send(s->conn->fd(), f.header, kFrameHeaderSize, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
      if (rc == static_cast<ssize_t>(kFrameHeaderSize)) {
        rc = send(s->conn->fd(), f.payload.read_ptr(), f.payload.readable_bytes(),
                  MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      (void)rc;
    }
    Finish(s, cause);
  }

  void Finish(ConnState* s, const absl::Status& cause) {
    if (s->conn->finished()) return;
    if (!cause.ok()) SLUICE_LOG_DEBUG("connection {} closed: {}", s->conn->peer(), cause.message());
    if (s->conn->handshaking()) --handshaking_;
    if (s->half_closed) --lingering_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, s->conn->fd(), nullptr);
    s->out.clear();
    s->conn->FinishClose(cause);
    close(s->conn->fd());
    reap_.push_back(s->conn.get());
  }

  void ExpireDeadlines() {
    const absl::Time now = absl::Now();
    for (auto& [raw, s] : conns_) {
      if (!s->conn->finished() && s->half_closed && now > s->linger_deadline) {
        Finish(s.get(), absl::OkStatus());  // our side is done; the peer just never closed
        continue;
      }
      if (!s->conn->finished() && s->conn->handshaking() && now > s->conn->handshake_deadline()) {
        Fail(s.get(),
             absl::DeadlineExceededError(
                 absl::StrCat("no hello from ", s->conn->peer(), " within ",
                              absl::FormatDuration(options_.handshake_timeout))),
             true);
      }
    }
  }

  // Frees finished connections once no event of this round can still point at them.
  void Reap() {
    for (SocketConnection* c : reap_) conns_.erase(c);
    reap_.clear();
  }

  const TransportOptions options_;
  const int epoll_fd_;
  const int wake_fd_;
  std::unique_ptr<LocalBufferPool> rx_pool_;
  TransportStats stats_;
  Pollable wake_;
  std::thread thread_;
  std::thread::id loop_thread_id_;

  // Loop-thread state.
  bool stopping_ = false;
  int handshaking_ = 0;
  int lingering_ = 0;
  std::vector<std::shared_ptr<ListenerState>> listeners_;
  absl::flat_hash_map<SocketConnection*, std::unique_ptr<ConnState>> conns_;
  std::vector<SocketConnection*> reap_;

  Mutex mu_;
  std::vector<absl::AnyInvocable<void()>> commands_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<SocketConnection>> dirty_ ABSL_GUARDED_BY(mu_);
  bool signaled_ ABSL_GUARDED_BY(mu_) = false;
};

EpollListener::~EpollListener() { transport_->RemoveListener(state_); }

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> CreateEpollTransport(const TransportOptions& options) {
  return EpollTransport::Create(options);
}

}  // namespace sluice::net::internal
