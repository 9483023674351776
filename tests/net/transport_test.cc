// Transports end to end, each test run over every I/O engine: frames echo intact, a 64 MiB
// transfer arrives with the checksum it left with, frames split across receives reassemble,
// bad peers (mid-frame close, oversized frame, wrong token, garbage instead of a hello) are
// refused with errors that say why while the server keeps serving, and closing is orderly.
//
// Handlers run on the transports' I/O threads; the tests wait on them with bounded waits only.
#include "net/transport.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/checksum.h"
#include "base/sync.h"
#include "net/frame.h"
#include "net/internal/socket.h"

namespace sluice::net {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

// Every wait is bounded; generous because sanitizers slow everything down.
constexpr absl::Duration kWait = absl::Seconds(60);
constexpr uint8_t kUserType = static_cast<uint8_t>(FrameType::kFirstUserType);

// Abseil's string_view is its own type here; gtest prints a std::string readably.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::unique_ptr<BufferPool> MakePool(size_t segments = 1024, size_t segment_size = 32 * 1024) {
  BufferPoolOptions options;
  options.segment_size = segment_size;
  options.num_segments = segments;
  options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? std::move(pool).value() : nullptr;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return s;
}

FrameHeader UserHeader(uint32_t channel, uint32_t sequence) {
  FrameHeader h;
  h.type = kUserType;
  h.channel = channel;
  h.sequence = sequence;
  return h;
}

struct Received {
  FrameHeader header;
  std::string payload;
};

// Records what one connection receives; in echo mode also sends every frame straight back.
// Checks the contract as it goes: no frame after OnClosed, OnClosed exactly once, payload sized
// as its header says.
class TestHandler : public ConnectionHandler {
 public:
  enum class Mode { kRecord, kEcho };
  using FrameFn = std::function<void(Connection&, const FrameHeader&, Buffer)>;

  explicit TestHandler(Mode mode = Mode::kRecord) : mode_(mode) {}
  // Frames go to `fn` instead of being recorded (large transfers).
  explicit TestHandler(FrameFn fn) : mode_(Mode::kRecord), fn_(std::move(fn)) {}

  void OnFrame(Connection& connection, const FrameHeader& header, Buffer payload) override {
    {
      MutexLock lock(&mu_);
      if (closes_ > 0) violations_.push_back("OnFrame after OnClosed");
      const size_t have = payload.valid() ? payload.readable_bytes() : 0;
      if (have != header.length) {
        violations_.push_back(
            absl::StrCat("payload of ", have, " bytes for length ", header.length));
      }
      ++frame_count_;
      if (!fn_) {
        frames_.push_back({header, payload.valid() ? std::string(payload.readable()) : ""});
      }
    }
    if (fn_) {
      fn_(connection, header, std::move(payload));
    } else if (mode_ == Mode::kEcho) {
      absl::Status s = connection.Send(header, std::move(payload));
      if (!s.ok()) {
        MutexLock lock(&mu_);
        echo_errors_.push_back(s);
      }
    }
  }

  void OnClosed(Connection& connection, const absl::Status& cause) override {
    MutexLock lock(&mu_);
    ++closes_;
    if (closes_ > 1) violations_.push_back("OnClosed more than once");
    cause_ = cause;
    (void)connection;
  }

  // False when the connection did not close within `timeout`.
  bool WaitClosed(absl::Duration timeout = kWait) {
    MutexLock lock(&mu_);
    auto closed = [this]() { return closes_ > 0; };
    return mu_.AwaitWithTimeout(closed, timeout);
  }
  bool WaitFrames(size_t n, absl::Duration timeout = kWait) {
    MutexLock lock(&mu_);
    auto enough = [this, n]() { return frame_count_ >= n; };
    return mu_.AwaitWithTimeout(enough, timeout);
  }

  bool closed() {
    MutexLock lock(&mu_);
    return closes_ > 0;
  }
  int closes() {
    MutexLock lock(&mu_);
    return closes_;
  }
  absl::Status cause() {
    MutexLock lock(&mu_);
    return cause_;
  }
  std::vector<Received> frames() {
    MutexLock lock(&mu_);
    return frames_;
  }
  size_t frame_count() {
    MutexLock lock(&mu_);
    return frame_count_;
  }
  std::vector<std::string> violations() {
    MutexLock lock(&mu_);
    return violations_;
  }
  std::vector<absl::Status> echo_errors() {
    MutexLock lock(&mu_);
    return echo_errors_;
  }

 private:
  const Mode mode_;
  const FrameFn fn_;
  Mutex mu_;
  std::vector<Received> frames_ ABSL_GUARDED_BY(mu_);
  size_t frame_count_ ABSL_GUARDED_BY(mu_) = 0;
  int closes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status cause_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> echo_errors_ ABSL_GUARDED_BY(mu_);
};

void ExpectNoViolations(TestHandler& h) {
  for (const std::string& v : h.violations()) ADD_FAILURE() << v;
}

// A plain blocking TCP client that speaks the wire format by hand, for what a Transport never
// sends: frames dribbled in tiny chunks, half frames, oversized headers, garbage.
class RawClient {
 public:
  ~RawClient() { Close(); }

