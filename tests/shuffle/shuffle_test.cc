// The shuffle core through the `local` service: exact, ordered delivery under every partitioner
// with records from 0 bytes to 3 segments, flow control and back-pressure, events and priority
// events, barrier alignment, cancellation and failure, and the service registry.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/checksum.h"
#include "shuffle/alignment.h"
#include "shuffle/local_shuffle.h"
#include "tests/shuffle/partitioner_test_util.h"
#include "tests/shuffle/shuffle_test_util.h"

namespace sluice {
namespace {

using ::sluice::testing::ExpectedChannels;
using ::sluice::testing::kTestSegmentSize;
using ::sluice::testing::ShuffleHarness;
using ::sluice::testing::SpecFor;
using ::testing::HasSubstr;

// What a channel delivered: records as (size, crc) and events as their text, in order.
using Stream = std::vector<std::string>;

std::string RecordEntry(std::string_view r) {
  return absl::StrFormat("r%d:%08x", r.size(), Crc32c(0, r.data(), r.size()));
}
std::string EventEntry(const Event& e) { return "e:" + e.ToString(); }

// Reads the gate to its end on the calling thread; fails the test on an error.
std::map<uint32_t, Stream> Drain(InputGate& gate, absl::Status* error = nullptr) {
  std::map<uint32_t, Stream> out;
  InputItem item;
  while (true) {
    absl::Status s = gate.WaitNext(&item, absl::Seconds(60));
    if (!s.ok()) {
      if (error != nullptr) {
        *error = s;
      } else {
        ADD_FAILURE() << s;
      }
      return out;
    }
    if (item.kind == InputItem::Kind::kEnd) return out;
    if (item.kind == InputItem::Kind::kNone) {
      ADD_FAILURE() << "nothing arrived for 60 s";
      return out;
    }
    if (item.kind == InputItem::Kind::kRecord) {
      out[item.channel].push_back(RecordEntry(item.record));
    } else {
      out[item.channel].push_back(EventEntry(*item.event));
    }
  }
}

// Every segment comes back. A flush tick that is running on the timer thread holds the
// partition for a moment, so the last one may arrive just after the test let go of it.
void ExpectPoolRefills(ShuffleHarness& h) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (h.pool().available_segments() != h.idle_segments() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(h.pool().available_segments(), h.idle_segments());
}

// Waits until a priority event has reached the gate (at once in-process; over a connection it
// follows the buffers that were on their way).
void WaitForPriorityEvent(const InputGate& gate) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!gate.priority_event_pending() && absl::Now() < deadline) {
    absl::SleepFor(absl::Microseconds(100));
  }
  ASSERT_TRUE(gate.priority_event_pending());
}

std::string RandomRecord(std::mt19937_64& rng) {
  const int bucket = static_cast<int>(rng() % 20);
  size_t size = 0;
  if (bucket < 8) {
    size = rng() % 16;  // includes empty records
  } else if (bucket < 14) {
    size = rng() % 200;
  } else if (bucket < 18) {
    size = rng() % kTestSegmentSize;
  } else {
    size = rng() % (3 * kTestSegmentSize + 1);  // up to three segments
  }
  std::string r(size, '\0');
  for (char& c : r) c = static_cast<char>(rng());
  return r;
}

class PartitionerTest : public ::testing::TestWithParam<std::tuple<PartitionerKind, int64_t>> {};

TEST_P(PartitionerTest, ExactOrderedDeliveryWithRecordsUpToThreeSegments) {
  const auto [kind, timeout_ms] = GetParam();
  ShuffleHarness h(1024);
  const uint32_t n = kind == PartitionerKind::kForward ? 1 : 4;
  const ShuffleDescriptor d = h.Register(1, 0, n);
  // A pool just above the minimum: the writer waits for the consumer all the time.
  std::shared_ptr<ResultPartition> p = h.Produce(d, timeout_ms, n + 3);
  ASSERT_NE(p, nullptr);
  std::unique_ptr<InputGate> gate = h.GateOver(d);
  ASSERT_NE(gate, nullptr);

  std::map<uint32_t, Stream> expected;
  constexpr int kRecords = 600;
  std::thread writer([&] {
    auto w = RecordWriter::Create(p, SpecFor(kind));
    ASSERT_TRUE(w.ok()) << w.status();
    std::mt19937_64 rng(static_cast<uint64_t>(kind) * 31 + static_cast<uint64_t>(timeout_ms + 1));
    for (uint64_t seq = 0; seq < kRecords; ++seq) {
      const std::string record = RandomRecord(rng);
      const std::string key = absl::StrFormat("key-%d", rng() % 1000);
      for (uint32_t c : ExpectedChannels(kind, seq, key, n)) {
        expected[c].push_back(RecordEntry(record));
      }
      SLUICE_ASSERT_OK(w->Emit(record, key));
    }
    SLUICE_ASSERT_OK(w->Finish());
  });
  std::map<uint32_t, Stream> got = Drain(*gate);
  writer.join();
  for (uint32_t c = 0; c < n; ++c) expected[c].push_back(EventEntry(Event::EndOfPartition()));
  ASSERT_EQ(got.size(), expected.size());
  size_t total = 0;
  for (uint32_t c = 0; c < n; ++c) {
    ASSERT_EQ(got[c].size(), expected[c].size()) << "channel " << c;
    EXPECT_EQ(got[c], expected[c]) << "channel " << c;
    total += got[c].size() - 1;
  }
  EXPECT_EQ(total, kind == PartitionerKind::kBroadcast ? size_t{kRecords} * n : size_t{kRecords});
  gate.reset();
  p.reset();
  h.env().ReleasePartition(d.partition, absl::OkStatus());
  ExpectPoolRefills(h);
}

