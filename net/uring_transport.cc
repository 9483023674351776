// The io_uring transport: one ring per I/O thread (one thread for now), multishot accept,
// receives into pool segments through a provided-buffer ring, scatter-gather sends straight from
// the payload segments (IORING_OP_SEND_ZC for large payloads when enabled, the segments held
// until the kernel's notification), and an eventfd read to let other threads wake the ring.
//
// Every operation in flight keeps what it points at alive: a connection's state lives until its
// last completion arrives, and memory a receive may still write is never returned to the pool
// before that.
#include <fcntl.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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

constexpr int kMaxBatchFrames = 64;
constexpr uint16_t kBufferGroup = 7;

// user_data: a pointer with the operation kind in its low bits (every target is 8-aligned).
enum Tag : uint64_t { kTagIgnore = 0, kTagRecv = 1, kTagSend = 2, kTagAccept = 3, kTagWake = 4 };
constexpr uint64_t kTagMask = 7;

uint64_t Pack(const void* p, Tag tag) { return reinterpret_cast<uint64_t>(p) | tag; }

struct ConnState;

// Frames handed to the kernel in one sendmsg, with the iovecs that describe them.
struct SendBatch {
  ConnState* owner = nullptr;
  std::vector<OutFrame> frames;
  std::vector<iovec> iov;
  msghdr msg{};
  size_t total = 0;
  size_t sent = 0;
  bool zero_copy = false;
  int notifications_pending = 0;  // SEND_ZC: segments stay pinned until these arrive
  bool done = false;              // all bytes sent
};

struct ListenerState {
  int fd = -1;
  AcceptCallback on_accept;
  bool closing = false;
  bool accept_armed = false;
  Notification* released = nullptr;  // notified once the socket is really closed
};

struct ConnState {
  std::shared_ptr<SocketConnection> conn;
  const AcceptCallback* on_accept = nullptr;
  std::shared_ptr<ListenerState> listener;
  std::deque<OutFrame> out;
  std::unique_ptr<SendBatch> sending;              // at most one send in flight: keeps order
  std::vector<std::unique_ptr<SendBatch>> pinned;  // sent, waiting for zero-copy notifications
  int ops = 0;                                     // submissions whose completion has not arrived
  iovec recv_iov[2];                               // a scatter receive in flight points here
  msghdr recv_msg{};
  bool recv_armed = false;
  bool read_paused = false;  // waiting for a pool segment or a ring refill
  bool closing = false;      // orderly close requested: finish when everything is sent
  bool half_closed = false;  // FIN sent; reading on until the peer's (see the epoll transport)
  absl::Time linger_deadline;
  bool peer_eof = false;  // the peer's FIN came while frames were still queued for it
  bool dying = false;     // shut down; FinishClose once `ops` reaches 0
  absl::Status cause;
  bool error_pending = false;
  bool tell_peer = false;
  absl::Status error;
};

class UringListener final : public Listener {
 public:
  UringListener(class UringTransport* t, std::shared_ptr<ListenerState> s, uint16_t port,
                std::string host)
      : transport_(t), state_(std::move(s)), port_(port), host_(std::move(host)) {}
  ~UringListener() override;
  uint16_t port() const override { return port_; }
  std::string address() const override { return absl::StrFormat("%s:%d", host_, port_); }

 private:
  class UringTransport* transport_;
  std::shared_ptr<ListenerState> state_;
  uint16_t port_;
  std::string host_;
};

absl::Status ClearNonBlocking(int fd) {
  // io_uring completes operations on O_NONBLOCK sockets with -EAGAIN instead of waiting for
  // readiness itself; blocking mode lets the ring do the waiting.
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl ~O_NONBLOCK");
  }
  return absl::OkStatus();
}

