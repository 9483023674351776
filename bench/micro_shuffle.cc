// Micro-benchmarks for the shuffle layer: writing records into a result partition, reading them
// back out of a buffer, and the two together through a local channel and an input gate. The
// end-to-end figure with many writers and channels is `sluice bench shuffle`; results and goals
// live in docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "base/logging.h"
#include "base/sync.h"
#include "shuffle/input_gate.h"
#include "shuffle/record_format.h"
#include "shuffle/record_writer.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"

namespace sluice {
namespace {

constexpr size_t kSegmentSize = 32 * 1024;

std::unique_ptr<BufferPool> MakePool(benchmark::State& state, size_t segments) {
  BufferPoolOptions options;
  options.segment_size = kSegmentSize;
  options.num_segments = segments;
  options.try_hugepages = false;
  absl::StatusOr<std::unique_ptr<BufferPool>> pool = BufferPool::Create(options);
  if (!pool.ok()) {
    state.SkipWithError(std::string(pool.status().message()).c_str());
    return nullptr;
  }
  return std::move(pool).value();
}

// Subpartitions that have something, for a drain thread to visit. The drain thread polls it
// without sleeping, so that a listener's notification never has to wake a thread (a futex wake,
// an inter-processor interrupt in a VM: microseconds that would be charged to the producer).
class ReadyQueue {
 public:
  void Push(uint32_t index) {
    MutexLock lock(&mu_);
    ready_.push_back(index);
  }
  bool TryPop(uint32_t* index) {
    MutexLock lock(&mu_);
    if (ready_.empty()) return false;
    *index = ready_.front();
    ready_.pop_front();
    return true;
  }

 private:
  Mutex mu_;
  std::deque<uint32_t> ready_ ABSL_GUARDED_BY(mu_);
};

class QueueListener final : public SubpartitionListener {
 public:
  QueueListener(ReadyQueue* queue, uint32_t index) : queue_(queue), index_(index) {}
  void OnDataAvailable(bool /*priority*/) override { queue_->Push(index_); }

 private:
  ReadyQueue* const queue_;
  const uint32_t index_;
};

// ResultPartition::EmitRecord (through a round-robin RecordWriter) of range(0)-byte records into
// range(1) subpartitions, without flushes (buffer timeout -1).
//
// What is measured: the producer's CPU time per record, i.e. the serializer (length prefix and
// copy into the subpartition's current segment) plus the producer's share of buffer turnover
// (handing a full buffer to its subpartition queue, taking a fresh one from the local pool). A
// drain thread stands in for the consumers: it takes each queued buffer from its subpartition
// view and releases it at once without reading it, so that the pool never runs dry for long and
// its own cost stays out of the producer's figure. When the drainer is descheduled the producer
// waits for a buffer; that shows in wall time, not in the CPU time reported. The drainer spins
// rather than sleeps (it owns the second core), so no wake-up is charged to the producer either.
// Records of 128 bytes and more take EmitRecord's slow path (a two-byte length).
void BM_EmitRecord(benchmark::State& state) {
  const size_t record_size = static_cast<size_t>(state.range(0));
  const auto subpartitions = static_cast<uint32_t>(state.range(1));
  const size_t max_buffers = size_t{subpartitions} * 2 + 8;
  auto pool = MakePool(state, max_buffers + 8);
  if (pool == nullptr) return;
  ResultPartitionOptions options;
  options.num_subpartitions = subpartitions;
  options.buffer_timeout_ms = -1;
  options.max_buffers = max_buffers;
  absl::StatusOr<std::shared_ptr<ResultPartition>> partition =
      ResultPartition::Create("bench", options, pool.get(), nullptr);
  if (!partition.ok()) {
    state.SkipWithError(std::string(partition.status().message()).c_str());
    return;
  }
  ReadyQueue ready;
  std::vector<std::unique_ptr<SubpartitionView>> views;
  for (uint32_t i = 0; i < subpartitions; ++i) {
    auto view = (*partition)->CreateView(i, std::make_shared<QueueListener>(&ready, i));
    if (!view.ok()) {
      state.SkipWithError(std::string(view.status().message()).c_str());
      return;
    }
    views.push_back(*std::move(view));
  }
  std::atomic<bool> stop{false};
  std::thread drain([&] {
    uint32_t index = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      if (!ready.TryPop(&index)) {
        std::this_thread::yield();
        continue;
      }
      while (true) {
        auto polled = views[index]->Poll(/*has_credit=*/true);
        if (!polled.ok() || !polled->has_value()) break;
        const bool more = (*polled)->more_available;
        (*polled)->buffer.Release();
        if (!more) break;
      }
    }
  });

  absl::StatusOr<RecordWriter> writer =
      RecordWriter::Create(*partition, PartitionerSpec::RoundRobin());
  std::string record(record_size, '\x5a');
  uint64_t counter = 0;
  absl::Status status;
  for (auto _ : state) {
    std::memcpy(record.data(), &counter, std::min<size_t>(8, record_size));
    ++counter;
    status = writer->Emit(record);
    if (!status.ok()) break;
  }
  stop.store(true);
  drain.join();
  if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
  views.clear();
  (*partition)->Release(absl::CancelledError("benchmark done"));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * record_size));
}
BENCHMARK(BM_EmitRecord)
    ->ArgNames({"bytes", "subpartitions"})
    ->Args({8, 1})
    ->Args({64, 1})
    ->Args({1024, 1})
    ->Args({8, 1000});