INSTANTIATE_TEST_SUITE_P(
    AllPartitioners, PartitionerTest,
    ::testing::Combine(::testing::Values(PartitionerKind::kForward, PartitionerKind::kRoundRobin,
                                         PartitionerKind::kRescale, PartitionerKind::kHash,
                                         PartitionerKind::kBroadcast, PartitionerKind::kCustom),
                       ::testing::Values(-1, 0, 2)),
    [](const auto& param_info) {
      std::string name(PartitionerName(std::get<0>(param_info.param)));
      std::erase(name, '-');
      const int64_t timeout = std::get<1>(param_info.param);
      return name + (timeout < 0    ? "_FullBuffersOnly"
                     : timeout == 0 ? "_FlushEveryRecord"
                                    : "_Timer2ms");
    });

TEST(RecordWriterTest, ChecksItsPartitioner) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 3);
  auto p = h.Produce(d);
  auto forward = RecordWriter::Create(p, PartitionerSpec::Forward());
  ASSERT_FALSE(forward.ok());
  EXPECT_THAT(std::string(forward.status().message()), HasSubstr("exactly one subpartition"));
  auto hash = RecordWriter::Create(p, PartitionerSpec::Hash(2));
  ASSERT_FALSE(hash.ok());
  EXPECT_THAT(std::string(hash.status().message()), HasSubstr("max parallelism 2"));
  auto custom = RecordWriter::Create(p, PartitionerSpec::Custom(nullptr));
  EXPECT_FALSE(custom.ok());
}

TEST(RecordWriterTest, InPlaceSerializationMatchesCopiedRecords) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 2);
  auto p = h.Produce(d);
  auto gate = h.GateOver(d);
  auto rr = RecordWriter::Create(p, PartitionerSpec::RoundRobin()).value();
  std::map<uint32_t, Stream> expected;
  uint32_t channel = 0;
  // Small, multi-byte-length and spanning sizes, written in place.
  for (size_t size : {0, 1, 8, 127, 128, 300, 4095, 4096, 10000, 8}) {
    std::string record(size, '\0');
    for (size_t i = 0; i < size; ++i) record[i] = static_cast<char>(i * 13 + size);
    expected[channel].push_back(RecordEntry(record));
    channel ^= 1;
    SLUICE_ASSERT_OK(rr.EmitWith(size, [&](char* dst) { std::memcpy(dst, record.data(), size); }));
  }
  // Broadcast goes through the writer's scratch area.
  auto all = RecordWriter::Create(p, PartitionerSpec::Broadcast()).value();
  SLUICE_ASSERT_OK(all.EmitWith(3, [](char* dst) { std::memcpy(dst, "all", 3); }));
  for (uint32_t c = 0; c < 2; ++c) {
    expected[c].push_back(RecordEntry("all"));
    expected[c].push_back(EventEntry(Event::EndOfPartition()));
  }
  SLUICE_ASSERT_OK(p->Finish());
  EXPECT_EQ(Drain(*gate), expected);
}

