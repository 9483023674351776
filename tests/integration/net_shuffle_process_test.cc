// The `net` shuffle between real processes on loopback, over each transport: a producer process
// (shuffle_peer) serves partitions, and a consumer process or this test process reads them.
// Checked: exact per-channel delivery under every partitioner, a producer killed with SIGKILL or
// stopped with SIGSTOP, a slow consumer holding the producer back, a partition that is never
// produced, garbage at the data port, and a consumer that asks before the partitions exist.
//
// The peer binary comes from SLUICE_SHUFFLE_PEER (set by meson), or lies next to this test.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/logging.h"
#include "base/sync.h"
#include "net/frame.h"
#include "net/transport.h"
#include "shuffle/net_messages.h"
#include "shuffle/record_writer.h"
#include "tests/integration/child_process.h"
#include "tests/integration/net_peer.h"
#include "tests/shuffle/partitioner_test_util.h"

namespace sluice::integration {

void PrintTo(const ChannelDigest& d, std::ostream* os) {
  *os << absl::StrFormat("{%d records, %d bytes, crc %08x}", d.records, d.bytes, d.crc);
}

namespace {

using ::testing::HasSubstr;

// Generous bounds for anything a peer prints: ASan makes process start-up slow, and CI runs
// tests side by side on two cores. A healthy run takes a small fraction of them.
constexpr absl::Duration kLineTimeout = absl::Seconds(60);
constexpr absl::Duration kExitTimeout = absl::Seconds(30);
// The longest a consumer waits for its next item; failures must arrive well before it.
constexpr absl::Duration kItemWait = absl::Seconds(60);

std::string PeerPath() {
  if (const char* env = std::getenv("SLUICE_SHUFFLE_PEER"); env != nullptr && *env != '\0') {
    return env;
  }
  // Outside meson: the build puts the peer in integration/ next to the test binaries.
  std::error_code error;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) return "";
  const std::filesystem::path peer = self.parent_path() / "integration" / "shuffle_peer";
  return std::filesystem::exists(peer, error) ? peer.string() : "";
}

std::string FlagName(PartitionerKind kind) {
  std::string name(PartitionerName(kind));
  std::erase(name, '-');
  return name;
}

std::string OtherTransport(const std::string& transport) {
  return transport == "uring" ? "epoll" : "uring";
}

// What a producer writes: `partitions` partitions of `subpartitions` each, `records` records to
// each partition (each at most `record_size` bytes), flushed every `flush_ms` (-1: full buffers
// only, 0: every record).
struct Shape {
  PartitionerKind partitioner = PartitionerKind::kRoundRobin;
  uint32_t partitions = 2;
  uint32_t subpartitions = 4;
  uint64_t records = 1500;
  size_t record_size = 6000;
  int64_t flush_ms = 2;

  uint32_t channels() const { return partitions * subpartitions; }
  std::vector<std::string> ProducerFlags() const {
    return {
        "--partitions",  absl::StrCat(partitions),  "--subpartitions", absl::StrCat(subpartitions),
        "--records",     absl::StrCat(records),     "--partitioner",   FlagName(partitioner),
        "--record-size", absl::StrCat(record_size), "--flush-ms",      absl::StrCat(flush_ms)};
  }
};

// The digests a consumer of every channel must report, computed from the record generator and
// the partitioner rule, without RecordWriter.
Digests ExpectedDigests(const Shape& shape) {
  Digests out;
  for (uint32_t c = 0; c < shape.channels(); ++c) out[c];
  for (uint32_t p = 0; p < shape.partitions; ++p) {
    for (uint64_t i = 0; i < shape.records; ++i) {
      const std::string record = PeerRecord(p, i, shape.record_size);
      for (uint32_t c :
           testing::ExpectedChannels(shape.partitioner, i, PeerKey(p, i), shape.subpartitions)) {
        out[p * shape.subpartitions + c].Add(record);
      }
    }
  }
  return out;
}

uint64_t TotalBytes(const Digests& digests) {
  uint64_t total = 0;
  for (const auto& [channel, d] : digests) total += d.bytes;
  return total;
}

// The DIGEST lines a consumer peer printed.
Digests ReportedDigests(const ChildProcess& consumer) {
  Digests out;
  for (const std::string& line : consumer.Lines()) {
    if (!line.starts_with("DIGEST ")) continue;
    uint32_t channel = 0;
    ChannelDigest d;
    const absl::Status s = ParseDigestLine(line, &channel, &d);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_FALSE(out.contains(channel)) << "channel " << channel << " reported twice";
    out[channel] = d;
  }
  return out;
}

// A producer peer and the address of its data server.
struct Producer {
  std::unique_ptr<ChildProcess> process;
  std::string address;
};

// Opens a plain TCP connection to host:port; -1 with a test failure when that fails.
int ConnectRaw(const std::string& address) {
  const size_t colon = address.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    ADD_FAILURE() << "bad address " << address;
    return -1;
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect to " << address << ": " << std::strerror(errno);
    close(fd);
    return -1;
  }
  return fd;
}