  static std::unique_ptr<RawClient> Connect(uint16_t port) {
    auto c = std::make_unique<RawClient>();
    c->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(c->fd_, 0) << std::strerror(errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ADD_FAILURE() << "connect to port " << port << ": " << std::strerror(errno);
      return nullptr;
    }
    int one = 1;
    setsockopt(c->fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return c;
  }

  bool SendAll(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t w = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }

  // Sends `bytes` in chunks of 1..7 bytes, each its own send (TCP_NODELAY is on).
  bool SendInChunks(std::string_view bytes, std::mt19937& rng) {
    while (!bytes.empty()) {
      const size_t n = std::min<size_t>(bytes.size(), 1 + rng() % 7);
      if (!SendAll(bytes.substr(0, n))) return false;
      bytes.remove_prefix(n);
    }
    return true;
  }

  // The client half of the handshake, done by hand. Returns the server's reply frame type.
  absl::StatusOr<Received> Handshake(const TransportOptions& options) {
    FrameHeader hello;
    hello.type = static_cast<uint8_t>(FrameType::kHello);
    Buffer frame = internal::EncodeWholeFrame(hello, internal::BuildHello(options));
    if (!SendAll(frame.readable())) return absl::UnavailableError("sending the hello failed");
    return ReadFrame();
  }

  // Reads exactly `n` bytes, waiting at most until the deadline.
  absl::Status ReadExact(char* out, size_t n, absl::Time deadline) {
    while (n > 0) {
      pollfd p{fd_, POLLIN, 0};
      const int ms =
          static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
      const int rc = poll(&p, 1, ms);
      if (rc == 0) return absl::DeadlineExceededError("timed out reading");
      if (rc < 0) {
        if (errno == EINTR) continue;
        return absl::InternalError(std::strerror(errno));
      }
      ssize_t r = recv(fd_, out, n, 0);
      if (r == 0) return absl::UnavailableError("end of stream");
      if (r < 0) {
        if (errno == EINTR) continue;
        return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
      }
      out += r;
      n -= static_cast<size_t>(r);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Received> ReadFrame(absl::Duration timeout = kWait) {
    const absl::Time deadline = absl::Now() + timeout;
    char raw[kFrameHeaderSize];
    if (absl::Status s = ReadExact(raw, sizeof(raw), deadline); !s.ok()) return s;
    absl::StatusOr<FrameHeader> h = DecodeFrameHeader(raw, kDefaultMaxFrameSize);
    if (!h.ok()) return h.status();
    Received r{*h, std::string(h->length, '\0')};
    if (absl::Status s = ReadExact(r.payload.data(), r.payload.size(), deadline); !s.ok()) {
      return s;
    }
    return r;
  }

  // True once the server has closed its end (end of stream or reset), skipping whatever it sent
  // before; false when it is still open at the deadline.
  bool WaitForEof(absl::Duration timeout = kWait) {
    const absl::Time deadline = absl::Now() + timeout;
    char sink[4096];
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      const int ms =
          static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
      const int rc = poll(&p, 1, ms);
      if (rc == 0) return false;
      if (rc < 0 && errno == EINTR) continue;
      ssize_t r = recv(fd_, sink, sizeof(sink), 0);
      if (r == 0) return true;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno == ECONNRESET;
    }
  }

  // Bytes received and not read yet.
  int Readable() const {
    int n = 0;
    return ioctl(fd_, FIONREAD, &n) == 0 ? n : -1;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A port nothing listens on: bound for a moment (without listening) to learn it, then freed.
uint16_t UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  uint16_t port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// 0 when a plain TCP connect to the port succeeds, else its errno.
int TryConnect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = rc == 0 ? 0 : errno;
  close(fd);
  return err;
}

std::string EncodeFrame(const FrameHeader& header, std::string_view payload) {
  FrameHeader h = header;
  h.length = static_cast<uint32_t>(payload.size());
  std::string out(kFrameHeaderSize, '\0');
  EncodeFrameHeader(h, out.data());
  out.append(payload);
  return out;
}

#define ASSERT_OK(expr)                          \
  do {                                           \
    const absl::Status s_ = (expr);              \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_; \
  } while (0)

class TransportTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "uring") {
      if (absl::Status s = ProbeIoUring(); !s.ok()) GTEST_SKIP() << s.message();
    }
    server_pool_ = MakePool();
    client_pool_ = MakePool();
    ASSERT_NE(server_pool_, nullptr);
    ASSERT_NE(client_pool_, nullptr);
  }

  void TearDown() override {
    {
      MutexLock lock(&accepted_mu_);
      accepted_.clear();
    }
    listener_.reset();
    client_.reset();
    server_.reset();
    // Every receive segment and every sent payload has found its way back.
    if (server_pool_ != nullptr) {
      EXPECT_EQ(server_pool_->available_segments(), server_pool_->total_segments());
    }
    if (client_pool_ != nullptr) {
      EXPECT_EQ(client_pool_->available_segments(), client_pool_->total_segments());
    }
  }

  TransportOptions Options(BufferPool* pool, std::string name) {
    TransportOptions o;
    o.pool = pool;
    o.name = std::move(name);
    return o;
  }
  TransportOptions ServerOptions() { return Options(server_pool_.get(), "test-server"); }
  TransportOptions ClientOptions() { return Options(client_pool_.get(), "test-client"); }

  std::unique_ptr<Transport> MakeTransport(const TransportOptions& options) {
    absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create(GetParam(), options);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(t).value() : nullptr;
  }

  // A server transport listening on a free port; accepted connections get a TestHandler.
  void StartServer(TestHandler::Mode mode, TransportOptions options) {
    server_options_ = options;
    server_ = MakeTransport(options);
    ASSERT_NE(server_, nullptr);
    absl::StatusOr<std::unique_ptr<Listener>> l =
        server_->Listen("127.0.0.1", 0, [this, mode](std::shared_ptr<Connection> c) {
          auto h = std::make_shared<TestHandler>(mode);
          MutexLock lock(&accepted_mu_);
          accepted_.push_back({std::move(c), h});
          return h;
        });
    ASSERT_TRUE(l.ok()) << l.status();
    listener_ = std::move(l).value();
    EXPECT_NE(listener_->port(), 0);
  }
  void StartServer(TestHandler::Mode mode) { StartServer(mode, ServerOptions()); }
  void StartClient(TransportOptions options) {
    client_ = MakeTransport(options);
    ASSERT_NE(client_, nullptr);
  }
  void StartClient() { StartClient(ClientOptions()); }
  void StartBoth(TestHandler::Mode server_mode) {
    StartServer(server_mode);
    if (HasFatalFailure()) return;
    StartClient();
  }

  // Sends `per_thread` frames from each of `threads` threads, frame i of thread t with header
  // (channel t, sequence i) and `payload(t, i)`, through `send`; then checks that the server's
  // handler got them all, each thread's in order and whole.
  void SendFromThreadsAndCheck(
      Connection& conn, int threads, uint32_t per_thread,
      const std::function<std::string(int, uint32_t)>& payload,
      const std::function<absl::Status(Connection&, FrameHeader, Buffer, uint32_t)>& send) {
    std::vector<std::thread> senders;
    for (int t = 0; t < threads; ++t) {
      senders.emplace_back([&, t] {
        for (uint32_t i = 0; i < per_thread; ++i) {
          absl::Status s = send(conn, UserHeader(t, i), Buffer::CopyOf(payload(t, i)), i);
          if (!s.ok()) {
            ADD_FAILURE() << s;
            return;
          }
        }
      });
    }
    for (auto& th : senders) th.join();
    ASSERT_TRUE(WaitAccepted(1));
    auto server_handler = accepted(0).handler;
    ASSERT_TRUE(server_handler->WaitFrames(threads * per_thread)) << server_handler->frame_count();
    std::vector<uint32_t> next(threads, 0);
    for (const Received& r : server_handler->frames()) {
      ASSERT_LT(r.header.channel, static_cast<uint32_t>(threads));
      EXPECT_EQ(r.header.sequence, next[r.header.channel]) << "channel " << r.header.channel;
      EXPECT_EQ(r.payload, payload(static_cast<int>(r.header.channel), r.header.sequence));
      next[r.header.channel] = r.header.sequence + 1;
    }
  }

  ConnectOptions Where() {
    ConnectOptions o;
    o.host = "127.0.0.1";
    o.port = listener_->port();
    o.timeout = absl::Seconds(30);
    return o;
  }

  absl::StatusOr<std::shared_ptr<Connection>> Connect(std::shared_ptr<ConnectionHandler> h) {
    return client_->Connect(Where(), std::move(h));
  }