TEST(ResultPartitionTest, RecordAboveTheMaximumIsRefusedWithBothSizes) {
  ShuffleConfig config = testing::TestShuffleConfig();
  config.max_record_size = 10000;
  ShuffleHarness h(512, config);
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto p = h.Produce(d);
  auto gate = h.GateOver(d);
  absl::Status s = p->EmitRecord(0, std::string(10001, 'x'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  absl::Status in_place =
      p->EmitRecordWith(0, 10001, [](char* dst) { std::memset(dst, 0, 10001); });
  EXPECT_EQ(in_place.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("10001"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("10000"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("shuffle.max-record-size"));
  // Exactly the maximum spans three segments and arrives whole.
  const std::string big(10000, 'y');
  SLUICE_ASSERT_OK(p->EmitRecord(0, big));
  SLUICE_ASSERT_OK(p->Finish());
  std::map<uint32_t, Stream> got = Drain(*gate);
  ASSERT_EQ(got[0].size(), 2u);
  EXPECT_EQ(got[0][0], RecordEntry(big));
}

TEST(ResultPartitionTest, EventsKeepTheirPlaceAmongRecords) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto p = h.Produce(d);
  auto gate = h.GateOver(d);
  Stream expected;
  for (int i = 0; i < 100; ++i) {
    const std::string r = absl::StrFormat("record %d", i);
    SLUICE_ASSERT_OK(p->EmitRecord(0, r));
    expected.push_back(RecordEntry(r));
    if (i % 25 == 24) {
      const Event e =
          i == 49 ? Event::Watermark(i) : Event::User(7, absl::StrFormat("after %d", i));
      SLUICE_ASSERT_OK(p->EmitEvent(0, e));
      expected.push_back(EventEntry(e));
    }
  }
  const Event barrier = Event::Barrier(CheckpointBarrier{3, 1234, 0});
  SLUICE_ASSERT_OK(p->BroadcastEvent(barrier));
  expected.push_back(EventEntry(barrier));
  SLUICE_ASSERT_OK(p->Finish());
  expected.push_back(EventEntry(Event::EndOfPartition()));
  EXPECT_EQ(Drain(*gate)[0], expected);
}

TEST(ResultPartitionTest, PriorityEventOvertakesQueuedBuffers) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto p = h.Produce(d, -1, 64);
  auto gate = h.GateOver(d);
  // Twenty full buffers wait: some in the channel (its credit), the rest in the subpartition.
  const std::string r(1000, 'r');
  for (int i = 0; i < 80; ++i) SLUICE_ASSERT_OK(p->EmitRecord(0, r));
  p->FlushAll();
  EXPECT_GT(p->backlog(0), 0u);
  const Event barrier = Event::Barrier(CheckpointBarrier{9, 1, kBarrierUnaligned});
  SLUICE_ASSERT_OK(p->BroadcastEvent(barrier, /*priority=*/true));
  WaitForPriorityEvent(*gate);
  InputItem item;
  SLUICE_ASSERT_OK(gate->PollNext(&item));
  ASSERT_EQ(item.kind, InputItem::Kind::kEvent);
  EXPECT_EQ(*item.event, barrier);
  for (int i = 0; i < 80; ++i) {
    SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord) << i;
  }
}

TEST(ResultPartitionTest, PriorityEventOvertakesTheBufferBeingRead) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto p = h.Produce(d);
  auto gate = h.GateOver(d);
  for (int i = 0; i < 10; ++i) SLUICE_ASSERT_OK(p->EmitRecord(0, absl::StrFormat("r%d", i)));
  p->Flush(0);
  InputItem item;
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "r0");
  const Event barrier = Event::Barrier(CheckpointBarrier{1, 1, kBarrierUnaligned});
  SLUICE_ASSERT_OK(p->BroadcastEvent(barrier, true));
  WaitForPriorityEvent(*gate);
  SLUICE_ASSERT_OK(gate->PollNext(&item));
  ASSERT_EQ(item.kind, InputItem::Kind::kEvent);
  EXPECT_EQ(*item.event, barrier);
  for (int i = 1; i < 10; ++i) {
    SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
    EXPECT_EQ(item.record, absl::StrFormat("r%d", i));
  }
}

TEST(ResultPartitionTest, FlushTimerMakesWrittenRecordsReadable) {
  ShuffleHarness h;
  const ShuffleDescriptor timed = h.Register(1, 0, 1);
  auto p = h.Produce(timed, /*buffer_timeout_ms=*/5);
  auto gate = h.GateOver(timed);
  SLUICE_ASSERT_OK(p->EmitRecord(0, "lonely"));
  InputItem item;
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "lonely");
  // The writer keeps writing behind the flushed slice, in the same segment.
  SLUICE_ASSERT_OK(p->EmitRecord(0, "second"));
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "second");
}

TEST(ResultPartitionTest, WithoutTimeoutOnlyFullBuffersAndFlushesAreReadable) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto p = h.Produce(d, /*buffer_timeout_ms=*/-1);
  auto gate = h.GateOver(d);
  SLUICE_ASSERT_OK(p->EmitRecord(0, "waits"));
  InputItem item;
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Milliseconds(30)));
  EXPECT_EQ(item.kind, InputItem::Kind::kNone);
  p->FlushAll();
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "waits");
}

