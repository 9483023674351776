// The `net` shuffle service between two environments of this process, over real loopback
// connections, for each transport: no head-of-line blocking among 1,000 channels on one
// connection, zero-copy receive into the gate's buffers, cancellation releasing the producer's
// buffers, a lost connection failing only its own channels, malformed and wrong-version control
// messages refused while the server keeps serving, the gate's buffer error, and the protocol
// codec. (The shuffle tests run through this service too; the multi-process tests are in
// tests/integration.)
#include "shuffle/net_shuffle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/buffer_pool.h"
#include "base/sync.h"
#include "base/timer_service.h"
#include "net/transport.h"
#include "shuffle/net_messages.h"
#include "shuffle/shuffle_service.h"

namespace sluice {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(60);

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// One worker: a pool, a timer and a net environment.
class Worker {
 public:
  Worker(std::string id, const std::string& transport, size_t segments = 4096,
         std::vector<std::pair<std::string, std::string>> options = {}) {
    BufferPoolOptions p;
    p.segment_size = 4096;
    p.num_segments = segments;
    p.try_hugepages = false;
    pool_ = BufferPool::Create(p).value();
    timer_ = std::make_unique<TimerService>("test-timer");
    Config raw;
    raw.Set("shuffle.service", "net");
    raw.Set("shuffle.net.transport", transport);
    for (auto& [k, v] : options) raw.Set(k, v);
    config_ = ShuffleConfig::FromConfig(raw).value();
    master_ = CreateShuffleMaster(config_).value();
    ShuffleEnvironmentContext context;
    context.worker_id = std::move(id);
    context.pool = pool_.get();
    context.timer = timer_.get();
    id_ = context.worker_id;
    env_ = CreateShuffleEnvironment(config_, context).value();
  }
  ~Worker() { env_.reset(); }

  ShuffleEnvironment& env() { return *env_; }
  BufferPool& pool() { return *pool_; }
  const ShuffleConfig& config() const { return config_; }
  void Kill() { env_.reset(); }

  ShuffleDescriptor Register(uint64_t result, uint32_t subpartitions) {
    return master_
        ->RegisterPartition(PartitionId{result, 0}, subpartitions,
                            ProducerLocation{id_, env_->data_address()})
        .value();
  }
  std::shared_ptr<ResultPartition> Produce(const ShuffleDescriptor& d, int64_t timeout_ms = -1) {
    ResultPartitionOptions o = config_.partition_options(d.num_subpartitions);
    o.buffer_timeout_ms = timeout_ms;
    return env_->CreateResultPartition(d, o).value();
  }
  std::unique_ptr<InputGate> GateOver(const ShuffleDescriptor& d,
                                      InputGateOptions options = InputGateOptions()) {
    std::vector<InputChannelSpec> specs;
    for (uint32_t i = 0; i < d.num_subpartitions; ++i) specs.push_back(InputChannelSpec{d, i});
    auto g = env_->CreateInputGate("gate", specs, options);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? std::move(g).value() : nullptr;
  }

 private:
  std::string id_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<TimerService> timer_;
  ShuffleConfig config_;
  std::unique_ptr<ShuffleMaster> master_;
  std::unique_ptr<ShuffleEnvironment> env_;
};

template <typename Pred>
bool WaitFor(Pred pred, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!pred()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Microseconds(200));
  }
  return true;
}

class NetShuffleTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "uring") {
      if (absl::Status s = net::ProbeIoUring(); !s.ok()) {
        GTEST_SKIP() << "io_uring is not available here: " << s.message();
      }
    }
  }
};