class UringTransport final : public Transport, public LoopWaker {
 public:
  static absl::StatusOr<std::unique_ptr<Transport>> Create(const TransportOptions& options) {
    auto rx = options.pool->CreateLocalPool(
        "uring-receive", std::max<size_t>(options.receive_min_segments, options.provided_buffers),
        std::max<size_t>(options.receive_max_segments, options.provided_buffers * 2));
    if (!rx.ok()) return rx.status();
    int wake = eventfd(0, EFD_CLOEXEC);
    if (wake < 0) return ErrnoStatus(errno, "eventfd");
    std::unique_ptr<UringTransport> t(new UringTransport(options, wake, std::move(*rx)));
    SLUICE_RETURN_IF_ERROR(t->Start());
    return std::unique_ptr<Transport>(std::move(t));
  }

  ~UringTransport() override {
    if (thread_.joinable()) {
      RunOnLoop([this] { stopping_ = true; });
      thread_.join();
    }
    close(wake_fd_);
  }

  std::string_view name() const override { return "uring"; }
  const TransportStats& stats() const override { return stats_; }

  absl::StatusOr<std::unique_ptr<Listener>> Listen(const std::string& host, uint16_t port,
                                                   AcceptCallback on_accept) override {
    SLUICE_ASSIGN_OR_RETURN(int fd, OpenListenSocket(host, port, options_.reuse_port));
    auto state = std::make_shared<ListenerState>();
    state->fd = fd;
    state->on_accept = std::move(on_accept);
    RunOnLoop([&] {
      listeners_.push_back(state);
      ArmAccept(state.get());
    });
    return std::unique_ptr<Listener>(new UringListener(this, state, LocalPort(fd), host));
  }