TEST(FlowControlTest, SlowConsumerStallsOnlyItsWriter) {
  ShuffleHarness h(256);
  const ShuffleDescriptor da = h.Register(1, 0, 1);
  const ShuffleDescriptor db = h.Register(2, 0, 1);
  auto pa = h.Produce(da, -1, 4);
  auto pb = h.Produce(db, -1, 4);
  auto ga = h.GateOver(da);
  auto gb = h.GateOver(db);
  constexpr int kRecords = 2000;  // ~500 buffers each, through pools of 4
  const std::string r(1000, 'x');
  std::atomic<bool> a_done{false};
  std::thread wa([&] {
    for (int i = 0; i < kRecords; ++i) SLUICE_EXPECT_OK(pa->EmitRecord(0, r));
    SLUICE_EXPECT_OK(pa->Finish());
    a_done = true;
  });
  std::thread wb([&] {
    for (int i = 0; i < kRecords; ++i) SLUICE_EXPECT_OK(pb->EmitRecord(0, r));
    SLUICE_EXPECT_OK(pb->Finish());
  });
  // Only B's consumer reads; B finishes although A is stuck.
  std::map<uint32_t, Stream> got_b = Drain(*gb);
  wb.join();
  EXPECT_EQ(got_b[0].size(), kRecords + 1u);
  EXPECT_FALSE(a_done.load()) << "A's writer finished without anyone reading its partition";
  EXPECT_LE(pa->buffer_pool()->owned_segments(), 4u);
  std::map<uint32_t, Stream> got_a = Drain(*ga);
  wa.join();
  EXPECT_EQ(got_a[0].size(), kRecords + 1u);
  EXPECT_GT(pa->stats().waits_for_buffer, 0u);
}

TEST(FlowControlTest, BlockedChannelDoesNotStopTheOthersInItsGate) {
  ShuffleHarness h(256);
  const ShuffleDescriptor d1 = h.Register(1, 0, 1);
  const ShuffleDescriptor d2 = h.Register(2, 0, 1);
  auto p1 = h.Produce(d1, -1, 4);
  auto p2 = h.Produce(d2, -1, 4);
  auto gate = h.Gate("two", {{d1, 0}, {d2, 0}});
  gate->BlockChannel(0);
  constexpr int kRecords = 2000;
  const std::string r(1000, 'x');
  std::atomic<bool> one_done{false};
  std::thread w1([&] {
    for (int i = 0; i < kRecords; ++i) SLUICE_EXPECT_OK(p1->EmitRecord(0, r));
    SLUICE_EXPECT_OK(p1->Finish());
    one_done = true;
  });
  std::thread w2([&] {
    for (int i = 0; i < kRecords; ++i) SLUICE_EXPECT_OK(p2->EmitRecord(0, r));
    SLUICE_EXPECT_OK(p2->Finish());
  });
  InputItem item;
  int from_two = 0;
  bool two_ended = false;
  while (!two_ended) {
    SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(60)));
    ASSERT_NE(item.kind, InputItem::Kind::kNone) << "channel 1 stopped flowing";
    ASSERT_EQ(item.channel, 1u) << "a blocked channel delivered";
    if (item.kind == InputItem::Kind::kRecord) ++from_two;
    if (item.kind == InputItem::Kind::kEvent) two_ended = true;
  }
  w2.join();
  EXPECT_EQ(from_two, kRecords);
  EXPECT_FALSE(one_done.load());
  gate->ResumeChannel(0);
  std::map<uint32_t, Stream> rest = Drain(*gate);
  w1.join();
  EXPECT_EQ(rest[0].size(), kRecords + 1u);
}

TEST(FlowControlTest, FloatingCreditsFollowTheBacklogAndComeBack) {
  ShuffleHarness h(512);
  const ShuffleDescriptor d = h.Register(1, 0, 2);
  auto p = h.Produce(d, -1, 64);
  InputGateOptions options;
  options.exclusive_buffers_per_channel = 2;
  options.floating_buffers_per_gate = 8;
  auto gate = h.GateOver(d, options);
  const std::string r(1022, 'x');  // with its 2-byte length, four fill a segment exactly
  for (int i = 0; i < 4 * 30; ++i) SLUICE_ASSERT_OK(p->EmitRecord(0, r));  // 30 full buffers
  // In-process this is immediate; over a connection, the buffers and credits take a moment.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (gate->channel(0).stats().held < 10 && absl::Now() < deadline) {
    absl::SleepFor(absl::Microseconds(100));
  }
  ChannelStats s = gate->channel(0).stats();
  EXPECT_EQ(s.exclusive, 2u);
  // The channel took what its credit allowed and asked for floating credit for the backlog.
  EXPECT_EQ(s.held, s.exclusive + s.floating);
  EXPECT_EQ(s.floating, 8u);
  EXPECT_EQ(gate->floating_credits().available(), 0u);
  EXPECT_EQ(p->backlog(0), 30u - s.held);
  EXPECT_EQ(gate->channel(1).stats().floating, 0u);
  SLUICE_ASSERT_OK(p->Finish());
  std::map<uint32_t, Stream> got = Drain(*gate);
  EXPECT_EQ(got[0].size(), 4u * 30 + 1);
  EXPECT_EQ(gate->floating_credits().available(), 8u);
}

