// StreamServer over real loopback sockets: bytes echo intact for one client and for many, output
// written from other threads arrives in order, reading pauses and resumes on request, an orderly
// close delivers everything queued first, and the server closes what it must: idle and half-open
// connections, clients that do not read their output, connections over the limit, and every
// connection when it is destroyed.
//
// Handlers run on the server's I/O thread; the tests wait on them with bounded waits only.
#include "net/stream_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/sync.h"
#include "tests/net/loopback_client.h"

namespace sluice::net {
namespace {

using ::sluice::testing_util::LoopbackClient;
using ::testing::HasSubstr;

// Generous: sanitizers slow everything down.
constexpr absl::Duration kWait = absl::Seconds(30);

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Records what one connection saw; `on_data` decides what to do with the bytes (echo them by
// default).
class TestHandler : public StreamHandler {
 public:
  using DataFn = std::function<void(StreamConnection&, std::string_view)>;
  explicit TestHandler(DataFn on_data = nullptr) : on_data_(std::move(on_data)) {}

  void OnData(StreamConnection& c, std::string_view data) override {
    {
      MutexLock lock(&mu_);
      received_.append(data);
      ++data_calls_;
    }
    if (on_data_) {
      on_data_(c, data);
    } else {
      EXPECT_TRUE(c.Write(std::string(data)).ok());
    }
  }
  void OnResumed(StreamConnection&) override { resumed_.fetch_add(1); }
  void OnClosed(StreamConnection&, const absl::Status& cause) override {
    {
      MutexLock lock(&mu_);
      cause_ = cause;
    }
    closed_.Notify();
  }

  bool WaitClosed() { return closed_.WaitForNotificationWithTimeout(kWait); }
  absl::Status cause() {
    MutexLock lock(&mu_);
    return cause_;
  }
  std::string received() {
    MutexLock lock(&mu_);
    return received_;
  }
  int data_calls() {
    MutexLock lock(&mu_);
    return data_calls_;
  }
  int resumed() const { return resumed_.load(); }
  // Waits until `n` bytes have arrived.
  bool WaitReceived(size_t n) {
    MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout([&] { return received_.size() >= n; }, kWait);
  }

 private:
  DataFn on_data_;
  Mutex mu_;
  std::string received_ ABSL_GUARDED_BY(mu_);
  int data_calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status cause_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> resumed_{0};
  Notification closed_;
};

// A server whose connections get handlers from `make` and are remembered in accept order.
class Fixture {
 public:
  explicit Fixture(StreamServerOptions options = {},
                   std::function<std::shared_ptr<TestHandler>()> make = nullptr) {
    if (!make) make = [] { return std::make_shared<TestHandler>(); };
    auto server =
        StreamServer::Create(options, [this, make](const std::shared_ptr<StreamConnection>& c) {
          auto h = make();
          MutexLock lock(&mu_);
          handlers_.push_back(h);
          connections_.push_back(c);
          return h;
        });
    EXPECT_TRUE(server.ok()) << server.status();
    if (server.ok()) server_ = std::move(server).value();
  }

  StreamServer& server() { return *server_; }
  void Stop() { server_.reset(); }

  // The n-th accepted connection's handler and connection, waiting for it to be accepted.
  std::shared_ptr<TestHandler> handler(size_t n) {
    MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout([&] { return handlers_.size() > n; }, kWait)) return nullptr;
    return handlers_[n];
  }
  std::shared_ptr<StreamConnection> connection(size_t n) {
    MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout([&] { return connections_.size() > n; }, kWait)) return nullptr;
    return connections_[n];
  }

 private:
  Mutex mu_;
  std::vector<std::shared_ptr<TestHandler>> handlers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<StreamConnection>> connections_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<StreamServer> server_;
};

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

TEST(StreamServer, ListensOnAFreePortWhenAskedForPortZero) {
  Fixture f;
  EXPECT_NE(f.server().port(), 0);
  EXPECT_EQ(f.server().address(), absl::StrCat("127.0.0.1:", f.server().port()));
}

TEST(StreamServer, PortInUseIsAnErrorNamingIt) {
  Fixture f;
  StreamServerOptions options;
  options.port = f.server().port();
  auto second = StreamServer::Create(options, [](const std::shared_ptr<StreamConnection>&) {
    return std::make_shared<TestHandler>();
  });
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(Msg(second.status()), HasSubstr(absl::StrCat("bind 127.0.0.1:", options.port)));
}

TEST(StreamServer, EchoesSmallAndLargeMessages) {
  Fixture f;
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.Send("hello"));
  EXPECT_EQ(client.Read(5, kWait), "hello");
  // More than the socket buffers take at once: the server queues and waits for EPOLLOUT.
  const std::string big = Pattern(8 << 20);
  std::thread sender([&] { EXPECT_TRUE(client.Send(big)); });
  EXPECT_TRUE(client.Read(big.size(), kWait) == big);
  sender.join();
  EXPECT_FALSE(f.connection(0)->peer().empty());
  EXPECT_EQ(f.connection(0)->id(), 1u);
}