  absl::StatusOr<std::shared_ptr<Connection>> Connect(
      const ConnectOptions& options, std::shared_ptr<ConnectionHandler> handler) override {
    std::string server_name;
    SLUICE_ASSIGN_OR_RETURN(int fd, ConnectAndHandshake(options, options_, &server_name));
    if (absl::Status s = ClearNonBlocking(fd); !s.ok()) {
      close(fd);
      return s;
    }
    auto conn = std::make_shared<SocketConnection>(
        fd, absl::StrFormat("%s:%d", options.host, options.port), this, rx_pool_.get(), options_,
        &stats_, /*handshaking=*/false);
    conn->set_peer_name(std::move(server_name));
    conn->set_handler(std::move(handler));
    RunOnLoop([&] { AddConnection(conn, nullptr, nullptr); });
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

  bool MayBlock() {
    MutexLock lock(&mu_);
    if (!commands_.empty() || !dirty_.empty()) return false;
    signaled_ = false;
    return true;
  }

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

  // Returns once the port is free: the accept in flight holds its own reference to the socket,
  // so the socket is closed only when that accept's last (cancelled) completion has arrived.
  void RemoveListener(const std::shared_ptr<ListenerState>& state) {
    Notification released;
    RunOnLoop([&] {
      state->closing = true;
      state->released = &released;
      if (state->accept_armed) {
        io_uring_sqe* sqe = GetSqe();
        io_uring_prep_cancel64(sqe, Pack(state.get(), kTagAccept), 0);
        io_uring_sqe_set_data64(sqe, kTagIgnore);
      } else {
        ReleaseListener(state.get());
      }
    });
    released.WaitForNotification();
  }

 private:
  UringTransport(const TransportOptions& options, int wake, std::unique_ptr<LocalBufferPool> rx)
      : options_(options), wake_fd_(wake), rx_pool_(std::move(rx)) {}

  // Creates the ring on the I/O thread itself (it is the ring's only submitter).
  absl::Status Start() {
    Notification started;
    absl::Status status;
    thread_ = std::thread([this, &started, &status] {
      loop_thread_id_ = std::this_thread::get_id();
      status = SetUpRing();
      const bool ok = status.ok();
      started.Notify();
      if (ok) {
        Run();
      } else {
        TearDownRing();
      }
    });
    started.WaitForNotification();
    if (!status.ok()) {
      thread_.join();
      return status;
    }
    return absl::OkStatus();
  }

  absl::Status SetUpRing() {
    io_uring_params params{};
    // DEFER_TASKRUN (6.1+): completion work runs when this thread asks for events, not as an
    // interrupt of whatever it is doing; it needs SINGLE_ISSUER, which holds (only this thread
    // submits).
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = options_.ring_entries * 4;
    int rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    if (rc == -EINVAL) {
      params = io_uring_params{};
      params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE;
      params.cq_entries = options_.ring_entries * 4;
      rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    }
    if (rc == -EINVAL) {
      // Older kernels lack the flags; they are optimisations only.
      params = io_uring_params{};
      rc = io_uring_queue_init_params(options_.ring_entries, &ring_, &params);
    }
    if (rc < 0) return ErrnoStatus(-rc, "io_uring_queue_init");
    ring_ready_ = true;

    // Provided-buffer ring, set up by hand (liburing 2.3 has no io_uring_setup_buf_ring).
    unsigned entries = 1;
    while (entries < options_.provided_buffers) entries <<= 1;
    buf_entries_ = entries;
    buf_ring_bytes_ = entries * sizeof(io_uring_buf);
    void* mem =
        mmap(nullptr, buf_ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return ErrnoStatus(errno, "mmap provided-buffer ring");
    buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(buf_ring_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(buf_ring_);
    reg.ring_entries = entries;
    reg.bgid = kBufferGroup;
    rc = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (rc < 0) return ErrnoStatus(-rc, "io_uring_register_buf_ring");
    buf_ring_registered_ = true;
    slots_.resize(entries);
    for (unsigned bid = 0; bid < entries; ++bid) missing_.push_back(static_cast<uint16_t>(bid));
    RefillRing();
    ArmWake();
    io_uring_submit(&ring_);
    return absl::OkStatus();
  }

  void TearDownRing() {
    if (buf_ring_registered_) io_uring_unregister_buf_ring(&ring_, kBufferGroup);
    if (buf_ring_ != nullptr) munmap(buf_ring_, buf_ring_bytes_);
    slots_.clear();
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  io_uring_sqe* GetSqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void Signal() {
    uint64_t one = 1;
    ssize_t rc = write(wake_fd_, &one, sizeof(one));
    (void)rc;
  }

  void ArmWake() {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
    io_uring_sqe_set_data64(sqe, Pack(this, kTagWake));
  }

  void ArmAccept(ListenerState* l) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_multishot_accept(sqe, l->fd, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, Pack(l, kTagAccept));
    l->accept_armed = true;
  }

  // Puts pool segments into empty ring slots. A dry pool leaves slots empty until one returns.
  void RefillRing() {
    int added = 0;
    const int mask = io_uring_buf_ring_mask(buf_entries_);
    while (!missing_.empty()) {
      Buffer b = rx_pool_->TryRequest();
      if (!b.valid()) break;
      const uint16_t bid = missing_.back();
      missing_.pop_back();
      io_uring_buf_ring_add(buf_ring_, b.data(), static_cast<unsigned>(b.capacity()), bid, mask,
                            added++);
      slots_[bid] = std::move(b);
    }
    if (added > 0) io_uring_buf_ring_advance(buf_ring_, added);
    if (!missing_.empty() && !refill_waiting_) {
      refill_waiting_ = true;
      rx_pool_->NotifyWhenAvailable([this] {
        Post([this] {
          refill_waiting_ = false;
          RefillRing();
          ResumePaused();
        });
      });
    }
  }

  void ResumePaused() {
    std::vector<std::weak_ptr<SocketConnection>> paused;
    paused.swap(paused_);
    for (auto& w : paused) {
      auto c = w.lock();
      if (!c) continue;
      auto it = conns_.find(c.get());
      if (it == conns_.end()) continue;
      it->second->read_paused = false;
      ArmRecv(it->second.get());
    }
  }

  void PauseReading(ConnState* s) {
    s->read_paused = true;
    paused_.push_back(s->conn);
    if (!pool_waiting_) {
      pool_waiting_ = true;
      rx_pool_->NotifyWhenAvailable([this] {
        Post([this] {
          pool_waiting_ = false;
          RefillRing();
          ResumePaused();
        });
      });
    }
  }

  void AddConnection(const std::shared_ptr<SocketConnection>& conn, const AcceptCallback* on_accept,
                     std::shared_ptr<ListenerState> listener) {
    auto state = std::make_unique<ConnState>();
    state->conn = conn;
    state->on_accept = on_accept;
    state->listener = std::move(listener);
    ConnState* s = state.get();
    if (conn->handshaking()) ++handshaking_;
    conns_.emplace(conn.get(), std::move(state));
    // A client connection is established already: its owner may send at once.
    if (!conn->handshaking()) conn->AllowDirectSends();
    ArmRecv(s);
  }

  void ArmRecv(ConnState* s) {
    if (s->recv_armed || s->read_paused || s->dying || s->peer_eof) return;
    FrameReader& reader = s->conn->reader();
    io_uring_sqe* sqe = nullptr;
    if (reader.accepts_any_segment()) {
      if (missing_.size() == buf_entries_) {
        PauseReading(s);  // the ring is empty
        return;
      }
      sqe = GetSqe();
      io_uring_prep_recv(sqe, s->conn->fd(), nullptr, rx_pool_->segment_size(), 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = kBufferGroup;
    } else {
      FrameReader::Target targets[2];
      const int n = reader.PrepareTargets(targets);
      if (n == 0) {
        PauseReading(s);
        return;
      }
      sqe = GetSqe();
      if (n == 1) {
        io_uring_prep_recv(sqe, s->conn->fd(), targets[0].data, targets[0].len, 0);
      } else {
        // The rest of a large payload, then the next header: one receive per large frame.
        for (int k = 0; k < n; ++k) s->recv_iov[k] = {targets[k].data, targets[k].len};
        s->recv_msg = msghdr{};
        s->recv_msg.msg_iov = s->recv_iov;
        s->recv_msg.msg_iovlen = static_cast<size_t>(n);
        io_uring_prep_recvmsg(sqe, s->conn->fd(), &s->recv_msg, 0);
      }
    }
    io_uring_sqe_set_data64(sqe, Pack(s, kTagRecv));
    s->recv_armed = true;
    ++s->ops;
  }

  void Run() {
    while (!stopping_) {
      const bool deadlines = handshaking_ + lingering_ > 0;
      io_uring_cqe* cqe = nullptr;
      if (!MayBlock()) {
        io_uring_submit(&ring_);
      } else if (deadlines) {
        __kernel_timespec ts{0, 100'000'000};
        int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
        (void)rc;  // -ETIME: time to check handshake deadlines
      } else {
        io_uring_submit_and_wait(&ring_, 1);
      }
      DrainCompletions();
      RunCommands();
      ProcessDirty();
      if (handshaking_ + lingering_ > 0) ExpireDeadlines();
      Reap();
    }
    Shutdown();
  }

  void DrainCompletions() {
    // Handlers may submit (and so flush the SQ) while we walk the CQ; take one at a time.
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
      const uint64_t ud = cqe->user_data;
      const int res = cqe->res;
      const uint32_t flags = cqe->flags;
      io_uring_cqe_seen(&ring_, cqe);
      HandleCompletion(ud, res, flags);
    }
  }

  void HandleCompletion(uint64_t ud, int res, uint32_t flags) {
    void* p = reinterpret_cast<void*>(ud & ~kTagMask);
    switch (static_cast<Tag>(ud & kTagMask)) {
      case kTagIgnore:
        return;
      case kTagWake: {
        ArmWake();
        return;
      }
      case kTagAccept:
        OnAccept(static_cast<ListenerState*>(p), res, flags);
        return;
      case kTagRecv:
        OnRecv(static_cast<ConnState*>(p), res, flags);
        return;
      case kTagSend:
        OnSend(static_cast<SendBatch*>(p), res, flags);
        return;
    }
  }

  void ReleaseListener(ListenerState* l) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    if (l->released != nullptr) l->released->Notify();
    l->released = nullptr;
    std::erase_if(listeners_, [l](const auto& x) { return x.get() == l; });  // may free l
  }

  void OnAccept(ListenerState* l, int res, uint32_t flags) {
    const bool last = !(flags & IORING_CQE_F_MORE);
    if (last) l->accept_armed = false;
    if (last && l->closing) {
      if (res >= 0) close(res);
      ReleaseListener(l);
      return;
    }
    if (res >= 0) {
      const int fd = res;
      absl::Status s = PrepareStreamSocket(fd);
      if (s.ok()) s = ClearNonBlocking(fd);
      if (!s.ok() || l->closing) {
        close(fd);
      } else {
        std::shared_ptr<ListenerState> keep;
        for (auto& ls : listeners_) {
          if (ls.get() == l) keep = ls;
        }
        auto conn = std::make_shared<SocketConnection>(fd, PeerAddress(fd), this, rx_pool_.get(),
                                                       options_, &stats_, /*handshaking=*/true);
        AddConnection(conn, &l->on_accept, std::move(keep));
      }
    } else if (res != -ECANCELED && !l->closing) {
      SLUICE_LOG_WARN("accept: {}", std::strerror(-res));
    }
    if (!l->accept_armed && !l->closing) ArmAccept(l);
  }

  // Called with the bytes of one receive; runs the reader and dispatches frames.
  void OnRecv(ConnState* s, int res, uint32_t flags) {
    --s->ops;
    s->recv_armed = false;
    Buffer selected;
    if (flags & IORING_CQE_F_BUFFER) {
      const uint16_t bid = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
      selected = std::move(slots_[bid]);
      missing_.push_back(bid);
      RefillRing();
    }
    if (s->dying) {
      MaybeFinish(s);
      return;
    }
    SocketConnection& c = *s->conn;
    if (res == -ENOBUFS) {
      PauseReading(s);
      return;
    }
    if (res < 0) {
      if (res == -EINTR || res == -EAGAIN) {
        ArmRecv(s);
        return;
      }
      Die(s, ErrnoStatus(-res, "connection to " + c.peer()));
      return;
    }
    if (res == 0) {
      if (s->half_closed) {
        Die(s, absl::OkStatus());  // we closed first: what the peer was still sending is moot
      } else if (c.reader().at_frame_boundary() && !c.handshaking()) {
        if (s->sending == nullptr && s->out.empty()) {
          Die(s, absl::OkStatus());
        } else {
          // The peer is done sending but may still read: deliver what is queued, then close.
          // No receive is armed again.
          s->peer_eof = true;
          s->closing = true;
          Flush(s);
        }
      } else {
        Die(s, absl::UnavailableError(absl::StrFormat(
                   "%s closed the connection mid-frame (%d bytes of a partial frame received)",
                   c.peer(), c.reader().partial_bytes())));
      }
      return;
    }
    size_t dispatched = 0;
    auto sink = [&](const FrameHeader& h, Buffer payload) {
      if (s->dying || s->error_pending) return;
      bool tell_peer = true;
      const bool was_handshaking = c.handshaking();
      absl::Status d = c.Dispatch(h, std::move(payload), s->on_accept, &tell_peer);
      if (was_handshaking && !c.handshaking()) --handshaking_;
      if (!d.ok()) {
        s->error_pending = true;
        s->error = d;
        s->tell_peer = tell_peer;
        return;
      }
      if (options_.flush_after_frames > 0 && ++dispatched % options_.flush_after_frames == 0 &&
          !c.handshaking()) {
        FlushMidReceive(s);
      }
    };
    absl::Status st =
        selected.valid() ? c.reader().OnSegment(std::move(selected), static_cast<size_t>(res), sink)
                         : c.reader().OnReceived(static_cast<size_t>(res), sink);
    if (!st.ok()) {
      Fail(s, st, /*tell_peer=*/true);
      return;
    }
    if (s->error_pending) {
      Fail(s, s->error, s->tell_peer);
      return;
    }
    // The handshake reply (and whatever handlers sent) goes out with this round.
    ArmRecv(s);
  }

  // Sends what handlers queued on `s` so far while its receive is still being dispatched. Only
  // this connection is touched, and nothing here can end it: an abort a handler asked for is
  // left for OnRecv to carry out once the frames are dispatched.
  void FlushMidReceive(ConnState* s) {
    SocketConnection::Requests req;
    s->conn->TakeRequests(&req);
    for (auto& f : req.frames) s->out.push_back(std::move(f));
    if (req.abort.has_value()) {
      s->error_pending = true;
      s->error = *req.abort;
      s->tell_peer = true;
      return;
    }
    if (req.close) s->closing = true;
    if (s->out.empty() || s->sending != nullptr) return;  // the send in flight takes them next
    Flush(s);
    io_uring_submit(&ring_);
  }

  void Flush(ConnState* s) {
    if (s->sending != nullptr || s->dying) return;
    if (s->out.empty()) {
      if (!s->closing && !s->conn->handshaking()) s->conn->AllowDirectSends();
      if (s->closing && s->peer_eof) {
        Die(s, absl::OkStatus());
      } else if (s->closing && s->pinned.empty() && !s->half_closed) {
        shutdown(s->conn->fd(), SHUT_WR);
        s->half_closed = true;
        s->linger_deadline = absl::Now() + options_.handshake_timeout;
        ++lingering_;
      }
      return;
    }
    auto batch = std::make_unique<SendBatch>();
    batch->owner = s;
    while (!s->out.empty() && batch->frames.size() < kMaxBatchFrames) {
      batch->frames.push_back(std::move(s->out.front()));
      s->out.pop_front();
    }
    batch->iov.reserve(batch->frames.size() * 2);
    size_t largest = 0;
    for (OutFrame& f : batch->frames) {
      // A frame a direct send began (only ever the first) goes on from where it stopped.
      const size_t header_skip = std::min(f.skip, kFrameHeaderSize);
      const size_t payload_skip = f.skip - header_skip;
      if (header_skip < kFrameHeaderSize) {
        batch->iov.push_back({f.header + header_skip, kFrameHeaderSize - header_skip});
      }
      if (f.payload.valid() && f.payload.readable_bytes() > payload_skip) {
        batch->iov.push_back({const_cast<char*>(f.payload.read_ptr()) + payload_skip,
                              f.payload.readable_bytes() - payload_skip});
        largest = std::max(largest, f.payload.readable_bytes());
      }
      batch->total += f.size() - f.skip;
    }
    batch->zero_copy = options_.zero_copy_threshold > 0 && largest >= options_.zero_copy_threshold;
    s->sending = std::move(batch);
    SubmitSend(s->sending.get());
  }

  void SubmitSend(SendBatch* b) {
    b->msg = msghdr{};
    b->msg.msg_iov = b->iov.data();
    b->msg.msg_iovlen = b->iov.size();
    io_uring_sqe* sqe = GetSqe();
    if (b->zero_copy) {
      io_uring_prep_sendmsg_zc(sqe, b->owner->conn->fd(), &b->msg, MSG_NOSIGNAL);
      stats_.zero_copy_sends.fetch_add(1, std::memory_order_relaxed);
    } else {
      io_uring_prep_sendmsg(sqe, b->owner->conn->fd(), &b->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, Pack(b, kTagSend));
    ++b->owner->ops;
  }

  void OnSend(SendBatch* b, int res, uint32_t flags) {
    ConnState* s = b->owner;
    if (flags & IORING_CQE_F_NOTIF) {
      // The kernel no longer reads the zero-copy pages: the segments may go back to the pool.
      --s->ops;
      --b->notifications_pending;
      if (b->done && b->notifications_pending == 0) {
        std::erase_if(s->pinned, [b](const auto& x) { return x.get() == b; });
      }
      if (s->dying) {
        MaybeFinish(s);
      } else if (s->closing) {
        Flush(s);
      }
      return;
    }
    --s->ops;
    if (flags & IORING_CQE_F_MORE) {
      ++b->notifications_pending;
      ++s->ops;
    }
    if (s->dying) {
      FinishBatch(s);
      MaybeFinish(s);
      return;
    }
    if (res < 0) {
      FinishBatch(s);
      Die(s, ErrnoStatus(-res, "send to " + s->conn->peer()));
      return;
    }
    stats_.bytes_sent.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    b->sent += static_cast<size_t>(res);
    if (b->sent < b->total) {
      // Short send: skip what went out and submit the rest of the same batch.
      size_t skip = static_cast<size_t>(res);
      size_t i = 0;
      while (skip > 0 && i < b->iov.size()) {
        if (skip >= b->iov[i].iov_len) {
          skip -= b->iov[i].iov_len;
          ++i;
        } else {
          b->iov[i].iov_base = static_cast<char*>(b->iov[i].iov_base) + skip;
          b->iov[i].iov_len -= skip;
          skip = 0;
        }
      }
      b->iov.erase(b->iov.begin(), b->iov.begin() + static_cast<std::ptrdiff_t>(i));
      SubmitSend(b);
      return;
    }
    stats_.frames_sent.fetch_add(b->frames.size(), std::memory_order_relaxed);
    FinishBatch(s);
    Flush(s);
  }

  // The batch in flight is complete: release it, or pin it until its notifications arrive.
  void FinishBatch(ConnState* s) {
    std::unique_ptr<SendBatch> b = std::move(s->sending);
    if (b == nullptr) return;
    b->done = true;
    if (b->notifications_pending > 0) s->pinned.push_back(std::move(b));
  }

  void ProcessDirty() {
    for (int round = 0; round < 4; ++round) {
      std::vector<std::shared_ptr<SocketConnection>> dirty;
      {
        MutexLock lock(&mu_);
        dirty.swap(dirty_);
      }
      if (dirty.empty()) break;
      for (auto& c : dirty) {
        auto it = conns_.find(c.get());
        if (it == conns_.end()) continue;
        ConnState* s = it->second.get();
        SocketConnection::Requests req;
        c->TakeRequests(&req);
        if (s->dying) continue;
        for (auto& f : req.frames) s->out.push_back(std::move(f));
        if (req.abort.has_value()) {
          Fail(s, *req.abort, /*tell_peer=*/true);
          continue;
        }
        if (req.close) s->closing = true;
        Flush(s);
      }
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

  // Tells the peer why (best effort, a blocking-free send of one error frame), then closes.
  void Fail(ConnState* s, const absl::Status& cause, bool tell_peer) {
    if (s->dying) return;
    s->conn->StopDirectSends();
    if (tell_peer && s->sending == nullptr) {
      FrameHeader h;
      h.type = static_cast<uint8_t>(FrameType::kError);
      Buffer whole = EncodeWholeFrame(h, BuildError(cause));
      ssize_t rc = send(s->conn->fd(), whole.read_ptr(), whole.readable_bytes(),
                        MSG_NOSIGNAL | MSG_DONTWAIT);
      (void)rc;
    }
    Die(s, cause);
  }

  // Starts closing: operations in flight are cut short, and the owner hears of it when the
  // last of them has completed (a receive may still be writing into the reader's buffers).
  void Die(ConnState* s, const absl::Status& cause) {
    if (s->dying) return;
    s->dying = true;
    s->cause = cause;
    if (!cause.ok()) SLUICE_LOG_DEBUG("connection {} closed: {}", s->conn->peer(), cause.message());
    if (s->conn->handshaking()) --handshaking_;
    if (s->half_closed) --lingering_;
    s->out.clear();
    shutdown(s->conn->fd(), SHUT_RDWR);
    MaybeFinish(s);
  }

  void MaybeFinish(ConnState* s) {
    if (!s->dying || s->ops > 0 || s->conn->finished()) return;
    s->pinned.clear();
    s->conn->FinishClose(s->cause);
    close(s->conn->fd());
    reap_.push_back(s->conn.get());
  }

  void ExpireDeadlines() {
    const absl::Time now = absl::Now();
    for (auto& [raw, s] : conns_) {
      if (!s->dying && s->half_closed && now > s->linger_deadline) {
        Die(s.get(), absl::OkStatus());  // our side is done; the peer just never closed
        continue;
      }
      if (!s->dying && s->conn->handshaking() && now > s->conn->handshake_deadline()) {
        Fail(s.get(),
             absl::DeadlineExceededError(
                 absl::StrCat("no hello from ", s->conn->peer(), " within ",
                              absl::FormatDuration(options_.handshake_timeout))),
             true);
      }
    }
  }

  void Reap() {
    for (SocketConnection* c : reap_) conns_.erase(c);
    reap_.clear();
  }

  // On the I/O thread after the loop: cut every connection, wait for every operation, free.
  void Shutdown() {
    for (auto& l : listeners_) {
      if (l->accept_armed) {
        io_uring_sqe* sqe = GetSqe();
        io_uring_prep_cancel64(sqe, Pack(l.get(), kTagAccept), 0);
        io_uring_sqe_set_data64(sqe, kTagIgnore);
      }
      l->closing = true;
    }
    for (auto& [raw, s] : conns_) Die(s.get(), absl::CancelledError("transport shut down"));
    {
      io_uring_sqe* sqe = GetSqe();  // the wake read is the last operation; cancel it too
      io_uring_prep_cancel64(sqe, Pack(this, kTagWake), 0);
      io_uring_sqe_set_data64(sqe, kTagIgnore);
    }
    auto busy = [this] {
      for (auto& [raw, s] : conns_) {
        if (!s->conn->finished()) return true;
      }
      for (auto& l : listeners_) {
        if (l->accept_armed) return true;
      }
      return false;
    };
    while (busy()) {
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait(&ring_, 1);
      while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
        const uint64_t ud = cqe->user_data;
        const int res = cqe->res;
        const uint32_t flags = cqe->flags;
        io_uring_cqe_seen(&ring_, cqe);
        if ((ud & kTagMask) == kTagWake) continue;  // do not re-arm
        HandleCompletion(ud, res, flags);
      }
    }
    Reap();
    for (auto& l : listeners_) {
      if (l->fd >= 0) close(l->fd);
    }
    listeners_.clear();
    TearDownRing();
  }

  const TransportOptions options_;
  const int wake_fd_;
  std::unique_ptr<LocalBufferPool> rx_pool_;
  TransportStats stats_;
  std::thread thread_;
  std::thread::id loop_thread_id_;

  // I/O-thread state.
  io_uring ring_{};
  bool ring_ready_ = false;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  unsigned buf_entries_ = 0;
  bool buf_ring_registered_ = false;
  std::vector<Buffer> slots_;      // provided-buffer id -> the segment the kernel may fill
  std::vector<uint16_t> missing_;  // ids without a segment
  bool refill_waiting_ = false;
  bool pool_waiting_ = false;
  std::vector<std::weak_ptr<SocketConnection>> paused_;
  uint64_t wake_value_ = 0;
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

UringListener::~UringListener() { transport_->RemoveListener(state_); }

}  // namespace

absl::StatusOr<std::unique_ptr<Transport>> CreateUringTransport(const TransportOptions& options) {
  return UringTransport::Create(options);
}

}  // namespace sluice::net::internal