// The reason Flink moved to credit-based flow control: one channel whose consumer stops reading
// must not hold up the others that share its connection.
TEST_P(NetShuffleTest, StalledChannelDoesNotBlockTheOther999OnItsConnection) {
  Worker producer("producer", GetParam(), 8192);
  Worker consumer("consumer", GetParam(), 8192);
  constexpr uint32_t kChannels = 1000;
  const ShuffleDescriptor d = producer.Register(1, kChannels);
  auto p = producer.Produce(d);
  auto gate = consumer.GateOver(d);
  gate->BlockChannel(0);  // the consumer stops reading channel 0

  // Channel 0 gets far more than its credit (2 exclusive + 8 floating 4 KiB buffers).
  const std::string big(1000, 'z');
  for (int i = 0; i < 4 * 60; ++i) ASSERT_TRUE(p->EmitRecord(0, big).ok());
  p->Flush(0);
  // Every other channel gets 30 records, written after channel 0 filled up.
  constexpr int kPerChannel = 30;
  for (int i = 0; i < kPerChannel; ++i) {
    for (uint32_t c = 1; c < kChannels; ++c) {
      ASSERT_TRUE(p->EmitRecord(c, absl::StrFormat("%d/%d", c, i)).ok());
    }
  }
  p->FlushAll();

  std::vector<int> next(kChannels, 0);
  uint64_t received = 0;
  InputItem item;
  while (received < uint64_t{kPerChannel} * (kChannels - 1)) {
    absl::Status s = gate->WaitNext(&item, kWait);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord) << "after " << received << " records";
    ASSERT_NE(item.channel, 0u);
    ASSERT_EQ(item.record, absl::StrFormat("%d/%d", item.channel, next[item.channel]));
    ++next[item.channel];
    ++received;
  }
  // Channel 0 holds no more than its credit allows, and the rest of its data waits at the
  // producer: nothing of it was sent ahead to clog the connection.
  const ChannelStats stalled = gate->channel(0).stats();
  EXPECT_LE(stalled.held, stalled.exclusive + gate->floating_credits().total());
  EXPECT_GT(p->backlog(0), 0u);

  // Resumed, it gets everything, in order.
  gate->ResumeChannel(0);
  for (int i = 0; i < 4 * 60; ++i) {
    absl::Status s = gate->WaitNext(&item, kWait);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
    ASSERT_EQ(item.channel, 0u);
    ASSERT_EQ(item.record.size(), big.size());
  }
  EXPECT_EQ(consumer.env().stats().connections, 1u);  // all 1,000 channels on one connection
}

TEST_P(NetShuffleTest, FullBuffersAreReceivedIntoTheGatesBuffersWithoutCopies) {
  Worker producer("producer", GetParam());
  Worker consumer("consumer", GetParam());
  const ShuffleDescriptor d = producer.Register(1, 4);
  auto p = producer.Produce(d);
  auto gate = consumer.GateOver(d);
  const std::string r(1022, 'q');  // with its 2-byte length, four fill a 4 KiB segment exactly
  constexpr int kRecords = 4 * 200;
  std::thread writer([&] {
    for (int i = 0; i < kRecords; ++i) ASSERT_TRUE(p->EmitRecord(i % 4, r).ok());
    ASSERT_TRUE(p->Finish().ok());
  });
  int got = 0;
  InputItem item;
  while (true) {
    absl::Status s = gate->WaitNext(&item, kWait);
    ASSERT_TRUE(s.ok()) << s;
    if (item.kind == InputItem::Kind::kEnd) break;
    if (item.kind == InputItem::Kind::kRecord) {
      ASSERT_EQ(item.record, r);
      ++got;
    }
  }
  writer.join();
  EXPECT_EQ(got, kRecords);
  const ShuffleEnvironmentStats s = consumer.env().stats();
  EXPECT_GE(s.bytes_received, uint64_t{kRecords} * 1024);
  // Whole buffers land straight in segments the gate reserved. At most the start of the first
  // one is copied: it arrived in a generic receive before the reader switched to directed ones.
  EXPECT_LT(s.bytes_copied, 4096u);
}

TEST_P(NetShuffleTest, CancelReleasesTheProducersBuffers) {
  Worker producer("producer", GetParam());
  Worker consumer("consumer", GetParam());
  const ShuffleDescriptor d = producer.Register(1, 2);
  auto p = producer.Produce(d);
  const size_t idle = producer.pool().available_segments();
  auto gate = consumer.GateOver(d);
  // More than the consumer's credit and the partition's pool together: the writer blocks until
  // the consumer cancels, after which what it writes is dropped.
  std::thread writer([&] {
    const std::string r(1000, 'c');
    for (int i = 0; i < 4 * 40; ++i) ASSERT_TRUE(p->EmitRecord(i % 2, r).ok());
    p->FlushAll();
  });
  ASSERT_TRUE(WaitFor([&] { return gate->channel(0).stats().credit == 0 && p->backlog(0) > 0; }));
  gate->Close();  // the consumer cancels
  writer.join();
  // The producer's queued buffers go back to its partition's pool, and on to the global pool.
  ASSERT_TRUE(WaitFor([&] { return p->backlog(0) == 0 && p->backlog(1) == 0; }));
  p->CloseWriter();
  EXPECT_TRUE(WaitFor([&] { return producer.pool().available_segments() >= idle; }))
      << producer.pool().available_segments() << " of " << idle;
}