// Writes `bytes` to `fd` and reads until the other side closes the connection (EOF or reset);
// false when it stayed open for `timeout`. Whatever the server answers first (an error frame)
// is read and ignored.
bool ServerClosesAfter(int fd, const std::string& bytes, absl::Duration timeout) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EPIPE || errno == ECONNRESET;  // closed while we wrote
    sent += static_cast<size_t>(n);
  }
  const timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char buf[4096];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) continue;
    if (n == 0) return true;
    if (errno == EINTR) continue;
    return errno == ECONNRESET;  // EAGAIN: the receive timed out with the connection open
  }
}

// Starts peers and in-process consumers over the transport of the parameter (which is the
// transport, or a tuple that starts with it).
template <typename Param>
class ProcessTest : public ::testing::TestWithParam<Param> {
 protected:
  static const std::string& TransportOf(const std::string& param) { return param; }
  template <typename... Rest>
  static const std::string& TransportOf(const std::tuple<std::string, Rest...>& param) {
    return std::get<0>(param);
  }

  void SetUp() override {
    InitLogging();  // the in-process worker's logs to stderr, as the peers'
    if (transport() == "uring") {
      if (absl::Status s = net::ProbeIoUring(); !s.ok()) {
        GTEST_SKIP() << "the uring transport cannot run here, io_uring is refused: " << s.message();
      }
    }
    peer_ = PeerPath();
    ASSERT_FALSE(peer_.empty())
        << "shuffle_peer not found: set SLUICE_SHUFFLE_PEER to its path (meson test does)";
  }

  const std::string& transport() const { return TransportOf(this->GetParam()); }

  std::vector<std::string> PeerArgv(std::string_view role, std::string_view over) const {
    return {peer_, "--role", std::string(role), "--transport", std::string(over)};
  }