  // 64 MiB in 32 KiB payloads taken from a pool, echoed back: the CRC32C the client computed
  // over what it sent matches what the server computed over what it received, and what the
  // client computed over the echo.
  void ChecksummedTransfer(size_t zero_copy_threshold) {
    constexpr size_t kPayload = 32 * 1024;
    constexpr size_t kTotal = 64 * 1024 * 1024;
    constexpr size_t kFrames = kTotal / kPayload;

    struct Tally {
      Mutex mu;
      uint32_t crc ABSL_GUARDED_BY(mu) = 0;
      size_t bytes ABSL_GUARDED_BY(mu) = 0;
      size_t frames ABSL_GUARDED_BY(mu) = 0;
      uint32_t next_sequence ABSL_GUARDED_BY(mu) = 0;
      bool out_of_order ABSL_GUARDED_BY(mu) = false;
      void Add(const FrameHeader& h, const Buffer& p) {
        MutexLock lock(&mu);
        if (h.sequence != next_sequence++) out_of_order = true;
        if (p.valid()) {
          crc = Crc32c(crc, p.read_ptr(), p.readable_bytes());
          bytes += p.readable_bytes();
        }
        ++frames;
      }
      bool Wait(size_t n) {
        MutexLock lock(&mu);
        auto done = [this, n]() { return frames >= n; };
        return mu.AwaitWithTimeout(done, kWait * 3);
      }
    };
    auto at_server = std::make_shared<Tally>();
    auto at_client = std::make_shared<Tally>();

    server_options_ = ServerOptions();
    server_options_.zero_copy_threshold = zero_copy_threshold;
    server_ = MakeTransport(server_options_);
    ASSERT_NE(server_, nullptr);
    std::shared_ptr<TestHandler> server_handler;
    Notification accepted_one;
    auto l = server_->Listen("127.0.0.1", 0, [&](std::shared_ptr<Connection>) {
      server_handler = std::make_shared<TestHandler>(
          [at_server](Connection& c, const FrameHeader& h, Buffer payload) {
            at_server->Add(h, payload);
            absl::Status s = c.Send(h, std::move(payload));  // the received segment goes back out
            if (!s.ok()) ADD_FAILURE() << "echo: " << s;
          });
      accepted_one.Notify();
      return server_handler;
    });
    ASSERT_TRUE(l.ok()) << l.status();
    listener_ = std::move(l).value();
    TransportOptions client_options = ClientOptions();
    client_options.zero_copy_threshold = zero_copy_threshold;
    StartClient(client_options);
    auto client_handler =
        std::make_shared<TestHandler>([at_client](Connection&, const FrameHeader& h,
                                                  Buffer payload) { at_client->Add(h, payload); });
    auto conn = Connect(client_handler);
    ASSERT_TRUE(conn.ok()) << conn.status();

    // The payloads come from their own pool: sending is limited by how fast segments come back
    // after the kernel is done with them.
    auto payload_pool = MakePool(256);
    ASSERT_NE(payload_pool, nullptr);
    std::mt19937_64 rng(1234);
    uint32_t sent_crc = 0;
    for (uint32_t i = 0; i < kFrames; ++i) {
      Buffer b = payload_pool->TryRequest();
      if (!b.valid()) {
        auto available = std::make_shared<Notification>();
        payload_pool->NotifyWhenAvailable([available] { available->Notify(); });
        ASSERT_TRUE(available->WaitForNotificationWithTimeout(kWait))
            << "no payload segment came back after " << i << " frames";
        --i;
        continue;
      }
      ASSERT_EQ(b.capacity(), kPayload);
      for (size_t off = 0; off < kPayload; off += 8) {
        const uint64_t v = rng();
        std::memcpy(b.data() + off, &v, 8);
      }
      b.Commit(kPayload);
      sent_crc = Crc32c(sent_crc, b.read_ptr(), kPayload);
      ASSERT_OK((*conn)->Send(UserHeader(1, i), std::move(b)));
    }

    ASSERT_TRUE(at_server->Wait(kFrames));
    ASSERT_TRUE(at_client->Wait(kFrames));
    {
      MutexLock lock(&at_server->mu);
      EXPECT_EQ(at_server->bytes, kTotal);
      EXPECT_EQ(at_server->crc, sent_crc);
      EXPECT_FALSE(at_server->out_of_order);
    }
    {
      MutexLock lock(&at_client->mu);
      EXPECT_EQ(at_client->bytes, kTotal);
      EXPECT_EQ(at_client->crc, sent_crc);
      EXPECT_FALSE(at_client->out_of_order);
    }
    (*conn)->Close();
    ASSERT_TRUE(client_handler->WaitClosed());
    EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
    ASSERT_TRUE(accepted_one.HasBeenNotified());
    ASSERT_TRUE(server_handler->WaitClosed());
    EXPECT_TRUE(server_handler->cause().ok()) << server_handler->cause();
    ExpectNoViolations(*client_handler);
    ExpectNoViolations(*server_handler);
    conn->reset();
    if (zero_copy_threshold > 0 && GetParam() == "uring") {
      EXPECT_GT(client_->stats().zero_copy_sends.load(), 0u);
      EXPECT_GT(server_->stats().zero_copy_sends.load(), 0u);
    }
    // Everything sent has been released back to the payload pool.
    listener_.reset();
    client_.reset();
    server_.reset();
    EXPECT_EQ(payload_pool->available_segments(), payload_pool->total_segments());
  }

  struct Accepted {
    std::shared_ptr<Connection> connection;
    std::shared_ptr<TestHandler> handler;
  };
  bool WaitAccepted(size_t n, absl::Duration timeout = kWait) {
    MutexLock lock(&accepted_mu_);
    auto enough = [this, n]() { return accepted_.size() >= n; };
    return accepted_mu_.AwaitWithTimeout(enough, timeout);
  }
  Accepted accepted(size_t i) {
    MutexLock lock(&accepted_mu_);
    return accepted_.at(i);
  }
  size_t accepted_count() {
    MutexLock lock(&accepted_mu_);
    return accepted_.size();
  }

  std::unique_ptr<BufferPool> server_pool_;
  std::unique_ptr<BufferPool> client_pool_;
  TransportOptions server_options_;
  std::unique_ptr<Transport> server_;
  std::unique_ptr<Transport> client_;
  std::unique_ptr<Listener> listener_;
  Mutex accepted_mu_;
  std::vector<Accepted> accepted_ ABSL_GUARDED_BY(accepted_mu_);
};

// Tests that need a real socket on the server's port.
using SocketTransportTest = TransportTest;

// ---------------------------------------------------------------------------------------------

TEST(TransportCreateTest, UnknownNameListsTheKnownOnes) {
  auto pool = MakePool(16);
  TransportOptions o;
  o.pool = pool.get();
  absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create("dpdk-nope", o);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(t.status()), HasSubstr("dpdk-nope"));
  for (const std::string& name : Transport::Names()) {
    EXPECT_THAT(Msg(t.status()), HasSubstr(name));
  }
  EXPECT_THAT(Transport::Names(),
              ::testing::UnorderedElementsAre("auto", "uring", "epoll", "memory"));
}

TEST(TransportCreateTest, MissingPoolIsRefused) {
  absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create("epoll", TransportOptions{});
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(t.status()), HasSubstr("pool"));
}

TEST(TransportCreateTest, AutoPicksAWorkingEngine) {
  auto pool = MakePool(256);
  TransportOptions o;
  o.pool = pool.get();
  absl::StatusOr<std::unique_ptr<Transport>> t = Transport::Create("auto", o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->name(), ProbeIoUring().ok() ? "uring" : "epoll");
}