TEST_P(NetShuffleTest, LostConnectionFailsItsChannelsOnly) {
  Worker a("worker-a", GetParam());
  Worker b("worker-b", GetParam());
  Worker consumer("consumer", GetParam());
  const ShuffleDescriptor da = a.Register(1, 1);
  const ShuffleDescriptor db = b.Register(2, 1);
  auto pa = a.Produce(da, 0);
  auto pb = b.Produce(db, 0);
  auto ga = consumer.GateOver(da);
  auto gb = consumer.GateOver(db);
  InputItem item;
  ASSERT_TRUE(pa->EmitRecord(0, "a").ok());
  ASSERT_TRUE(pb->EmitRecord(0, "b").ok());
  ASSERT_TRUE(ga->WaitNext(&item, kWait).ok());
  ASSERT_TRUE(gb->WaitNext(&item, kWait).ok());
  const std::string address_a = a.env().data_address();
  pa.reset();
  a.Kill();  // worker A's sockets close
  absl::Status s = ga->WaitNext(&item, kWait);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr(address_a));
  EXPECT_THAT(Msg(s), HasSubstr("worker-a"));
  // Worker B's channel is untouched.
  ASSERT_TRUE(pb->EmitRecord(0, "still here").ok());
  ASSERT_TRUE(gb->WaitNext(&item, kWait).ok());
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "still here");
}

// A raw client of a data server: connects with the transport's handshake, sends what the test
// says, and records what comes back.
class RawClient final : public net::ConnectionHandler {
 public:
  void OnFrame(net::Connection&, const net::FrameHeader& header, Buffer payload) override {
    MutexLock lock(&mu_);
    if (header.type == netshuffle::kControlFrame) {
      auto m = netshuffle::DecodeControl(payload.valid() ? payload.readable() : "");
      if (m.ok()) messages_.push_back(*m);
    }
  }
  void OnClosed(net::Connection&, const absl::Status& cause) override {
    MutexLock lock(&mu_);
    closed_ = true;
    cause_ = cause;
  }
  std::vector<netshuffle::ControlMessage> messages() {
    MutexLock lock(&mu_);
    return messages_;
  }
  bool closed() {
    MutexLock lock(&mu_);
    return closed_;
  }

 private:
  Mutex mu_;
  std::vector<netshuffle::ControlMessage> messages_;
  bool closed_ = false;
  absl::Status cause_;
};

struct RawConnection {
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<net::Transport> transport;
  std::shared_ptr<RawClient> client = std::make_shared<RawClient>();
  std::shared_ptr<net::Connection> connection;

  RawConnection(const std::string& transport_name, const std::string& address) {
    BufferPoolOptions po;
    po.num_segments = 64;
    po.try_hugepages = false;
    pool = BufferPool::Create(po).value();
    net::TransportOptions to;
    to.pool = pool.get();
    transport = net::Transport::Create(transport_name, to).value();
    net::ConnectOptions co;
    co.port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    connection = transport->Connect(co, client).value();
  }
  ~RawConnection() {
    connection.reset();
    transport.reset();
  }
  void SendControl(Buffer payload) {
    ASSERT_TRUE(connection->Send(netshuffle::ControlHeader(), std::move(payload)).ok());
  }
  // The ErrorResponse the server sent before closing.
  std::optional<netshuffle::ErrorResponse> WaitForErrorAndClose() {
    if (!WaitFor([&] { return client->closed(); })) return std::nullopt;
    for (const auto& m : client->messages()) {
      if (const auto* e = std::get_if<netshuffle::ErrorResponse>(&m)) return *e;
    }
    return std::nullopt;
  }
};

Buffer Bytes(std::string_view s) {
  Buffer b = Buffer::AllocateUnpooled(s.size() + 1);
  b.Append(s);
  return b;
}