  // Starts a producer peer of `shape` (plus `extra` flags) and waits for its address.
  void StartProducer(const Shape& shape, const std::vector<std::string>& extra, Producer* out) {
    std::vector<std::string> argv = PeerArgv("producer", transport());
    for (const std::string& f : shape.ProducerFlags()) argv.push_back(f);
    for (const std::string& f : extra) argv.push_back(f);
    absl::StatusOr<std::unique_ptr<ChildProcess>> p = ChildProcess::Start(argv);
    ASSERT_TRUE(p.ok()) << p.status();
    out->process = *std::move(p);
    absl::StatusOr<std::string> line = out->process->WaitForLine("ADDR ", kLineTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    out->address = line->substr(5);
    ASSERT_THAT(out->address, ::testing::StartsWith("127.0.0.1:"));
  }

  // Starts a consumer peer of every channel of `shape` at `address`, over the test's transport
  // unless `over` names another.
  void StartConsumer(const Shape& shape, const std::string& address,
                     std::unique_ptr<ChildProcess>* out, std::string_view over = {}) {
    std::vector<std::string> argv = PeerArgv("consumer", over.empty() ? transport() : over);
    for (const std::string& f : {std::string("--addr"), address, std::string("--partitions"),
                                 absl::StrCat(shape.partitions), std::string("--subpartitions"),
                                 absl::StrCat(shape.subpartitions)}) {
      argv.push_back(f);
    }
    absl::StatusOr<std::unique_ptr<ChildProcess>> c = ChildProcess::Start(argv);
    ASSERT_TRUE(c.ok()) << c.status();
    *out = *std::move(c);
  }

  // A consumer worker in this process, with `settings` on top of the peers' configuration.
  void StartLocalConsumer(const std::vector<std::pair<std::string, std::string>>& settings,
                          std::unique_ptr<PeerWorker>* out) {
    Config config = NetPeerConfig(transport());
    for (const auto& [key, value] : settings) config.Set(key, value);
    absl::StatusOr<std::unique_ptr<PeerWorker>> w = PeerWorker::Create("consumer", config);
    ASSERT_TRUE(w.ok()) << w.status();
    *out = *std::move(w);
  }

  // A gate of `worker` over every channel of `shape` at `address`, from result `first_result`.
  static void OpenGate(PeerWorker& worker, const Shape& shape, const std::string& address,
                       std::unique_ptr<InputGate>* out, uint64_t first_result = 1) {
    absl::StatusOr<std::vector<ShuffleDescriptor>> ds =
        worker.Register(first_result, shape.partitions, shape.subpartitions, address);
    ASSERT_TRUE(ds.ok()) << ds.status();
    absl::StatusOr<std::unique_ptr<InputGate>> gate = worker.GateOver(*ds);
    ASSERT_TRUE(gate.ok()) << gate.status();
    *out = *std::move(gate);
  }

  // The consumer peer ends with DONE and exit code 0, reporting exactly what `shape` writes.
  static void ExpectExactReport(ChildProcess& consumer, const Shape& shape) {
    absl::StatusOr<std::string> done = consumer.WaitForLine("DONE", kLineTimeout);
    ASSERT_TRUE(done.ok()) << done.status();
    absl::StatusOr<int> status = consumer.Wait(kExitTimeout);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(ChildProcess::DescribeStatus(*status), "exited with 0");
    const Digests expected = ExpectedDigests(shape);
    EXPECT_EQ(ReportedDigests(consumer), expected);
  }

  // The producer wrote everything, and exits cleanly once its stdin closes.
  static void ExpectProducerFinishes(Producer& producer) {
    absl::StatusOr<std::string> finished = producer.process->WaitForLine("FINISHED ", kLineTimeout);
    EXPECT_TRUE(finished.ok()) << finished.status();
    producer.process->CloseStdin();
    absl::StatusOr<int> status = producer.process->Wait(kExitTimeout);
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(ChildProcess::DescribeStatus(*status), "exited with 0");
  }

  // One channel of 200-byte records flushed every millisecond, written slowly and forever by a
  // `--hold` producer, read in this process with a 2 s connection timeout (heartbeat 200 ms).
  static Shape HeldStreamShape() {
    Shape shape;
    shape.partitioner = PartitionerKind::kForward;
    shape.partitions = 1;
    shape.subpartitions = 1;
    shape.record_size = 200;
    shape.flush_ms = 1;
    return shape;
  }
  void StartHeldStream(const Shape& shape, Producer* producer, std::unique_ptr<PeerWorker>* worker,
                       std::unique_ptr<InputGate>* gate) {
    ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {"--hold"}, producer));
    ASSERT_NO_FATAL_FAILURE(StartLocalConsumer(
        {{"shuffle.net.connection-timeout", "2s"}, {"shuffle.net.heartbeat-interval", "200ms"}},
        worker));
    ASSERT_NO_FATAL_FAILURE(OpenGate(**worker, shape, producer->address, gate));
  }

  std::string peer_;
};

class NetShuffleProcessTest : public ProcessTest<std::string> {};

// ---------------------------------------------------------------- exact delivery

class NetShufflePartitionerTest : public ProcessTest<std::tuple<std::string, PartitionerKind>> {};

// Each partitioner with its own flush mode, so that every mode crosses the wire.
int64_t FlushFor(PartitionerKind kind) {
  switch (kind) {
    case PartitionerKind::kForward:
    case PartitionerKind::kCustom:
      return 0;  // after every record
    case PartitionerKind::kRoundRobin:
    case PartitionerKind::kBroadcast:
      return -1;  // full buffers only
    default:
      return 2;
  }
}