// ---------------------------------------------------------------------------------------------

TEST_P(TransportTest, EchoKeepsEveryFrameIntactAndInOrder) {
  StartBoth(TestHandler::Mode::kEcho);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  absl::StatusOr<std::shared_ptr<Connection>> conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_TRUE((*conn)->open());
  EXPECT_EQ((*conn)->peer_name(), "test-server");

  // Sizes around every boundary the receive path has: header, direct threshold, segment.
  const size_t sizes[] = {0,
                          1,
                          23,
                          24,
                          100,
                          8191,
                          8192,
                          8193,
                          32 * 1024,
                          32 * 1024 - 24,
                          32 * 1024 + 1,
                          100000,
                          1 << 20,
                          kDefaultMaxFrameSize};
  std::vector<std::string> sent;
  uint32_t seq = 0;
  for (int round = 0; round < 3; ++round) {
    for (size_t n : sizes) {
      FrameHeader h = UserHeader(round, seq);
      h.flags = static_cast<uint16_t>(seq * 3);
      h.backlog = seq * 7;
      sent.push_back(RandomBytes(n, seq));
      ASSERT_OK((*conn)->Send(h, n == 0 ? Buffer() : Buffer::CopyOf(sent.back())));
      ++seq;
    }
  }
  ASSERT_TRUE(client_handler->WaitFrames(sent.size())) << client_handler->frame_count();
  std::vector<Received> got = client_handler->frames();
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(testing::Message() << "frame " << i);
    EXPECT_EQ(got[i].header.type, kUserType);
    EXPECT_EQ(got[i].header.sequence, i);
    EXPECT_EQ(got[i].header.channel, i / std::size(sizes));
    EXPECT_EQ(got[i].header.flags, static_cast<uint16_t>(i * 3));
    EXPECT_EQ(got[i].header.backlog, i * 7);
    EXPECT_EQ(got[i].header.length, sent[i].size());
    EXPECT_TRUE(got[i].payload == sent[i]) << "payload differs, " << sent[i].size() << " bytes";
  }

  ASSERT_TRUE(WaitAccepted(1));
  EXPECT_EQ(accepted(0).connection->peer_name(), "test-client");
  EXPECT_TRUE(accepted(0).handler->echo_errors().empty());
  EXPECT_EQ(server_->stats().connections_accepted.load(), 1u);
  EXPECT_GE(client_->stats().frames_sent.load(), sent.size());
  EXPECT_GE(client_->stats().frames_received.load(), sent.size());
  EXPECT_GE(server_->stats().frames_received.load(), sent.size());
  EXPECT_GE(server_->stats().frames_sent.load(), sent.size());
  uint64_t bytes = 0;
  for (const std::string& s : sent) bytes += kFrameHeaderSize + s.size();
  EXPECT_GE(client_->stats().bytes_sent.load(), bytes);
  EXPECT_GE(server_->stats().bytes_received.load(), bytes);

  (*conn)->Close();
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
  ExpectNoViolations(*client_handler);
  ExpectNoViolations(*accepted(0).handler);
}

TEST_P(TransportTest, PingIsAnsweredWithPong) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  FrameHeader ping;
  ping.type = static_cast<uint8_t>(FrameType::kPing);
  ping.sequence = 42;
  ASSERT_OK((*conn)->Send(ping, Buffer::CopyOf("are you there")));
  ASSERT_TRUE(client_handler->WaitFrames(1));
  std::vector<Received> got = client_handler->frames();
  EXPECT_EQ(got[0].header.type, static_cast<uint8_t>(FrameType::kPong));
  EXPECT_EQ(got[0].header.sequence, 42u);
  EXPECT_EQ(got[0].payload, "are you there");
  // The transport answers pings itself; the server's handler never sees them.
  ASSERT_TRUE(WaitAccepted(1));
  EXPECT_EQ(accepted(0).handler->frame_count(), 0u);
}

TEST_P(TransportTest, SixtyFourMebibytesWithMatchingChecksums) { ChecksummedTransfer(0); }

// The same with zero-copy sends (uring; the other engines ignore the option): a payload segment
// must not go back to the pool before the kernel's notification says it is done with it.
TEST_P(TransportTest, SixtyFourMebibytesZeroCopy) { ChecksummedTransfer(16 * 1024); }

// Several threads send on one connection at once; each thread's frames keep their order.
TEST_P(TransportTest, ConcurrentSendersKeepPerSenderOrder) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  SendFromThreadsAndCheck(
      **conn, 4, 500, [](int t, uint32_t i) { return absl::StrCat("thread ", t, " frame ", i); },
      [](Connection& c, FrameHeader h, Buffer b, uint32_t) { return c.Send(h, std::move(b)); });
}

// Direct sends (written by the sending thread when the connection is idle) mixed with queued
// ones from several threads, in sizes on both sides of the limit and in volume enough to fill
// the socket, so that direct writes also stop part-way and the I/O thread finishes them: every
// frame arrives whole and each thread's frames in order.
TEST_P(TransportTest, DirectAndQueuedSendsKeepFramesWholeAndInOrder) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  TransportOptions client_options = ClientOptions();
  client_options.direct_send_limit = 4096;
  StartClient(client_options);
  ASSERT_FALSE(HasFatalFailure());
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_TRUE(conn.ok()) << conn.status();
  SendFromThreadsAndCheck(
      **conn, 3, 1500,
      [](int t, uint32_t i) {
        const size_t size = 1 + (i * 977 + static_cast<uint32_t>(t) * 131) % 6000;
        return std::string(size, static_cast<char>('a' + (i + static_cast<uint32_t>(t)) % 26));
      },
      [](Connection& c, FrameHeader h, Buffer b, uint32_t i) {
        return i % 3 == 2 ? c.Send(h, std::move(b)) : c.SendDirect(h, std::move(b));
      });
  ASSERT_FALSE(HasFatalFailure());
  if (GetParam() != std::string("memory")) {
    // Some frames found the connection idle (the first one at least).
    EXPECT_GT(client_->stats().direct_sends.load(), 0u);
  }
}

TEST_P(TransportTest, WrongTokenIsRefusedAndTheServerKeepsServing) {
  TransportOptions server_options = ServerOptions();
  server_options.token = "open sesame";
  StartServer(TestHandler::Mode::kEcho, server_options);
  ASSERT_FALSE(HasFatalFailure());

  TransportOptions wrong = ClientOptions();
  wrong.token = "open barley";
  StartClient(wrong);
  auto refused_handler = std::make_shared<TestHandler>();
  absl::StatusOr<std::shared_ptr<Connection>> conn = Connect(refused_handler);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnauthenticated) << conn.status();
  EXPECT_THAT(Msg(conn.status()), HasSubstr("token"));
  EXPECT_FALSE(refused_handler->closed());  // never connected, so never closed
  EXPECT_EQ(refused_handler->frame_count(), 0u);

  // No token at all.
  client_.reset();
  StartClient(ClientOptions());
  conn = Connect(std::make_shared<TestHandler>());
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnauthenticated) << conn.status();
  EXPECT_THAT(Msg(conn.status()), HasSubstr("token"));
  EXPECT_EQ(accepted_count(), 0u);
  EXPECT_GE(server_->stats().connections_refused.load(), 2u);

  // The right token still gets in, on the same listener.
  client_.reset();
  TransportOptions right = ClientOptions();
  right.token = "open sesame";
  StartClient(right);
  auto handler = std::make_shared<TestHandler>();
  conn = Connect(handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_OK((*conn)->Send(UserHeader(0, 0), Buffer::CopyOf("hello")));
  ASSERT_TRUE(handler->WaitFrames(1));
  EXPECT_EQ(handler->frames()[0].payload, "hello");
  EXPECT_EQ(accepted_count(), 1u);
}