TEST(FlowControlTest, CancelInTheMiddleGivesBackEveryBuffer) {
  ShuffleHarness h(256);
  const ShuffleDescriptor d = h.Register(1, 0, 4);
  auto p = h.Produce(d, 1);
  auto gate = h.GateOver(d);
  std::atomic<bool> stop{false};
  absl::Status writer_error;
  std::thread writer([&] {
    auto w = RecordWriter::Create(p, PartitionerSpec::RoundRobin()).value();
    std::mt19937_64 rng(5);
    while (!stop.load()) {
      absl::Status s = w.Emit(RandomRecord(rng));
      if (!s.ok()) {
        writer_error = s;
        return;
      }
    }
  });
  InputItem item;
  for (int i = 0; i < 500; ++i) {
    SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(60)));
    ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  }
  gate->Close();
  h.env().ReleasePartition(d.partition, absl::CancelledError("job cancelled"));
  writer.join();
  EXPECT_THAT(std::string(writer_error.message()), HasSubstr("job cancelled"));
  stop = true;
  p->CloseWriter();
  EXPECT_EQ(p->buffer_pool()->in_use_segments(), 0u);
  gate.reset();
  p.reset();
  ExpectPoolRefills(h);
}

TEST(FailureTest, ProducerFailureReachesTheConsumerWithItsCause) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 2);
  auto p = h.Produce(d, 0);
  auto gate = h.GateOver(d);
  SLUICE_ASSERT_OK(p->EmitRecord(0, "before"));
  InputItem item;
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  EXPECT_EQ(item.record, "before");
  p->Fail(absl::InternalError("disk on fire"));
  absl::Status s = gate->WaitNext(&item, absl::Seconds(30));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("disk on fire"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(d.partition.ToString()));
  // The failure sticks, and the producer sees it too.
  EXPECT_FALSE(gate->PollNext(&item).ok());
  EXPECT_THAT(std::string(p->EmitEvent(0, Event::Watermark(1)).message()),
              HasSubstr("disk on fire"));
  gate.reset();
  p.reset();
  h.env().ReleasePartition(d.partition, absl::OkStatus());
  ExpectPoolRefills(h);
}

TEST(ServiceTest, ConsumerMayAskBeforeTheProducerExists) {
  ShuffleHarness h;
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto gate = h.GateOver(d);
  InputItem item;
  SLUICE_ASSERT_OK(gate->PollNext(&item));
  EXPECT_EQ(item.kind, InputItem::Kind::kNone);
  auto p = h.Produce(d, 0);
  SLUICE_ASSERT_OK(p->EmitRecord(0, "late"));
  SLUICE_ASSERT_OK(gate->WaitNext(&item, absl::Seconds(30)));
  ASSERT_EQ(item.kind, InputItem::Kind::kRecord);
  EXPECT_EQ(item.record, "late");
}

TEST(ServiceTest, PartitionNeverProducedFailsAfterTheRequestTimeout) {
  ShuffleConfig config = testing::TestShuffleConfig();
  config.partition_request_timeout = absl::Milliseconds(50);
  ShuffleHarness h(128, config);
  const ShuffleDescriptor d = h.Register(1, 0, 1);
  auto gate = h.GateOver(d);
  InputItem item;
  absl::Status s = gate->WaitNext(&item, absl::Seconds(30));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("shuffle.partition-request-timeout"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(d.partition.ToString()));
}