// Producer and consumer are both processes of their own; the consumer's digests must match
// what this test computes from the records and the partitioner rule.
TEST_P(NetShufflePartitionerTest, ExactDeliveryBetweenProcesses) {
  Shape shape;
  shape.partitioner = std::get<1>(GetParam());
  if (shape.partitioner == PartitionerKind::kForward) shape.subpartitions = 1;
  shape.flush_ms = FlushFor(shape.partitioner);
  const Digests expected = ExpectedDigests(shape);
  // The computation itself reaches every channel, so that a mixed-up channel cannot go unseen.
  for (const auto& [channel, d] : expected) ASSERT_GT(d.records, 0u) << "channel " << channel;

  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {}, &producer));
  std::unique_ptr<ChildProcess> consumer;
  ASSERT_NO_FATAL_FAILURE(StartConsumer(shape, producer.address, &consumer));
  ExpectExactReport(*consumer, shape);
  ExpectProducerFinishes(producer);
}

INSTANTIATE_TEST_SUITE_P(
    TransportsAndPartitioners, NetShufflePartitionerTest,
    ::testing::Combine(::testing::Values("uring", "epoll"),
                       ::testing::Values(PartitionerKind::kForward, PartitionerKind::kRoundRobin,
                                         PartitionerKind::kRescale, PartitionerKind::kHash,
                                         PartitionerKind::kBroadcast, PartitionerKind::kCustom)),
    [](const auto& param_info) {
      return std::get<0>(param_info.param) + "_" + FlagName(std::get<1>(param_info.param));
    });

// A uring producer and an epoll consumer, or the other way round: one wire protocol.
TEST_P(NetShuffleProcessTest, ProducerAndConsumerProcessesOnDifferentTransports) {
  if (absl::Status s = net::ProbeIoUring(); !s.ok()) {
    GTEST_SKIP() << "needs both transports, and io_uring is refused: " << s.message();
  }
  Shape shape;
  shape.partitioner = PartitionerKind::kHash;
  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {}, &producer));
  std::unique_ptr<ChildProcess> consumer;
  ASSERT_NO_FATAL_FAILURE(
      StartConsumer(shape, producer.address, &consumer, OtherTransport(transport())));
  ExpectExactReport(*consumer, shape);
  ExpectProducerFinishes(producer);
}

// ---------------------------------------------------------------- failures of the producer

// A producer writing a record every few milliseconds (--hold) is killed while a consumer in this
// process reads it: the consumer sees the records sent before, in order, then an error naming
// the producer, long before its own wait would have run out.
TEST_P(NetShuffleProcessTest, ProducerKilledWithSigkillFailsTheConsumerNamingIt) {
  const Shape shape = HeldStreamShape();
  Producer producer;
  std::unique_ptr<PeerWorker> worker;
  std::unique_ptr<InputGate> gate;
  ASSERT_NO_FATAL_FAILURE(StartHeldStream(shape, &producer, &worker, &gate));

  // The stream is live and exact before the kill.
  uint64_t next = 0;
  InputItem item;
  while (next < 50) {
    const absl::Status s = gate->WaitNext(&item, kItemWait);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
    ASSERT_EQ(item.record, PeerRecord(0, next, shape.record_size)) << "record " << next;
    ++next;
  }

  producer.process->Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  absl::Status failure;
  while (failure.ok()) {
    failure = gate->WaitNext(&item, kItemWait);
    if (!failure.ok()) break;
    // What was on its way before the kill still arrives, in order.
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord) << "no failure within " << kItemWait;
    ASSERT_EQ(item.record, PeerRecord(0, next, shape.record_size)) << "record " << next;
    ++next;
  }
  const absl::Duration took = absl::Now() - killed;
  EXPECT_THAT(std::string(failure.message()), HasSubstr(producer.address)) << failure;
  EXPECT_THAT(std::string(failure.message()), HasSubstr(std::string(kProducerWorker)));
  EXPECT_EQ(failure.code(), absl::StatusCode::kUnavailable) << failure;
  // Well before the consumer's own wait runs out: the failure is detected, not waited out.
  EXPECT_LT(took, kItemWait / 4) << failure;
  // The failure sticks.
  EXPECT_FALSE(gate->PollNext(&item).ok());

  absl::StatusOr<int> status = producer.process->Wait(kExitTimeout);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
      << ChildProcess::DescribeStatus(*status);
  gate.reset();
}