TEST_P(TransportTest, AServerWithoutAHandlerRefusesTheConnection) {
  server_ = MakeTransport(ServerOptions());
  ASSERT_NE(server_, nullptr);
  auto l = server_->Listen("127.0.0.1", 0, [](std::shared_ptr<Connection>) { return nullptr; });
  ASSERT_TRUE(l.ok()) << l.status();
  listener_ = std::move(l).value();
  StartClient();
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_FALSE(conn.ok());
  EXPECT_THAT(Msg(conn.status()), HasSubstr("handler"));
}

TEST_P(TransportTest, ConnectWhereNobodyListensFailsAfterRetrying) {
  StartClient();
  ConnectOptions where;
  where.host = "127.0.0.1";
  where.port = UnusedPort();
  ASSERT_NE(where.port, 0);
  where.timeout = absl::Milliseconds(300);
  absl::StatusOr<std::shared_ptr<Connection>> conn =
      client_->Connect(where, std::make_shared<TestHandler>());
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable) << conn.status();
  EXPECT_THAT(Msg(conn.status()), HasSubstr("attempt"));
  EXPECT_THAT(Msg(conn.status()), HasSubstr(std::to_string(where.port)));
}

TEST_P(TransportTest, ListeningTwiceOnOnePortIsAnErrorNamingIt) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto again = server_->Listen("127.0.0.1", listener_->port(),
                               [](std::shared_ptr<Connection>) { return nullptr; });
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(Msg(again.status()), HasSubstr(std::to_string(listener_->port())));
}

// A thousand connections at once, opened from a few threads: every one gets its echo.
TEST_P(TransportTest, AThousandSimultaneousConnections) {
  constexpr int kConnections = 1000;
  constexpr int kThreads = 4;
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &lim), 0);
  const rlim_t need = 2 * kConnections + 256;
  if (lim.rlim_cur < need) {
    lim.rlim_cur = std::min(lim.rlim_max, need);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0) << std::strerror(errno);
  }
  if (lim.rlim_cur < need && GetParam() != "memory") {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit " << lim.rlim_max << " is below " << need;
  }

  StartBoth(TestHandler::Mode::kEcho);
  ASSERT_FALSE(HasFatalFailure());
  std::vector<std::shared_ptr<TestHandler>> handlers(kConnections);
  std::vector<std::shared_ptr<Connection>> conns(kConnections);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kConnections; i += kThreads) {
        handlers[i] = std::make_shared<TestHandler>();
        absl::StatusOr<std::shared_ptr<Connection>> c = Connect(handlers[i]);
        if (!c.ok()) {
          if (failures.fetch_add(1) < 5) ADD_FAILURE() << "connection " << i << ": " << c.status();
          continue;
        }
        conns[i] = *c;
        absl::Status s = conns[i]->Send(UserHeader(i, 0), Buffer::CopyOf(absl::StrCat("c", i)));
        if (!s.ok() && failures.fetch_add(1) < 5) ADD_FAILURE() << "send " << i << ": " << s;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(handlers[i]->WaitFrames(1)) << "connection " << i << " got no echo";
    std::vector<Received> got = handlers[i]->frames();
    EXPECT_EQ(got[0].payload, absl::StrCat("c", i));
    EXPECT_EQ(got[0].header.channel, static_cast<uint32_t>(i));
  }
  EXPECT_EQ(accepted_count(), static_cast<size_t>(kConnections));
  EXPECT_EQ(server_->stats().connections_accepted.load(), static_cast<uint64_t>(kConnections));

  for (auto& c : conns) c->Close();
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(handlers[i]->WaitClosed()) << "connection " << i;
    EXPECT_TRUE(handlers[i]->cause().ok()) << "connection " << i << ": " << handlers[i]->cause();
  }
  for (size_t i = 0; i < accepted_count(); ++i) {
    ASSERT_TRUE(accepted(i).handler->WaitClosed()) << "server side " << i;
  }
}

TEST_P(TransportTest, ClientCloseIsOrderlyOnBothSides) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
  (*conn)->Close();
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_TRUE(server_side.handler->cause().ok()) << server_side.handler->cause();
  EXPECT_FALSE((*conn)->open());
  EXPECT_FALSE(server_side.connection->open());
  (*conn)->Close();  // again: harmless
  EXPECT_EQ(client_handler->closes(), 1);
  ExpectNoViolations(*client_handler);
  ExpectNoViolations(*server_side.handler);
}

TEST_P(TransportTest, ServerCloseIsOrderlyOnBothSides) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  ASSERT_OK(server_side.connection->Send(UserHeader(3, 0), Buffer::CopyOf("last words")));
  server_side.connection->Close();
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_TRUE(server_side.handler->cause().ok()) << server_side.handler->cause();
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
  // The frame queued before Close arrived before the close.
  ASSERT_EQ(client_handler->frame_count(), 1u);
  EXPECT_EQ(client_handler->frames()[0].payload, "last words");
}

// Close sends what is queued first: every frame sent before Close arrives, then OnClosed(OK).
TEST_P(TransportTest, CloseDeliversQueuedFramesFirst) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  constexpr uint32_t kFrames = 300;
  for (uint32_t i = 0; i < kFrames; ++i) {
    ASSERT_OK((*conn)->Send(UserHeader(0, i), Buffer::CopyOf(RandomBytes(i * 97 % 20000, i))));
  }
  (*conn)->Close();
  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_TRUE(server_side.handler->cause().ok()) << server_side.handler->cause();
  std::vector<Received> got = server_side.handler->frames();
  ASSERT_EQ(got.size(), kFrames);
  for (uint32_t i = 0; i < kFrames; ++i) {
    EXPECT_EQ(got[i].header.sequence, i);
    EXPECT_TRUE(got[i].payload == RandomBytes(i * 97 % 20000, i)) << "frame " << i;
  }
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
}

// The peer echoes while this side sends and then closes: the close must still be orderly for
// both, and the peer must get every frame. (Closing a socket that still holds unread bytes makes
// the kernel reset the connection and drop what was not yet transmitted; an orderly close has to
// shut down its sending side and wait for the peer's end of stream instead.)
TEST_P(TransportTest, CloseWhileThePeerIsStillEchoing) {
  StartBoth(TestHandler::Mode::kEcho);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  // Enough that echoes are still unread on this side when its last frame has gone out.
  constexpr uint32_t kFrames = 2000;
  const std::string payload = RandomBytes(8000, 1);
  for (uint32_t i = 0; i < kFrames; ++i) {
    ASSERT_OK((*conn)->Send(UserHeader(0, i), Buffer::CopyOf(payload)));
  }
  (*conn)->Close();
  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_EQ(server_side.handler->frame_count(), kFrames) << "frames lost in the close";
  EXPECT_TRUE(server_side.handler->cause().ok()) << server_side.handler->cause();
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
}