TEST(ServiceTest, UnknownServiceAndOptionsAreNamed) {
  auto f = ShuffleServiceRegistry::Find("carrier-pigeon");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("carrier-pigeon"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("local"));
  Config c;
  c.Set("shuffle.service", "carrier-pigeon");
  EXPECT_FALSE(ShuffleConfig::FromConfig(c).ok());
  Config typo;
  typo.Set("shuffle.exclusive-buffers", "4");
  auto t = ShuffleConfig::FromConfig(typo);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("shuffle.exclusive-buffers"));
  Config bad;
  bad.Set("shuffle.buffer-timeout-ms", "soon");
  auto b = ShuffleConfig::FromConfig(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("shuffle.buffer-timeout-ms"));
  Config good;
  good.Set("shuffle.service", "local");
  good.Set("shuffle.floating-buffers-per-gate", "16");
  good.Set("shuffle.max-record-size", "8m");
  auto g = ShuffleConfig::FromConfig(good);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->floating_buffers_per_gate, 16u);
  EXPECT_EQ(g->max_record_size, 8u << 20);
}

// A service added from outside the shuffle library: registering a name is all it takes.
class NullShuffleFactory final : public ShuffleServiceFactory {
 public:
  explicit NullShuffleFactory(std::string name) : name_(std::move(name)) {}
  std::string_view name() const override { return name_; }
  absl::StatusOr<std::unique_ptr<ShuffleMaster>> CreateMaster(const ShuffleConfig&) override {
    return absl::UnimplementedError("null-test has no master");
  }
  absl::StatusOr<std::unique_ptr<ShuffleEnvironment>> CreateEnvironment(
      const ShuffleConfig&, const ShuffleEnvironmentContext&) override {
    return absl::UnimplementedError("null-test has no environment");
  }

 private:
  std::string name_;
};

TEST(ServiceTest, ServicesRegisterByName) {
  // A fresh name per run: the registry lives as long as the process (--gtest_repeat).
  static int run = 0;
  const std::string name = absl::StrFormat("null-test-%d", run++);
  SLUICE_ASSERT_OK(ShuffleServiceRegistry::Register(std::make_unique<NullShuffleFactory>(name)));
  EXPECT_EQ(ShuffleServiceRegistry::Register(std::make_unique<NullShuffleFactory>(name)).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ShuffleServiceRegistry::Register(std::make_unique<NullShuffleFactory>("local")).code(),
            absl::StatusCode::kAlreadyExists);
  Config c;
  c.Set("shuffle.service", name);
  auto config = ShuffleConfig::FromConfig(c);
  ASSERT_TRUE(config.ok()) << config.status();
  auto master = CreateShuffleMaster(*config);
  ASSERT_FALSE(master.ok());
  EXPECT_THAT(std::string(master.status().message()), HasSubstr("null-test has no master"));
}

TEST(ServiceTest, DescriptorRoundTripsAndRejectsGarbage) {
  ShuffleDescriptor d;
  d.service = "local";
  d.partition = PartitionId{0xabcdef, 7};
  d.num_subpartitions = 12;
  d.producer_worker = "worker-3";
  d.producer_address = "10.0.0.3:7100";
  d.connection_index = 2;
  auto parsed = ShuffleDescriptor::Parse(d.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, d);
  EXPECT_FALSE(ShuffleDescriptor::Parse("not a flatbuffer at all").ok());
  EXPECT_FALSE(ShuffleDescriptor::Parse("").ok());
}

TEST(ServiceTest, LocalServiceRefusesOtherWorkersPartitions) {
  if (testing::TestingNetShuffle()) GTEST_SKIP() << "a property of the local service";
  ShuffleHarness h;
  ShuffleDescriptor d =
      h.master().RegisterPartition(PartitionId{1, 0}, 1, ProducerLocation{"worker-9", ""}).value();
  auto gate = h.env().CreateInputGate("g", {InputChannelSpec{d, 0}}, InputGateOptions());
  ASSERT_FALSE(gate.ok());
  EXPECT_THAT(std::string(gate.status().message()), HasSubstr("worker-9"));
  EXPECT_THAT(std::string(gate.status().message()), HasSubstr("shuffle.service = net"));
}