// A producer that stops answering but keeps its connection open (SIGSTOP) is found out by the
// heartbeat after shuffle.net.connection-timeout.
TEST_P(NetShuffleProcessTest, StoppedProducerFailsTheConsumerAfterTheConnectionTimeout) {
  const Shape shape = HeldStreamShape();
  Producer producer;
  std::unique_ptr<PeerWorker> worker;
  std::unique_ptr<InputGate> gate;
  ASSERT_NO_FATAL_FAILURE(StartHeldStream(shape, &producer, &worker, &gate));
  InputItem item;
  for (uint64_t i = 0; i < 20; ++i) {
    const absl::Status s = gate->WaitNext(&item, kItemWait);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  }

  producer.process->Signal(SIGSTOP);
  const absl::Time stopped = absl::Now();
  absl::Status failure;
  while (failure.ok()) {
    failure = gate->WaitNext(&item, kItemWait);
    if (failure.ok()) {
      ASSERT_EQ(item.kind, InputItem::Kind::kRecord) << "no failure within " << kItemWait;
    }
  }
  const absl::Duration took = absl::Now() - stopped;
  EXPECT_EQ(failure.code(), absl::StatusCode::kDeadlineExceeded) << failure;
  EXPECT_THAT(std::string(failure.message()), HasSubstr(producer.address));
  EXPECT_THAT(std::string(failure.message()), HasSubstr("shuffle.net.connection-timeout"));
  EXPECT_LT(took, kItemWait / 4) << failure;
  producer.process->Signal(SIGKILL);
  gate.reset();
}

// ---------------------------------------------------------------- back-pressure

// A consumer that takes its time holds the producer back: the producer waits for credit rather
// than failing or buffering without bound, and every record still arrives exactly.
TEST_P(NetShuffleProcessTest, SlowConsumerHoldsTheProducerBackAndGetsEverything) {
  Shape shape;
  shape.partitions = 1;
  shape.subpartitions = 2;
  shape.records = 4000;
  shape.record_size = 2000;
  shape.flush_ms = 5;
  const Digests expected = ExpectedDigests(shape);
  const uint64_t total = TotalBytes(expected);
  // What can be on its way at once is bounded by buffers (the partition's pool and the gate's
  // credits, a few dozen 4 KiB segments): far below half of the data.
  ASSERT_GT(total, 1000u * 1000u);

  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {}, &producer));
  std::unique_ptr<PeerWorker> worker;
  ASSERT_NO_FATAL_FAILURE(StartLocalConsumer({}, &worker));
  std::unique_ptr<InputGate> gate;
  ASSERT_NO_FATAL_FAILURE(OpenGate(*worker, shape, producer.address, &gate));

  bool checked = false;
  uint64_t slow_buffers = 0;
  Digests got;
  const absl::Status s = DrainGate(*gate, kItemWait, &got, [&](const Digests& so_far) {
    const uint64_t read = TotalBytes(so_far);
    if (read < total / 2) {
      ++slow_buffers;
      absl::SleepFor(absl::Milliseconds(3));
    } else if (!checked) {
      checked = true;
      // Half-way through, the producer is still there, waiting to write the rest.
      EXPECT_TRUE(producer.process->Running()) << "the producer exited early";
      EXPECT_FALSE(producer.process->HasLine("FINISHED"))
          << "the producer finished with half of its data unread";
      EXPECT_FALSE(producer.process->HasLine("ERROR"));
    }
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(checked);
  EXPECT_GT(slow_buffers, 50u);
  EXPECT_EQ(got, expected);
  gate.reset();
  ExpectProducerFinishes(producer);
}

// ---------------------------------------------------------------- bad requests and input

TEST_P(NetShuffleProcessTest, UnknownPartitionFailsAfterTheRequestTimeoutNamingIt) {
  Shape shape;
  shape.partitions = 1;
  shape.subpartitions = 2;
  shape.records = 300;
  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {}, &producer));
  std::unique_ptr<PeerWorker> worker;
  ASSERT_NO_FATAL_FAILURE(
      StartLocalConsumer({{"shuffle.partition-request-timeout", "500ms"}}, &worker));

  // Partition 99 is registered with the master but never created by the producer.
  std::unique_ptr<InputGate> gate;
  ASSERT_NO_FATAL_FAILURE(OpenGate(*worker, shape, producer.address, &gate, /*first_result=*/99));
  const absl::Time asked = absl::Now();
  InputItem item;
  const absl::Status s = gate->WaitNext(&item, kItemWait);
  const absl::Duration took = absl::Now() - asked;
  ASSERT_FALSE(s.ok()) << "got an item of kind " << static_cast<int>(item.kind);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(PartitionId{99, 0}.ToString()));
  EXPECT_THAT(std::string(s.message()), HasSubstr("shuffle.partition-request-timeout"));
  EXPECT_LT(took, kItemWait / 4) << s;
  gate.reset();

  // The producer and the connection to it are fine: its real partition reads exactly.
  Digests got;
  ASSERT_NO_FATAL_FAILURE(OpenGate(*worker, shape, producer.address, &gate));
  const absl::Status drained = DrainGate(*gate, kItemWait, &got);
  ASSERT_TRUE(drained.ok()) << drained;
  EXPECT_EQ(got, ExpectedDigests(shape));
  gate.reset();
  ExpectProducerFinishes(producer);
}