// After a bad connection the server still serves a normal consumer.
void ExpectStillServes(Worker& producer, const std::string& transport) {
  Worker consumer("consumer", transport);
  const ShuffleDescriptor d = producer.Register(9, 1);
  auto p = producer.Produce(d, 0);
  auto gate = consumer.GateOver(d);
  ASSERT_TRUE(p->EmitRecord(0, "alive").ok());
  InputItem item;
  ASSERT_TRUE(gate->WaitNext(&item, kWait).ok());
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "alive");
}

TEST_P(NetShuffleTest, MalformedControlMessageGetsAnErrorResponseAndClose) {
  Worker producer("producer", GetParam());
  {
    RawConnection raw(GetParam(), producer.env().data_address());
    raw.SendControl(Bytes("this is not a flatbuffer, not even close"));
    std::optional<netshuffle::ErrorResponse> e = raw.WaitForErrorAndClose();
    ASSERT_TRUE(e.has_value());
    EXPECT_TRUE(e->whole_connection);
    EXPECT_EQ(e->code, netshuffle::ErrorCode::kBadRequest);
    EXPECT_THAT(e->message, HasSubstr("not a valid FlatBuffers Control table"));
  }
  {
    RawConnection raw(GetParam(), producer.env().data_address());
    ASSERT_TRUE(raw.connection->Send(net::FrameHeader{.type = 200}, Bytes("??")).ok());
    std::optional<netshuffle::ErrorResponse> e = raw.WaitForErrorAndClose();
    ASSERT_TRUE(e.has_value());
    EXPECT_THAT(e->message, HasSubstr("unexpected frame type"));
  }
  ExpectStillServes(producer, GetParam());
}

TEST_P(NetShuffleTest, UnknownProtocolVersionIsRefusedByName) {
  Worker producer("producer", GetParam());
  RawConnection raw(GetParam(), producer.env().data_address());
  raw.SendControl(netshuffle::EncodeControl(
      netshuffle::PartitionRequest{PartitionId{1, 0}, 0, 0, 2}, /*version=*/7));
  std::optional<netshuffle::ErrorResponse> e = raw.WaitForErrorAndClose();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, netshuffle::ErrorCode::kUnsupportedVersion);
  EXPECT_THAT(e->message, HasSubstr("version 7"));
  ExpectStillServes(producer, GetParam());
}

TEST_P(NetShuffleTest, UnknownChannelsAndPartitionsAreNamedInTheAnswer) {
  Worker producer("producer", GetParam());
  RawConnection raw(GetParam(), producer.env().data_address());
  raw.SendControl(netshuffle::EncodeControl(netshuffle::AddCredit{77, 1}));
  raw.SendControl(
      netshuffle::EncodeControl(netshuffle::PartitionRequest{PartitionId{0xbad, 3}, 0, 5, 2}));
  ASSERT_TRUE(WaitFor([&] { return raw.client->messages().size() >= 2; }));
  const auto messages = raw.client->messages();
  const auto* credit = std::get_if<netshuffle::ErrorResponse>(&messages[0]);
  ASSERT_NE(credit, nullptr);
  EXPECT_EQ(credit->channel, 77u);
  EXPECT_THAT(credit->message, HasSubstr("unknown channel 77"));
  const auto* request = std::get_if<netshuffle::ErrorResponse>(&messages[1]);
  ASSERT_NE(request, nullptr);
  EXPECT_EQ(request->channel, 5u);
  EXPECT_EQ(request->code, netshuffle::ErrorCode::kPartitionNotFound);
  EXPECT_THAT(request->message, HasSubstr(PartitionId{0xbad, 3}.ToString()));
  EXPECT_FALSE(raw.client->closed());  // per-channel errors keep the connection
}