TEST_P(TransportTest, SendAfterCloseFailsWithFailedPrecondition) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  (*conn)->Close();
  // Closing already: refused at once.
  absl::Status s = (*conn)->Send(UserHeader(0, 0), Buffer::CopyOf("too late"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  ASSERT_TRUE(client_handler->WaitClosed());
  // Closed: refused too, and the payload is not leaked (the pool check in TearDown).
  Buffer b = client_pool_->TryRequest();
  ASSERT_TRUE(b.valid());
  b.Append("pooled and too late");
  s = (*conn)->Send(UserHeader(0, 1), std::move(b));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(Msg(s), HasSubstr("closed"));
  EXPECT_FALSE((*conn)->open());

  // The server side of a closed connection refuses as well.
  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  s = server_side.connection->Send(UserHeader(0, 0), Buffer::CopyOf("nobody listens"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(server_side.handler->frame_count(), 0u);
}

TEST_P(TransportTest, SendAboveTheMaximumFrameSizeIsRefusedNamingTheLimit) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  TransportOptions o = ClientOptions();
  o.max_frame_size = 50000;
  StartClient(o);
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::Status s = (*conn)->Send(UserHeader(0, 0), Buffer::CopyOf(std::string(50001, 'x')));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(Msg(s), HasSubstr("50000"));
  // The connection is still usable.
  EXPECT_TRUE((*conn)->open());
  ASSERT_OK((*conn)->Send(UserHeader(0, 1), Buffer::CopyOf(std::string(50000, 'y'))));
  ASSERT_TRUE(WaitAccepted(1));
  ASSERT_TRUE(accepted(0).handler->WaitFrames(1));
  EXPECT_EQ(accepted(0).handler->frames()[0].payload.size(), 50000u);
}

TEST_P(TransportTest, AbortTellsThePeerWhy) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
  const absl::Status why = absl::InvalidArgumentError("operator 7 saw a poisoned record");
  (*conn)->Abort(why);
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_EQ(client_handler->cause(), why);
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_FALSE(server_side.handler->cause().ok());
  EXPECT_THAT(Msg(server_side.handler->cause()), HasSubstr("poisoned record"));
  EXPECT_EQ(server_side.handler->frame_count(), 0u);  // the error frame is not a user frame
}

TEST_P(TransportTest, ClosingFromInsideAHandler) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  StartClient();
  // The client closes as soon as it sees the server's first frame, on the I/O thread.
  auto client_handler =
      std::make_shared<TestHandler>([](Connection& c, const FrameHeader&, Buffer) { c.Close(); });
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
  ASSERT_OK(accepted(0).connection->Send(UserHeader(0, 0), Buffer::CopyOf("bye")));
  ASSERT_TRUE(client_handler->WaitClosed());
  EXPECT_TRUE(client_handler->cause().ok()) << client_handler->cause();
  ASSERT_TRUE(accepted(0).handler->WaitClosed());
  EXPECT_TRUE(accepted(0).handler->cause().ok()) << accepted(0).handler->cause();
}

// Destroying a transport closes what is still open: its handlers hear of it once, and the peer
// notices.
TEST_P(TransportTest, DestroyingTheTransportClosesItsConnections) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
  client_.reset();
  EXPECT_EQ(client_handler->closes(), 1);
  EXPECT_FALSE((*conn)->open());
  ASSERT_TRUE(accepted(0).handler->WaitClosed());
  ExpectNoViolations(*client_handler);
}

// A Connection may outlive its Transport (it is a shared_ptr): using it then is refused, not
// undefined.
TEST_P(TransportTest, ConnectionOutlivingItsTransportRefusesSends) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::shared_ptr<Connection> keep = *conn;
  client_.reset();
  absl::Status s = keep->Send(UserHeader(0, 0), Buffer::CopyOf("after the transport"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  keep->Close();
  keep->Abort(absl::CancelledError("still gone"));
  EXPECT_EQ(client_handler->closes(), 1);
}

TEST_P(TransportTest, SendSendsOnlyTheReadableBytes) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_TRUE(conn.ok()) << conn.status();
  Buffer b = client_pool_->TryRequest();
  ASSERT_TRUE(b.valid());
  b.Append("skip-me|the payload|and not this");
  b.Consume(8);
  Buffer view = b.Slice(8, 11);  // "the payload"
  ASSERT_OK((*conn)->Send(UserHeader(0, 0), std::move(view)));
  b.Consume(11);
  ASSERT_OK((*conn)->Send(UserHeader(0, 1), std::move(b)));  // "|and not this"
  ASSERT_TRUE(WaitAccepted(1));
  ASSERT_TRUE(accepted(0).handler->WaitFrames(2));
  std::vector<Received> got = accepted(0).handler->frames();
  EXPECT_EQ(got[0].payload, "the payload");
  EXPECT_EQ(got[0].header.length, 11u);
  EXPECT_EQ(got[1].payload, "|and not this");
}

// The accept callback may send at once: the frame follows the handshake reply, and the client
// gets it through its handler.
TEST_P(TransportTest, ServerMaySendFromTheAcceptCallback) {
  server_ = MakeTransport(ServerOptions());
  ASSERT_NE(server_, nullptr);
  auto server_handler = std::make_shared<TestHandler>();
  auto l = server_->Listen("127.0.0.1", 0, [server_handler](std::shared_ptr<Connection> c) {
    absl::Status s = c->Send(UserHeader(9, 0), Buffer::CopyOf("welcome"));
    if (!s.ok()) ADD_FAILURE() << "send from the accept callback: " << s;
    return server_handler;
  });
  ASSERT_TRUE(l.ok()) << l.status();
  listener_ = std::move(l).value();
  StartClient();
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(client_handler->WaitFrames(1));
  EXPECT_EQ(client_handler->frames()[0].payload, "welcome");
  EXPECT_EQ(client_handler->frames()[0].header.channel, 9u);
}