// What a stranger may send to the data port. Each connection is closed by the server, which
// keeps serving everyone else.
std::vector<std::pair<std::string, std::string>> GarbageInputs() {
  std::vector<std::pair<std::string, std::string>> inputs;
  std::mt19937_64 rng(20240611);
  std::string noise(4096, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  noise[0] = 'G';  // never the magic's first byte
  inputs.emplace_back("random bytes", noise);

  net::FrameHeader hello;
  hello.type = static_cast<uint8_t>(net::FrameType::kHello);
  hello.length = 64;
  std::string header(net::kFrameHeaderSize, '\0');
  net::EncodeFrameHeader(hello, header.data());
  std::string bad_magic = header;
  bad_magic[0] = static_cast<char>(bad_magic[0] ^ 0x01);
  inputs.emplace_back("a frame header with a bad magic", bad_magic + std::string(64, 'x'));
  std::string bad_version = header;
  bad_version[2] = 9;
  inputs.emplace_back("a frame header of version 9", bad_version + std::string(64, 'x'));
  inputs.emplace_back("a hello whose payload is not a FlatBuffer", header + noise.substr(0, 64));
  net::FrameHeader data;
  data.type = static_cast<uint8_t>(net::FrameType::kFirstUserType);
  data.length = 16;
  std::string before_hello(net::kFrameHeaderSize, '\0');
  net::EncodeFrameHeader(data, before_hello.data());
  inputs.emplace_back("a data frame before the hello", before_hello + std::string(16, 'd'));
  return inputs;
}

// Frames a client that passed the handshake may send but a data server must refuse, each on a
// connection of its own: [what, frame type, payload].
struct BadFrame {
  std::string what;
  uint8_t type;
  std::string payload;
};
std::vector<BadFrame> BadFramesAfterHandshake() {
  return {
      {"a control frame that is not a FlatBuffer", netshuffle::kControlFrame,
       std::string("definitely not a Control table")},
      {"a data frame sent to the producer", netshuffle::kBufferFrame, std::string(100, 'b')},
      {"a frame of an unknown type", static_cast<uint8_t>(netshuffle::kBufferFrame + 40),
       std::string(8, 'u')},
  };
}

// Records how a client connection ended.
class CloseWatcher final : public net::ConnectionHandler {
 public:
  void OnFrame(net::Connection&, const net::FrameHeader&, Buffer) override {}
  void OnClosed(net::Connection&, const absl::Status&) override { closed_.Notify(); }
  bool WaitClosed(absl::Duration timeout) {
    return closed_.WaitForNotificationWithTimeout(timeout);
  }

 private:
  Notification closed_;
};

TEST_P(NetShuffleProcessTest, GarbageAtTheDataPortIsClosedAndTheServerKeepsServing) {
  Shape shape;
  shape.partitions = 1;
  shape.subpartitions = 3;
  shape.records = 800;
  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {}, &producer));
  for (const auto& [what, bytes] : GarbageInputs()) {
    SCOPED_TRACE(what);
    const int fd = ConnectRaw(producer.address);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(ServerClosesAfter(fd, bytes, absl::Seconds(20)))
        << "the data server kept the connection open after " << what;
    close(fd);
  }

  // Past the handshake, through a transport of this process.
  BufferPoolOptions pool_options;
  pool_options.segment_size = kPeerSegmentSize;
  pool_options.num_segments = 64;
  pool_options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(pool_options);
  ASSERT_TRUE(pool.ok()) << pool.status();
  net::TransportOptions transport_options;
  transport_options.pool = pool->get();
  transport_options.name = "stranger";
  absl::StatusOr<std::unique_ptr<net::Transport>> stranger =
      net::Transport::Create(transport(), transport_options);
  ASSERT_TRUE(stranger.ok()) << stranger.status();
  for (const BadFrame& bad : BadFramesAfterHandshake()) {
    SCOPED_TRACE(bad.what);
    net::ConnectOptions connect;
    connect.port =
        static_cast<uint16_t>(std::stoi(producer.address.substr(producer.address.rfind(':') + 1)));
    auto watcher = std::make_shared<CloseWatcher>();
    absl::StatusOr<std::shared_ptr<net::Connection>> c = (*stranger)->Connect(connect, watcher);
    ASSERT_TRUE(c.ok()) << c.status();
    net::FrameHeader header;
    header.type = bad.type;
    const absl::Status sent = (*c)->Send(header, Buffer::CopyOf(bad.payload));
    ASSERT_TRUE(sent.ok()) << sent;
    EXPECT_TRUE(watcher->WaitClosed(absl::Seconds(20)))
        << "the data server kept the connection open after " << bad.what;
    (*c)->Close();
  }
  stranger->reset();

  EXPECT_TRUE(producer.process->Running());
  std::unique_ptr<ChildProcess> consumer;
  ASSERT_NO_FATAL_FAILURE(StartConsumer(shape, producer.address, &consumer));
  ExpectExactReport(*consumer, shape);
  ExpectProducerFinishes(producer);
}