// RecordDeserializer over one prepared 32 KiB buffer of range(0)-byte records, every record
// read and its first bytes summed. Records do not span buffers here; that path is the tests'.
void BM_Deserialize(benchmark::State& state) {
  const size_t record_size = static_cast<size_t>(state.range(0));
  Buffer buffer = Buffer::AllocateUnpooled(kSegmentSize);
  std::string record(record_size, '\x5a');
  int64_t per_buffer = 0;
  const size_t framed = VarintLength(static_cast<uint32_t>(record_size)) + record_size;
  while (buffer.writable_bytes() >= framed) {
    std::memcpy(record.data(), &per_buffer, std::min<size_t>(8, record_size));
    char* p = EncodeVarint(buffer.write_ptr(), static_cast<uint32_t>(record_size));
    std::memcpy(p, record.data(), record_size);
    buffer.Commit(framed);
    ++per_buffer;
  }
  RecordDeserializer deserializer(kDefaultMaxRecordSize);
  uint64_t sum = 0;
  int64_t records = 0;
  for (auto _ : state) {
    deserializer.SetBuffer(buffer.Share());
    std::string_view r;
    while (true) {
      absl::StatusOr<bool> next = deserializer.Next(&r);
      if (!next.ok() || !*next) break;
      uint64_t v = 0;
      std::memcpy(&v, r.data(), std::min<size_t>(8, r.size()));
      sum += v;
      ++records;
    }
    deserializer.TakeBuffer().Release();
  }
  benchmark::DoNotOptimize(sum);
  if (records != per_buffer * static_cast<int64_t>(state.iterations())) {
    state.SkipWithError("the deserializer returned a wrong number of records");
  }
  state.SetItemsProcessed(records);
  state.SetBytesProcessed(records * static_cast<int64_t>(record_size));
}
BENCHMARK(BM_Deserialize)->ArgName("bytes")->Arg(8)->Arg(64)->Arg(1024);

// End to end in one process: a writer thread emits 8-byte records as fast as it can, round-robin
// into range(0) subpartitions of a partition of the `local` shuffle service; the benchmark thread
// reads them through an InputGate of as many local channels with PollNext (WaitNext when nothing
// is ready). One iteration is one record received; the figure is records per second of wall
// time, with the writer and the reader on their own threads (two cores: each has one). Only
// full buffers are handed on (buffer timeout -1). At the end the writer finishes and the reader
// checks that it received every record.
void BM_GatePollNext(benchmark::State& state) {
  const auto channels = static_cast<uint32_t>(state.range(0));
  ShuffleConfig config;
  config.service = "local";
  config.buffer_timeout_ms = -1;
  auto pool = MakePool(state, size_t{channels} * 2 + 16);
  if (pool == nullptr) return;
  ShuffleEnvironmentContext context;
  context.pool = pool.get();
  auto master = CreateShuffleMaster(config);
  auto env = CreateShuffleEnvironment(config, context);
  if (!master.ok() || !env.ok()) {
    state.SkipWithError("cannot create the local shuffle service");
    return;
  }
  auto descriptor = (*master)->RegisterPartition(PartitionId{7, 0}, channels, {"local", ""});
  if (!descriptor.ok()) {
    state.SkipWithError(std::string(descriptor.status().message()).c_str());
    return;
  }
  auto partition = (*env)->CreateResultPartition(*descriptor, config.partition_options(channels));
  if (!partition.ok()) {
    state.SkipWithError(std::string(partition.status().message()).c_str());
    return;
  }
  std::vector<InputChannelSpec> specs;
  for (uint32_t c = 0; c < channels; ++c) specs.push_back(InputChannelSpec{*descriptor, c});
  auto gate = (*env)->CreateInputGate("bench", specs, config.gate_options());
  if (!gate.ok()) {
    state.SkipWithError(std::string(gate.status().message()).c_str());
    return;
  }
  auto writer = RecordWriter::Create(*partition, PartitionerSpec::RoundRobin());

  std::atomic<bool> stop{false};
  uint64_t sent = 0;
  absl::Status write_status;
  std::thread producer([&] {
    char record[8];
    while (write_status.ok() && !stop.load(std::memory_order_relaxed)) {
      for (int i = 0; i < 256 && write_status.ok(); ++i) {
        std::memcpy(record, &sent, 8);
        write_status = writer->Emit(std::string_view(record, 8));
        if (write_status.ok()) ++sent;
      }
    }
    if (write_status.ok()) write_status = writer->Finish();
    if (!write_status.ok()) (*partition)->Fail(write_status);
  });

  InputItem item;
  uint64_t received = 0;
  uint64_t sum = 0;
  absl::Status status;
  for (auto _ : state) {
    status = (*gate)->PollNext(&item);
    if (status.ok() && item.kind == InputItem::Kind::kNone) status = (*gate)->WaitNext(&item);
    if (!status.ok() || item.kind != InputItem::Kind::kRecord) break;
    uint64_t v;
    std::memcpy(&v, item.record.data(), 8);
    sum += v;
    ++received;
  }
  stop.store(true);
  // Drain to the end of input, so that the writer can finish.
  while (status.ok()) {
    status = (*gate)->WaitNext(&item, absl::Seconds(30));
    if (!status.ok() || item.kind == InputItem::Kind::kEnd || item.kind == InputItem::Kind::kNone) {
      break;
    }
    if (item.kind == InputItem::Kind::kRecord) ++received;
  }
  producer.join();
  benchmark::DoNotOptimize(sum);
  if (!status.ok()) {
    state.SkipWithError(std::string(status.message()).c_str());
  } else if (item.kind != InputItem::Kind::kEnd || received != sent) {
    state.SkipWithError(absl::StrCat("sent ", sent, " records, received ", received).c_str());
  }
  (*gate).reset();
  (*env)->Close();
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_GatePollNext)->ArgName("channels")->Arg(1)->Arg(1000)->UseRealTime();

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  // Every environment logs which service it runs; Google Benchmark creates many.
  sluice::InitLogging();
  sluice::SetLogLevel("warn").IgnoreError();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