// Payloads still queued when the transport goes are released, not leaked (TearDown checks that
// every segment is back in its pool).
TEST_P(TransportTest, QueuedPayloadsAreReleasedWhenTheTransportGoes) {
  StartBoth(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_TRUE(conn.ok()) << conn.status();
  for (uint32_t i = 0; i < 200; ++i) {
    Buffer b = client_pool_->TryRequest();
    ASSERT_TRUE(b.valid());
    b.Commit(b.capacity());
    absl::Status s = (*conn)->Send(UserHeader(0, i), std::move(b));
    if (!s.ok()) break;  // fine: the point is what happens to those that were queued
  }
  conn->reset();
  client_.reset();
  if (GetParam() == "memory") {
    // In memory the payloads themselves travel to the peer; they are released once the server
    // has delivered (or dropped) them.
    listener_.reset();
    server_.reset();
  }
  EXPECT_EQ(client_pool_->available_segments(), client_pool_->total_segments());
}

// A receive pool of a handful of segments: the server keeps pausing for segments that the echo
// still holds, and must resume every time (a lost wake-up here stalls the connection).
TEST_P(TransportTest, EchoThroughATinyReceivePool) {
  TransportOptions server_options = ServerOptions();
  server_options.receive_min_segments = 2;
  server_options.receive_max_segments = 4;
  server_options.provided_buffers = 2;
  StartServer(TestHandler::Mode::kEcho, server_options);
  ASSERT_FALSE(HasFatalFailure());
  StartClient();
  auto client_handler = std::make_shared<TestHandler>();
  auto conn = Connect(client_handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  constexpr uint32_t kFrames = 3000;
  std::mt19937 rng(3);
  std::vector<size_t> sizes;
  for (uint32_t i = 0; i < kFrames; ++i) {
    sizes.push_back(rng() % 4 == 0 ? rng() % 40000 : rng() % 3000);
    ASSERT_OK((*conn)->Send(UserHeader(0, i), Buffer::CopyOf(RandomBytes(sizes.back(), i))));
  }
  ASSERT_TRUE(client_handler->WaitFrames(kFrames))
      << client_handler->frame_count() << " of " << kFrames << " echoes arrived";
  std::vector<Received> got = client_handler->frames();
  for (uint32_t i = 0; i < kFrames; ++i) {
    ASSERT_EQ(got[i].header.sequence, i);
    ASSERT_TRUE(got[i].payload == RandomBytes(sizes[i], i)) << "frame " << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Raw-socket peers.

// A server that completes the TCP handshake but never answers the hello: Connect gives up at its
// deadline with an error saying so.
TEST_P(SocketTransportTest, ConnectTimesOutWhenTheServerNeverAnswers) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 8), 0);  // the kernel accepts; nobody reads
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  StartClient();
  ConnectOptions where;
  where.port = ntohs(addr.sin_port);
  where.timeout = absl::Milliseconds(300);
  auto handler = std::make_shared<TestHandler>();
  absl::StatusOr<std::shared_ptr<Connection>> conn = client_->Connect(where, handler);
  close(fd);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kDeadlineExceeded) << conn.status();
  EXPECT_THAT(Msg(conn.status()), HasSubstr(std::to_string(where.port)));
  EXPECT_FALSE(handler->closed());
}

// Once the Listener is gone the port is closed: connecting is refused, and a new listener can
// bind it again at once.
TEST_P(SocketTransportTest, DestroyingTheListenerReleasesThePort) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  const uint16_t port = listener_->port();
  listener_.reset();
  EXPECT_EQ(TryConnect(port), ECONNREFUSED) << "the port still accepts connections";
  auto again = server_->Listen("127.0.0.1", port, [this](std::shared_ptr<Connection> c) {
    auto h = std::make_shared<TestHandler>();
    MutexLock lock(&accepted_mu_);
    accepted_.push_back({std::move(c), h});
    return h;
  });
  ASSERT_TRUE(again.ok()) << again.status();
  listener_ = std::move(again).value();
  StartClient();
  auto conn = Connect(std::make_shared<TestHandler>());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE(WaitAccepted(1));
}

TEST_P(SocketTransportTest, FramesDribbledInTinyChunksArriveIntact) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  auto raw = RawClient::Connect(listener_->port());
  ASSERT_NE(raw, nullptr);
  absl::StatusOr<Received> ack = raw->Handshake(Options(client_pool_.get(), "raw-client"));
  ASSERT_TRUE(ack.ok()) << ack.status();
  ASSERT_EQ(ack->header.type, static_cast<uint8_t>(FrameType::kHelloAck));

  const size_t sizes[] = {0,    1,    5,    23,    24,    25,    100,   1000,
                          8191, 8192, 8193, 20000, 32744, 32768, 40000, 70000};
  std::vector<std::string> sent;
  std::mt19937 rng(99);
  for (uint32_t i = 0; i < std::size(sizes); ++i) {
    sent.push_back(RandomBytes(sizes[i], i + 100));
    ASSERT_TRUE(raw->SendInChunks(EncodeFrame(UserHeader(5, i), sent.back()), rng));
  }
  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  EXPECT_EQ(server_side.connection->peer_name(), "raw-client");
  ASSERT_TRUE(server_side.handler->WaitFrames(sent.size()))
      << server_side.handler->frame_count() << " of " << sent.size();
  std::vector<Received> got = server_side.handler->frames();
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].header.sequence, i);
    EXPECT_EQ(got[i].header.channel, 5u);
    EXPECT_TRUE(got[i].payload == sent[i]) << "frame " << i << " of " << sent[i].size() << " bytes";
  }
  // A close at a frame boundary is orderly.
  raw->Close();
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_TRUE(server_side.handler->cause().ok()) << server_side.handler->cause();
}