TEST(StreamServer, ServesManyClientsAtOnce) {
  Fixture f;
  constexpr int kClients = 50;
  std::vector<LoopbackClient> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(f.server().port());
    ASSERT_TRUE(clients.back().connected());
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kClients; ++i) {
      ASSERT_TRUE(clients[i].Send(absl::StrCat("client ", i, " round ", round, "\n")));
    }
    for (int i = 0; i < kClients; ++i) {
      EXPECT_EQ(clients[i].ReadUntil("\n", kWait),
                absl::StrCat("client ", i, " round ", round, "\n"));
    }
  }
  EXPECT_EQ(f.server().stats().accepted.load(), static_cast<uint64_t>(kClients));
  EXPECT_EQ(f.server().stats().open.load(), static_cast<uint64_t>(kClients));
}

TEST(StreamServer, SpreadsConnectionsOverItsIoThreads) {
  StreamServerOptions options;
  options.io_threads = 3;
  Mutex mu;
  absl::flat_hash_set<std::thread::id> threads;
  Fixture f(options, [&] {
    MutexLock lock(&mu);
    threads.insert(std::this_thread::get_id());  // the accept callback's thread
    return std::make_shared<TestHandler>();
  });
  constexpr int kClients = 60;
  std::vector<LoopbackClient> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(f.server().port());
    ASSERT_TRUE(clients.back().connected());
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i].Send(absl::StrCat("client ", i, "\n")));
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(clients[i].ReadUntil("\n", kWait), absl::StrCat("client ", i, "\n"));
  }
  // The kernel hashes connections over the three listening sockets: all 60 on one thread would
  // happen about once in 10^28 runs.
  {
    MutexLock lock(&mu);
    EXPECT_GT(threads.size(), 1u);
    EXPECT_LE(threads.size(), 3u);
  }
  absl::flat_hash_set<uint64_t> ids;
  for (int i = 0; i < kClients; ++i) {
    std::shared_ptr<StreamConnection> c = f.connection(i);
    ASSERT_NE(c, nullptr);
    EXPECT_GE(c->id(), 1u);
    EXPECT_LE(c->id(), static_cast<uint64_t>(kClients));
    ids.insert(c->id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kClients));
  EXPECT_EQ(f.server().stats().accepted.load(), static_cast<uint64_t>(kClients));
  EXPECT_EQ(f.server().stats().open.load(), static_cast<uint64_t>(kClients));
}

TEST(StreamServer, ConnectionLimitCountsEveryIoThread) {
  StreamServerOptions options;
  options.io_threads = 2;
  options.max_connections = 4;
  options.refusal = "full\n";
  Fixture f(options);
  std::vector<LoopbackClient> served;
  for (int i = 0; i < 4; ++i) {
    served.emplace_back(f.server().port());
    ASSERT_TRUE(served.back().Send("x"));
    ASSERT_EQ(served.back().Read(1, kWait), "x");
  }
  for (int i = 0; i < 4; ++i) {  // whichever thread takes them, all are over the limit
    LoopbackClient extra(f.server().port());
    EXPECT_TRUE(extra.WaitClosed(kWait));
    EXPECT_EQ(extra.buffer(), "full\n");
  }
  EXPECT_EQ(f.server().stats().refused.load(), 4u);
}

TEST(StreamServer, ZeroIoThreadsIsAnError) {
  StreamServerOptions options;
  options.io_threads = 0;
  auto server = StreamServer::Create(options, [](const std::shared_ptr<StreamConnection>&) {
    return std::make_shared<TestHandler>();
  });
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(Msg(server.status()), HasSubstr("io_threads"));
}