TEST(UnionInputGateTest, ReadsEveryGateToItsEnd) {
  ShuffleHarness h;
  const ShuffleDescriptor d1 = h.Register(1, 0, 2);
  const ShuffleDescriptor d2 = h.Register(2, 0, 3);
  auto p1 = h.Produce(d1, 1);
  auto p2 = h.Produce(d2, 1);
  auto g1 = h.GateOver(d1);
  auto g2 = h.GateOver(d2);
  UnionInputGate u({g1.get(), g2.get()});
  EXPECT_EQ(u.num_channels(), 5u);
  std::thread w([&] {
    for (int i = 0; i < 3000; ++i) {
      SLUICE_EXPECT_OK(p1->EmitRecord(i % 2, absl::StrFormat("a%d", i)));
      SLUICE_EXPECT_OK(p2->EmitRecord(i % 3, absl::StrFormat("b%d", i)));
    }
    SLUICE_EXPECT_OK(p1->Finish());
    SLUICE_EXPECT_OK(p2->Finish());
  });
  std::vector<int> per_channel(5, 0);
  std::vector<int> last(5, -1);
  InputItem item;
  while (true) {
    SLUICE_ASSERT_OK(u.WaitNext(&item, absl::Seconds(60)));
    ASSERT_NE(item.kind, InputItem::Kind::kNone);
    if (item.kind == InputItem::Kind::kEnd) break;
    if (item.kind != InputItem::Kind::kRecord) continue;
    ASSERT_LT(item.channel, 5u);
    EXPECT_EQ(item.gate, item.channel < 2 ? 0u : 1u);
    EXPECT_EQ(item.record[0], item.gate == 0 ? 'a' : 'b');
    const int seq = std::stoi(std::string(item.record.substr(1)));
    EXPECT_GT(seq, last[item.channel]) << "order broken on channel " << item.channel;
    last[item.channel] = seq;
    ++per_channel[item.channel];
  }
  w.join();
  EXPECT_EQ(per_channel, (std::vector<int>{1500, 1500, 1000, 1000, 1000}));
}

TEST(AlignmentTest, BarrierBlocksAChannelUntilEveryChannelDeliveredIt) {
  // The aligner is independent of the service; this test relies on synchronous delivery.
  if (testing::TestingNetShuffle()) GTEST_SKIP() << "relies on synchronous in-process delivery";
  ShuffleHarness h;
  std::vector<ShuffleDescriptor> ds;
  std::vector<std::shared_ptr<ResultPartition>> ps;
  std::vector<std::pair<ShuffleDescriptor, uint32_t>> in;
  for (uint64_t i = 0; i < 3; ++i) {
    ds.push_back(h.Register(i + 1, 0, 1));
    ps.push_back(h.Produce(ds.back(), 0));
    in.emplace_back(ds.back(), 0);
  }
  auto gate = h.Gate("aligned", in);
  BarrierAligner aligner(gate.get());
  const CheckpointBarrier barrier{1, 100, 0};
  // Everything below is delivered synchronously in-process: when a producer call returns, the
  // consumer can already see what it wrote.
  std::vector<std::string> seen;
  auto read_until_none = [&]() -> BarrierAligner::Outcome {
    BarrierAligner::Outcome last = BarrierAligner::Outcome::kIgnored;
    InputItem item;
    while (true) {
      EXPECT_TRUE(gate->PollNext(&item).ok());
      if (item.kind == InputItem::Kind::kNone) return last;
      if (item.kind == InputItem::Kind::kRecord) {
        seen.emplace_back(item.record);
      } else if (item.kind == InputItem::Kind::kEvent &&
                 item.event->type == EventType::kCheckpointBarrier) {
        last = aligner.OnBarrier(item.channel, item.event->barrier).outcome;
        seen.push_back(absl::StrFormat("B%d", item.channel));
      }
    }
  };
  SLUICE_ASSERT_OK(ps[0]->EmitRecord(0, "a0"));
  SLUICE_ASSERT_OK(ps[0]->BroadcastEvent(Event::Barrier(barrier)));
  SLUICE_ASSERT_OK(ps[0]->EmitRecord(0, "a1"));
  EXPECT_EQ(read_until_none(), BarrierAligner::Outcome::kStarted);
  EXPECT_TRUE(gate->channel_blocked(0));
  SLUICE_ASSERT_OK(ps[1]->EmitRecord(0, "b0"));
  SLUICE_ASSERT_OK(ps[1]->BroadcastEvent(Event::Barrier(barrier)));
  SLUICE_ASSERT_OK(ps[1]->EmitRecord(0, "b1"));
  SLUICE_ASSERT_OK(ps[2]->EmitRecord(0, "c0"));
  EXPECT_EQ(read_until_none(), BarrierAligner::Outcome::kPending);
  // Channels interleave, each in its own order; nothing behind a delivered barrier shows.
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0], "a0");
  EXPECT_EQ(seen[1], "B0");
  EXPECT_LT(std::find(seen.begin(), seen.end(), "b0"), std::find(seen.begin(), seen.end(), "B1"));
  std::vector<std::string> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{"B0", "B1", "a0", "b0", "c0"}));
  SLUICE_ASSERT_OK(ps[2]->BroadcastEvent(Event::Barrier(barrier)));
  SLUICE_ASSERT_OK(ps[2]->EmitRecord(0, "c1"));
  EXPECT_EQ(read_until_none(), BarrierAligner::Outcome::kCompleted);
  EXPECT_FALSE(gate->channel_blocked(0));
  ASSERT_EQ(seen.size(), 9u);
  EXPECT_EQ(seen[5], "B2");
  std::vector<std::string> after(seen.begin() + 6, seen.end());
  std::sort(after.begin(), after.end());
  EXPECT_EQ(after, (std::vector<std::string>{"a1", "b1", "c1"}));
}