// ---------------------------------------------------------------- start-up order

// The consumer asks before the producer has created its partitions: it keeps asking (within
// shuffle.partition-request-timeout, 10 s by default) and gets everything.
TEST_P(NetShuffleProcessTest, ConsumerThatAsksBeforeThePartitionsExistGetsEverything) {
  Shape shape;
  shape.partitioner = PartitionerKind::kRescale;
  // The producer creates its partitions a second after its server is up. The gate below asks at
  // once; a second leaves room for a slow machine without making the test vacuous.
  Producer producer;
  ASSERT_NO_FATAL_FAILURE(StartProducer(shape, {"--delay-ms", "1000"}, &producer));
  std::unique_ptr<PeerWorker> worker;
  ASSERT_NO_FATAL_FAILURE(StartLocalConsumer({}, &worker));
  std::unique_ptr<InputGate> gate;
  ASSERT_NO_FATAL_FAILURE(OpenGate(*worker, shape, producer.address, &gate));
  EXPECT_FALSE(producer.process->HasLine("CREATED"))
      << "the partitions existed before the consumer asked: the test checked nothing";
  Digests got;
  const absl::Status s = DrainGate(*gate, kItemWait, &got);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(producer.process->HasLine("CREATED"));
  EXPECT_EQ(got, ExpectedDigests(shape));
  gate.reset();
  ExpectProducerFinishes(producer);
}

INSTANTIATE_TEST_SUITE_P(Transports, NetShuffleProcessTest, ::testing::Values("uring", "epoll"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace sluice::integration