TEST(StreamServer, WritesFromOtherThreadsArriveInEachThreadsOrder) {
  Fixture f(StreamServerOptions{}, [] {
    return std::make_shared<TestHandler>([](StreamConnection&, std::string_view) {});
  });
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.connected());
  std::shared_ptr<StreamConnection> c = f.connection(0);
  ASSERT_NE(c, nullptr);
  constexpr int kThreads = 4;
  constexpr int kWrites = 500;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) EXPECT_TRUE(c->Write(absl::StrCat(t, ":", i, "\n")).ok());
    });
  }
  for (auto& w : writers) w.join();
  std::vector<int> next(kThreads, 0);
  for (int n = 0; n < kThreads * kWrites; ++n) {
    const std::string line = client.ReadUntil("\n", kWait);
    ASSERT_FALSE(line.empty()) << "after " << n << " lines";
    const int t = line[0] - '0';
    ASSERT_GE(t, 0);
    ASSERT_LT(t, kThreads);
    EXPECT_EQ(line, absl::StrCat(t, ":", next[t]++, "\n"));
  }
}

TEST(StreamServer, CloseSendsEverythingQueuedFirst) {
  const std::string reply = Pattern(4 << 20);
  Fixture f(StreamServerOptions{}, [&] {
    return std::make_shared<TestHandler>([&](StreamConnection& c, std::string_view) {
      EXPECT_TRUE(c.Write(reply).ok());
      c.Close();
      EXPECT_FALSE(c.Write("refused after Close").ok());
      EXPECT_FALSE(c.open());
    });
  });
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.Send("go"));
  EXPECT_TRUE(client.WaitClosed(kWait));
  EXPECT_TRUE(client.buffer() == reply) << client.buffer().size() << " bytes of " << reply.size();
  client.Close();  // the server waits for this before it lets go of the connection
  ASSERT_TRUE(f.handler(0)->WaitClosed());
  EXPECT_TRUE(f.handler(0)->cause().ok()) << f.handler(0)->cause();
}

TEST(StreamServer, ClientEndOfInputClosesAfterTheReplies) {
  Fixture f;
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.Send("last words"));
  client.ShutdownWrite();
  EXPECT_TRUE(client.WaitClosed(kWait));
  EXPECT_EQ(client.buffer(), "last words");
  ASSERT_TRUE(f.handler(0)->WaitClosed());
  EXPECT_TRUE(f.handler(0)->cause().ok()) << f.handler(0)->cause();
}

TEST(StreamServer, IdleConnectionIsClosed) {
  StreamServerOptions options;
  options.idle_timeout = absl::Milliseconds(200);
  Fixture f(options);
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.connected());
  EXPECT_TRUE(client.WaitClosed(kWait));
  ASSERT_TRUE(f.handler(0)->WaitClosed());
  EXPECT_TRUE(absl::IsDeadlineExceeded(f.handler(0)->cause())) << f.handler(0)->cause();
  EXPECT_THAT(Msg(f.handler(0)->cause()), HasSubstr("idle"));
  EXPECT_EQ(f.server().stats().closed_idle.load(), 1u);
}

TEST(StreamServer, HalfOpenConnectionIsClosedByTheIdleTimeout) {
  StreamServerOptions options;
  options.idle_timeout = absl::Milliseconds(200);
  Fixture f(options, [] {
    return std::make_shared<TestHandler>([](StreamConnection&, std::string_view) {});
  });
  LoopbackClient client(f.server().port());
  // Half a command, then silence: the server cannot tell, only the idle timeout ends it.
  ASSERT_TRUE(client.Send("*2\r\n$3\r\nGE"));
  EXPECT_TRUE(client.WaitClosed(kWait));
  ASSERT_TRUE(f.handler(0)->WaitClosed());
  EXPECT_EQ(f.handler(0)->received(), "*2\r\n$3\r\nGE");
  EXPECT_TRUE(absl::IsDeadlineExceeded(f.handler(0)->cause())) << f.handler(0)->cause();
}

TEST(StreamServer, ActiveConnectionOutlivesTheIdleTimeout) {
  StreamServerOptions options;
  options.idle_timeout = absl::Seconds(2);
  Fixture f(options);
  LoopbackClient client(f.server().port());
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(client.Send("x"));
    ASSERT_EQ(client.Read(1, kWait), "x") << "closed after " << i * 100 << " ms";
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(f.server().stats().closed_idle.load(), 0u);
}