// Random shapes, sizes, timeouts, pools, events and consumer pauses; the streams must arrive
// exactly, channel by channel.
TEST(RandomizedTest, InterleavingsDeliverExactly) {
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(absl::StrFormat("seed %d", seed));
    std::mt19937_64 rng(seed);
    ShuffleHarness h(2048);
    const int writers = 1 + static_cast<int>(rng() % 3);
    std::vector<ShuffleDescriptor> ds;
    std::vector<std::shared_ptr<ResultPartition>> ps;
    std::vector<std::unique_ptr<InputGate>> gates;
    std::vector<InputGate*> raw;
    for (int w = 0; w < writers; ++w) {
      const uint32_t subs = 1 + static_cast<uint32_t>(rng() % 5);
      const int64_t timeouts[] = {-1, 0, 1, 3};
      ds.push_back(h.Register(static_cast<uint64_t>(w) + 1, 0, subs));
      ps.push_back(h.Produce(ds.back(), timeouts[rng() % 4], subs + 1 + rng() % 6));
      InputGateOptions o;
      o.exclusive_buffers_per_channel = 1 + static_cast<uint32_t>(rng() % 3);
      o.floating_buffers_per_gate = static_cast<uint32_t>(rng() % 4);
      gates.push_back(h.GateOver(ds.back(), o));
      raw.push_back(gates.back().get());
    }
    UnionInputGate u(raw);
    std::vector<std::map<uint32_t, Stream>> expected(writers);
    std::vector<std::thread> threads;
    for (int w = 0; w < writers; ++w) {
      threads.emplace_back([&, w, wseed = rng()] {
        std::mt19937_64 r(wseed);
        ResultPartition& p = *ps[w];
        const int records = 200 + static_cast<int>(r() % 400);
        for (int i = 0; i < records; ++i) {
          const uint32_t c = static_cast<uint32_t>(r() % p.num_subpartitions());
          const std::string rec = RandomRecord(r);
          expected[w][c].push_back(RecordEntry(rec));
          SLUICE_EXPECT_OK(p.EmitRecord(c, rec));
          if (r() % 50 == 0) {
            const Event e = Event::User(static_cast<uint32_t>(i), "u");
            expected[w][c].push_back(EventEntry(e));
            SLUICE_EXPECT_OK(p.EmitEvent(c, e));
          }
          if (r() % 100 == 0) p.FlushAll();
        }
        SLUICE_EXPECT_OK(p.Finish());
        for (uint32_t c = 0; c < p.num_subpartitions(); ++c) {
          expected[w][c].push_back(EventEntry(Event::EndOfPartition()));
        }
      });
    }
    std::vector<std::map<uint32_t, Stream>> got(writers);
    std::vector<uint32_t> offsets;
    uint32_t off = 0;
    for (auto* g : raw) {
      offsets.push_back(off);
      off += g->num_channels();
    }
    InputItem item;
    while (true) {
      // Half the time, take what lies in the current buffer in a batch first.
      if (rng() % 2 == 0) {
        u.PollRecords(
            [&](uint32_t channel, std::string_view record) {
              uint32_t g = 0;
              while (g + 1 < offsets.size() && offsets[g + 1] <= channel) ++g;
              got[g][channel - offsets[g]].push_back(RecordEntry(record));
            },
            1 + rng() % 64);
      }
      absl::Status s = u.WaitNext(&item, absl::Seconds(60));
      ASSERT_TRUE(s.ok()) << s;
      ASSERT_NE(item.kind, InputItem::Kind::kNone) << "stalled";
      if (item.kind == InputItem::Kind::kEnd) break;
      const uint32_t local = item.channel - offsets[item.gate];
      got[item.gate][local].push_back(item.kind == InputItem::Kind::kRecord
                                          ? RecordEntry(item.record)
                                          : EventEntry(*item.event));
      if (rng() % 200 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    }
    for (auto& t : threads) t.join();
    for (int w = 0; w < writers; ++w) EXPECT_EQ(got[w], expected[w]) << "writer " << w;
    gates.clear();
    ps.clear();
    for (const auto& d : ds) h.env().ReleasePartition(d.partition, absl::OkStatus());
    ExpectPoolRefills(h);
  }
}

}  // namespace
}  // namespace sluice