TEST_P(NetShuffleTest, GateWithoutEnoughBuffersSaysHowManyAndWhichOption) {
  Worker producer("producer", GetParam());
  Worker consumer("consumer", GetParam(), /*segments=*/300);
  const ShuffleDescriptor d = producer.Register(1, 200);
  std::vector<InputChannelSpec> specs;
  for (uint32_t i = 0; i < 200; ++i) specs.push_back(InputChannelSpec{d, i});
  auto gate = consumer.env().CreateInputGate("wide", specs, InputGateOptions());
  ASSERT_FALSE(gate.ok());
  EXPECT_EQ(gate.status().code(), absl::StatusCode::kResourceExhausted);
  const std::string m = Msg(gate.status());
  EXPECT_THAT(m, HasSubstr("needs 408 network buffers"));
  EXPECT_THAT(m, HasSubstr("shuffle.exclusive-buffers-per-channel"));
  EXPECT_THAT(m, HasSubstr("shuffle.floating-buffers-per-gate"));
  EXPECT_THAT(m, HasSubstr("free of 300"));
}

TEST(NetShuffleOptionsTest, BadOptionsAreNamed) {
  const std::pair<std::string, std::string> bad[] = {
      {"shuffle.net.bind", "nowhere"},
      {"shuffle.net.connections-per-worker", "0"},
      {"shuffle.net.retry-initial-backoff", "-1s"},
      {"shuffle.net.connection-timeout", "soon"},
      {"shuffle.net.transport", "pigeon"},
  };
  for (const auto& [key, value] : bad) {
    Config raw;
    raw.Set("shuffle.service", "net");
    raw.Set(key, value);
    absl::StatusOr<ShuffleConfig> config = ShuffleConfig::FromConfig(raw);
    absl::Status s = config.status();
    if (config.ok()) {
      BufferPoolOptions po;
      po.num_segments = 64;
      po.try_hugepages = false;
      auto pool = BufferPool::Create(po).value();
      ShuffleEnvironmentContext context;
      context.pool = pool.get();
      s = CreateShuffleEnvironment(*config, context).status();
    }
    ASSERT_FALSE(s.ok()) << key;
    EXPECT_THAT(Msg(s), ::testing::AnyOf(HasSubstr(key), HasSubstr(value))) << key;
  }
  Config typo;
  typo.Set("shuffle.net.conection-timeout", "1s");
  EXPECT_THAT(Msg(ShuffleConfig::FromConfig(typo).status()),
              HasSubstr("shuffle.net.conection-timeout"));
}

TEST(NetMessagesTest, EveryMessageRoundTrips) {
  const netshuffle::ControlMessage messages[] = {
      netshuffle::PartitionRequest{PartitionId{0x1234567890ull, 17}, 3, 99, 2},
      netshuffle::AddCredit{5, 3},
      netshuffle::BacklogAnnouncement{6, 40},
      netshuffle::CancelPartitionRequest{7},
      netshuffle::CloseRequest{},
      netshuffle::ResumeConsumption{8},
      netshuffle::ErrorResponse{9, true, netshuffle::ErrorCode::kPartitionFailed, "disk on fire",
                                absl::StatusCode::kInternal},
  };
  for (const auto& m : messages) {
    Buffer b = netshuffle::EncodeControl(m);
    auto decoded = netshuffle::DecodeControl(b.readable());
    ASSERT_TRUE(decoded.ok()) << netshuffle::MessageName(m) << ": " << decoded.status();
    EXPECT_EQ(*decoded, m) << netshuffle::MessageName(m);
  }
  const netshuffle::BufferResponse r{4, 1000, 12, DataType::kPriorityEvent};
  net::FrameHeader h = netshuffle::BufferResponseHeader(r);
  h.length = 10;
  auto back = netshuffle::DecodeBufferResponse(h);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->channel, 4u);
  EXPECT_EQ(back->sequence, 1000u);
  EXPECT_EQ(back->backlog, 12u);
  EXPECT_EQ(back->type, DataType::kPriorityEvent);
  h.flags = 9;
  EXPECT_THAT(Msg(netshuffle::DecodeBufferResponse(h).status()), HasSubstr("unknown data type 9"));
  EXPECT_THAT(Msg(netshuffle::DecodeControl(std::string(20000, 'x')).status()), HasSubstr("limit"));
  EXPECT_THAT(Msg(netshuffle::DecodeControl(
                      netshuffle::EncodeControl(netshuffle::AddCredit{1, 0}).readable())
                      .status()),
              HasSubstr("AddCredit of 0"));
}

INSTANTIATE_TEST_SUITE_P(Transports, NetShuffleTest, ::testing::Values("epoll", "uring"),
                         [](const auto& p) { return p.param; });

}  // namespace
}  // namespace sluice