// A client that never reads while the handler writes `total` bytes in 64 KiB pieces.
absl::Status FloodUnreadClient(const StreamServerOptions& options, size_t total) {
  const std::string piece = Pattern(64 << 10);
  Fixture f(options, [&] {
    return std::make_shared<TestHandler>([&](StreamConnection& c, std::string_view) {
      for (size_t sent = 0; sent < total && c.Write(piece).ok(); sent += piece.size()) {
      }
    });
  });
  LoopbackClient client(f.server().port(), /*receive_buffer=*/4096);
  EXPECT_TRUE(client.Send("go"));
  std::shared_ptr<TestHandler> h = f.handler(0);
  if (h == nullptr || !h->WaitClosed()) return absl::DeadlineExceededError("never closed");
  return h->cause();
}

TEST(StreamServer, SlowClientIsClosedWhenItsOutputStaysAboveTheLimit) {
  StreamServerOptions options;
  options.slow_client_bytes = 256 << 10;
  options.slow_client_timeout = absl::Milliseconds(100);
  const absl::Status cause = FloodUnreadClient(options, 32 << 20);
  EXPECT_TRUE(absl::IsResourceExhausted(cause)) << cause;
  EXPECT_THAT(Msg(cause), HasSubstr("did not read its replies"));
}

TEST(StreamServer, ClientOverTheHardOutputLimitIsClosedAtOnce) {
  StreamServerOptions options;
  options.slow_client_timeout = absl::InfiniteDuration();
  options.max_output_bytes = 1 << 20;
  const absl::Status cause = FloodUnreadClient(options, 32 << 20);
  EXPECT_TRUE(absl::IsResourceExhausted(cause)) << cause;
  EXPECT_THAT(Msg(cause), HasSubstr("more than the 1048576 allowed"));
}

TEST(StreamServer, PausedConnectionReadsNothingUntilResumed) {
  Fixture f(StreamServerOptions{}, [] {
    return std::make_shared<TestHandler>(
        [](StreamConnection& c, std::string_view) { c.PauseReading(); });
  });
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.Send("first"));
  std::shared_ptr<TestHandler> h = f.handler(0);
  ASSERT_TRUE(h->WaitReceived(5));
  ASSERT_TRUE(client.Send("second"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(h->received(), "first");
  f.connection(0)->ResumeReading();
  ASSERT_TRUE(h->WaitReceived(11));
  EXPECT_EQ(h->received(), "firstsecond");
  EXPECT_GE(h->resumed(), 1);
}

TEST(StreamServer, ConnectionsOverTheLimitAreRefusedWithTheMessage) {
  StreamServerOptions options;
  options.max_connections = 2;
  options.refusal = "-ERR max number of clients reached\r\n";
  Fixture f(options);
  LoopbackClient a(f.server().port());
  LoopbackClient b(f.server().port());
  ASSERT_TRUE(a.Send("a") && b.Send("b"));
  ASSERT_EQ(a.Read(1, kWait), "a");
  ASSERT_EQ(b.Read(1, kWait), "b");
  LoopbackClient c(f.server().port());
  EXPECT_TRUE(c.WaitClosed(kWait));
  EXPECT_EQ(c.buffer(), options.refusal);
  EXPECT_EQ(f.server().stats().refused.load(), 1u);
  ASSERT_TRUE(a.Send("still served"));
  EXPECT_EQ(a.Read(12, kWait), "still served");
}

TEST(StreamServer, DestructionClosesEveryConnection) {
  Fixture f;
  LoopbackClient client(f.server().port());
  ASSERT_TRUE(client.Send("x"));
  ASSERT_EQ(client.Read(1, kWait), "x");
  std::shared_ptr<TestHandler> h = f.handler(0);
  std::shared_ptr<StreamConnection> c = f.connection(0);
  f.Stop();
  ASSERT_TRUE(h->WaitClosed());
  EXPECT_TRUE(absl::IsCancelled(h->cause())) << h->cause();
  EXPECT_TRUE(client.WaitClosed(kWait));
  // The connection outlives the server and refuses everything.
  EXPECT_FALSE(c->open());
  EXPECT_FALSE(c->Write("late").ok());
  c->ResumeReading();
  c->Close();
}

}  // namespace
}  // namespace sluice::net