TEST_P(SocketTransportTest, AnswersLeaveEveryFewFramesOfOneReceive) {
  if (GetParam() != "uring") GTEST_SKIP() << "flush_after_frames is the uring engine's";
  constexpr uint32_t kFrames = 64;
  constexpr uint32_t kFlushAfter = 4;
  constexpr int kFirstEchoes = kFlushAfter * (kFrameHeaderSize + 8);  // bytes
  std::unique_ptr<RawClient> raw;
  std::atomic<RawClient*> client{nullptr};  // for the I/O thread
  std::atomic<int> readable_at_last{-2};
  TransportOptions options = ServerOptions();
  options.flush_after_frames = kFlushAfter;
  server_ = MakeTransport(options);
  ASSERT_NE(server_, nullptr);
  auto l = server_->Listen("127.0.0.1", 0, [&](std::shared_ptr<Connection>) {
    return std::make_shared<TestHandler>([&](Connection& c, const FrameHeader& h, Buffer p) {
      // The last frame of the batch: the echoes of the first frames are on their way to the
      // client already (the kernel delivers them; the I/O thread waits here a moment at most).
      if (h.sequence == kFrames - 1) {
        const absl::Time deadline = absl::Now() + absl::Seconds(2);
        int readable = client.load()->Readable();
        while (readable < kFirstEchoes && absl::Now() < deadline) {
          absl::SleepFor(absl::Milliseconds(1));
          readable = client.load()->Readable();
        }
        readable_at_last.store(readable);
      }
      EXPECT_TRUE(c.Send(h, std::move(p)).ok());
    });
  });
  ASSERT_TRUE(l.ok()) << l.status();
  listener_ = std::move(l).value();
  raw = RawClient::Connect(listener_->port());
  ASSERT_NE(raw, nullptr);
  client.store(raw.get());
  ASSERT_TRUE(raw->Handshake(Options(client_pool_.get(), "raw-client")).ok());
  std::string batch;  // every frame in one write, so that they arrive in one receive
  for (uint32_t i = 0; i < kFrames; ++i) batch += EncodeFrame(UserHeader(1, i), "12345678");
  ASSERT_TRUE(raw->SendAll(batch));
  // Nothing is read here until the server has looked at what arrived.
  const absl::Time deadline = absl::Now() + kWait;
  while (readable_at_last.load() == -2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  for (uint32_t i = 0; i < kFrames; ++i) {
    absl::StatusOr<Received> echo = raw->ReadFrame();
    ASSERT_TRUE(echo.ok()) << i << ": " << echo.status();
    EXPECT_EQ(echo->header.sequence, i);
    EXPECT_EQ(echo->payload, "12345678");
  }
  // Without the option, the echoes of one receive leave only after its last frame is handled.
  EXPECT_GE(readable_at_last.load(), kFirstEchoes);
  raw->Close();
}

TEST_P(SocketTransportTest, PeerClosingMidFrameIsReported) {
  StartServer(TestHandler::Mode::kRecord);
  ASSERT_FALSE(HasFatalFailure());
  struct Case {
    const char* what;
    size_t payload;
    size_t cut;  // bytes of the frame sent before closing
  };
  const Case cases[] = {
      {"half a header", 100, 10},
      {"header only", 100, kFrameHeaderSize},
      {"half a small payload", 1000, kFrameHeaderSize + 500},
      {"half a large payload", 100000, kFrameHeaderSize + 50000},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.what);
    auto raw = RawClient::Connect(listener_->port());
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->Handshake(Options(client_pool_.get(), "raw")).ok());
    // One whole frame first, so the connection is not merely idle.
    ASSERT_TRUE(raw->SendAll(EncodeFrame(UserHeader(0, 0), "whole")));
    const std::string frame = EncodeFrame(UserHeader(0, 1), RandomBytes(c.payload, i));
    ASSERT_TRUE(raw->SendAll(std::string_view(frame).substr(0, c.cut)));
    ASSERT_TRUE(WaitAccepted(i + 1));
    auto server_side = accepted(i);
    ASSERT_TRUE(server_side.handler->WaitFrames(1));
    raw->Close();
    ASSERT_TRUE(server_side.handler->WaitClosed());
    const absl::Status cause = server_side.handler->cause();
    EXPECT_FALSE(cause.ok());
    EXPECT_THAT(Msg(cause), AnyOf(HasSubstr("mid-frame"), HasSubstr("partial")));
    EXPECT_THAT(Msg(cause), HasSubstr(std::to_string(c.cut)));  // how much had arrived
    EXPECT_EQ(server_side.handler->frame_count(), 1u);
  }
}

TEST_P(SocketTransportTest, OversizedFrameIsRefusedNamingTheLimit) {
  TransportOptions options = ServerOptions();
  options.max_frame_size = 1048576;
  StartServer(TestHandler::Mode::kRecord, options);
  ASSERT_FALSE(HasFatalFailure());
  auto raw = RawClient::Connect(listener_->port());
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(raw->Handshake(Options(client_pool_.get(), "raw")).ok());
  FrameHeader h = UserHeader(2, 0);
  h.length = 1048577;
  std::string header(kFrameHeaderSize, '\0');
  EncodeFrameHeader(h, header.data());
  ASSERT_TRUE(raw->SendAll(header));

  ASSERT_TRUE(WaitAccepted(1));
  auto server_side = accepted(0);
  ASSERT_TRUE(server_side.handler->WaitClosed());
  EXPECT_FALSE(server_side.handler->cause().ok());
  EXPECT_THAT(Msg(server_side.handler->cause()), HasSubstr("1048576"));
  EXPECT_EQ(server_side.handler->frame_count(), 0u);

  // The client is told why in an error frame, then the server closes.
  absl::StatusOr<Received> err = raw->ReadFrame();
  ASSERT_TRUE(err.ok()) << err.status();
  ASSERT_EQ(err->header.type, static_cast<uint8_t>(FrameType::kError));
  absl::Status told = internal::StatusFromErrorFrame(Buffer::CopyOf(err->payload), "server");
  EXPECT_EQ(told.code(), absl::StatusCode::kResourceExhausted) << told;
  EXPECT_THAT(Msg(told), HasSubstr("1048576"));
  EXPECT_TRUE(raw->WaitForEof());
}

TEST_P(SocketTransportTest, GarbageInsteadOfAHelloIsClosedAndOthersAreServed) {
  TransportOptions options = ServerOptions();
  options.handshake_timeout = absl::Milliseconds(300);
  StartServer(TestHandler::Mode::kEcho, options);
  ASSERT_FALSE(HasFatalFailure());
  StartClient();

  const std::string garbage[] = {
      RandomBytes(256, 7),                           // noise
      "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",   // a stranger
      EncodeFrame(UserHeader(0, 0), "not a hello"),  // a frame, but not a hello
      EncodeFrame(FrameHeader{static_cast<uint8_t>(FrameType::kHello)}, RandomBytes(40, 8)),
      std::string(),  // silence: the handshake times out
  };
  for (size_t i = 0; i < std::size(garbage); ++i) {
    SCOPED_TRACE(testing::Message() << "garbage " << i);
    auto raw = RawClient::Connect(listener_->port());
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->SendAll(garbage[i]));
    EXPECT_TRUE(raw->WaitForEof()) << "the server kept a connection that sent garbage";

    // Meanwhile and afterwards, a well-behaved client is served.
    auto handler = std::make_shared<TestHandler>();
    auto conn = Connect(handler);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_OK((*conn)->Send(UserHeader(1, 0), Buffer::CopyOf(absl::StrCat("ok ", i))));
    ASSERT_TRUE(handler->WaitFrames(1));
    EXPECT_EQ(handler->frames()[0].payload, absl::StrCat("ok ", i));
    (*conn)->Close();
    ASSERT_TRUE(handler->WaitClosed());
  }
  // Only the well-behaved clients ever reached the accept callback.
  EXPECT_EQ(accepted_count(), std::size(garbage));
}

// A garbage connection that stays open (silent) does not hold up others.
TEST_P(SocketTransportTest, ASilentPeerDoesNotBlockOthers) {
  StartBoth(TestHandler::Mode::kEcho);
  ASSERT_FALSE(HasFatalFailure());
  auto silent = RawClient::Connect(listener_->port());
  ASSERT_NE(silent, nullptr);
  ASSERT_TRUE(silent->SendAll(std::string_view("\x53\x4c\x01", 3)));  // a third of a header
  auto handler = std::make_shared<TestHandler>();
  auto conn = Connect(handler);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_OK((*conn)->Send(UserHeader(1, 0), Buffer::CopyOf("still here")));
  ASSERT_TRUE(handler->WaitFrames(1));
}

std::string EngineName(const ::testing::TestParamInfo<std::string>& engine) { return engine.param; }

INSTANTIATE_TEST_SUITE_P(Sockets, TransportTest, ::testing::Values("uring", "epoll"), EngineName);
INSTANTIATE_TEST_SUITE_P(Sockets, SocketTransportTest, ::testing::Values("uring", "epoll"),
                         EngineName);
INSTANTIATE_TEST_SUITE_P(InProcess, TransportTest, ::testing::Values("memory"), EngineName);

}  // namespace
}  // namespace sluice::net
