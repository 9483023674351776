#include "tools/bench_shuffle.h"

#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/buffer_pool.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/status.h"
#include "shuffle/input_gate.h"
#include "shuffle/net_shuffle.h"
#include "shuffle/record_writer.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"
#include "tools/bench_common.h"
#include "tools/bench_net.h"
#include "tools/bench_peers.h"
#include "tools/bench_report.h"
#include "tools/bench_shuffle_internal.h"
#include "tools/cli.h"

namespace sluice::tools {

// ---------------------------------------------------------------- shared with the net runs

namespace internal {

double CpuSeconds(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double ThreadCpuSeconds(std::thread& t) {
  clockid_t clock;
  if (pthread_getcpuclockid(t.native_handle(), &clock) != 0) return 0;
  return CpuSeconds(clock);
}

Snapshot TakeSnapshot(const RunningThreads& run) {
  Snapshot s;
  if (run.writers != nullptr) {
    for (std::thread& t : *run.writers) s.writer_cpu += ThreadCpuSeconds(t);
  }
  if (run.consumer != nullptr) s.consumer_cpu = ThreadCpuSeconds(*run.consumer);
  s.process_cpu = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.voluntary = static_cast<uint64_t>(ru.ru_nvcsw);
  s.involuntary = static_cast<uint64_t>(ru.ru_nivcsw);
  if (run.sent != nullptr) {
    for (const Progress& p : *run.sent) s.sent += p.value.load(std::memory_order_relaxed);
  }
  if (run.received != nullptr) s.received = run.received->value.load(std::memory_order_relaxed);
  s.nanos = MonotonicNanos();
  return s;
}

namespace {

// Sleeps for `seconds`, or less when the run fails meanwhile. Returns whether it slept it all.
bool SleepUnlessFailed(double seconds, const std::atomic<bool>& failed) {
  const absl::Time end = absl::Now() + absl::Seconds(seconds);
  while (!failed.load(std::memory_order_relaxed)) {
    const absl::Duration left = end - absl::Now();
    if (left <= absl::ZeroDuration()) return true;
    absl::SleepFor(std::min(left, absl::Milliseconds(10)));
  }
  return false;
}

}  // namespace

bool MeasurePhases(const ShuffleBenchOptions& o, const std::atomic<bool>& failed,
                   absl::FunctionRef<Snapshot()> snapshot, ThroughputResult* out) {
  if (!SleepUnlessFailed(o.warmup_seconds, failed)) return false;
  const Snapshot a = snapshot();
  if (!SleepUnlessFailed(o.seconds, failed)) return false;
  const Snapshot b = snapshot();
  out->records = b.received - a.received;
  out->seconds = static_cast<double>(b.nanos - a.nanos) / 1e9;
  out->cpu.writer_seconds = b.writer_cpu - a.writer_cpu;
  out->cpu.consumer_seconds = b.consumer_cpu - a.consumer_cpu;
  out->cpu.process_seconds = b.process_cpu - a.process_cpu;
  out->cpu.records_sent = b.sent - a.sent;
  out->cpu.voluntary_switches = b.voluntary - a.voluntary;
  out->cpu.involuntary_switches = b.involuntary - a.involuntary;
  return true;
}

absl::Status CheckCounts(std::string_view name, const std::vector<WriterOutcome>& writers,
                         const ConsumerOutcome& consumer, size_t record_size) {
  uint64_t sent = 0;
  uint64_t sum = 0;
  for (const WriterOutcome& w : writers) {
    sent += w.sent;
    sum += w.sum;
  }
  if (!consumer.ended) {
    return absl::DataLossError(absl::StrFormat(
        "%s: the consumer did not reach the end of input (%d of %d records received)", name,
        consumer.received, sent));
  }
  if (consumer.received != sent) {
    return absl::DataLossError(
        absl::StrFormat("%s: the writers sent %d records but the consumer received %d (%+d)", name,
                        sent, consumer.received, static_cast<int64_t>(consumer.received - sent)));
  }
  if (consumer.wrong_size != 0) {
    return absl::DataLossError(absl::StrFormat("%s: %d records arrived with a size other than %d",
                                               name, consumer.wrong_size, record_size));
  }
  if (consumer.sum != sum) {
    return absl::DataLossError(
        absl::StrFormat("%s: the record values sum to %d at the writers but to %d at the consumer",
                        name, sum, consumer.sum));
  }
  return absl::OkStatus();
}

absl::StatusOr<ShuffleConfig> BenchShuffleConfig(const ShuffleBenchOptions& o) {
  Config config;
  config.Set("shuffle.service", o.service);
  config.Set("shuffle.buffer-timeout-ms", absl::StrCat(o.flush_ms));
  if (o.service == kNetShuffleService) {
    config.Set("shuffle.net.transport", o.net_transport);
    config.Set("shuffle.net.bind", "127.0.0.1:0");
    config.Set("shuffle.net.zero-copy-threshold", absl::StrCat(o.zero_copy_threshold));
    config.Set("shuffle.net.direct-send-limit", absl::StrCat(o.direct_send_limit));
  }
  return ShuffleConfig::FromConfig(config);
}

ShuffleRig::~ShuffleRig() {
  input.reset();
  gates.clear();
  writers.clear();
  partitions.clear();
  if (env != nullptr) env->Close();
  env.reset();
  master.reset();
}

absl::Status StartShuffleService(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                                 std::string worker_id, ShuffleRig* rig) {
  BufferPoolOptions pool_options;
  pool_options.segment_size = o.segment_size;
  pool_options.num_segments = ShufflePoolSegments(o);
  SLUICE_ASSIGN_OR_RETURN(rig->pool, BufferPool::Create(pool_options));
  SLUICE_ASSIGN_OR_RETURN(rig->master, CreateShuffleMaster(config));
  ShuffleEnvironmentContext context;
  context.worker_id = std::move(worker_id);
  context.pool = rig->pool.get();
  SLUICE_ASSIGN_OR_RETURN(rig->env, CreateShuffleEnvironment(config, context));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ShuffleDescriptor>> RegisterBenchPartitions(
    const ShuffleBenchOptions& o, ShuffleMaster& master, const ProducerLocation& producer) {
  std::vector<ShuffleDescriptor> descriptors;
  for (uint32_t w = 0; w < o.writers; ++w) {
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d,
                            master.RegisterPartition(PartitionId{1, w}, o.channels, producer));
    descriptors.push_back(std::move(d));
  }
  return descriptors;
}

absl::Status AddBenchWriters(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                             const std::vector<ShuffleDescriptor>& partitions, ShuffleRig* rig) {
  for (const ShuffleDescriptor& d : partitions) {
    ResultPartitionOptions options = config.partition_options(o.channels);
    options.min_buffers = size_t{o.channels} + 1;
    options.max_buffers = size_t{o.channels} * config.exclusive_buffers_per_channel +
                          config.floating_buffers_per_gate;
    SLUICE_ASSIGN_OR_RETURN(std::shared_ptr<ResultPartition> p,
                            rig->env->CreateResultPartition(d, options));
    SLUICE_ASSIGN_OR_RETURN(RecordWriter writer,
                            RecordWriter::Create(p, PartitionerSpec::RoundRobin()));
    rig->partitions.push_back(std::move(p));
    rig->writers.push_back(std::move(writer));
  }
  return absl::OkStatus();
}

absl::Status AddBenchGates(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                           const std::vector<ShuffleDescriptor>& partitions, ShuffleRig* rig) {
  std::vector<InputGate*> gates;
  for (size_t w = 0; w < partitions.size(); ++w) {
    std::vector<InputChannelSpec> specs(o.channels);
    for (uint32_t c = 0; c < o.channels; ++c) specs[c] = InputChannelSpec{partitions[w], c};
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<InputGate> gate,
        rig->env->CreateInputGate(absl::StrCat("bench-gate-", w), specs, config.gate_options()));
    gates.push_back(gate.get());
    rig->gates.push_back(std::move(gate));
  }
  rig->input = std::make_unique<UnionInputGate>(std::move(gates));
  return absl::OkStatus();
}

void ShuffleWriterLoop(RecordWriter* writer, size_t record_size, const std::atomic<bool>& stop,
                       Progress* progress, WriterOutcome* out) {
  const size_t value_bytes = std::min<size_t>(8, record_size);
  uint64_t counter = 0;
  absl::Status status;
  while (status.ok() && !stop.load(std::memory_order_relaxed)) {
    for (uint64_t i = 0; i < kPublishEvery; ++i) {
      // Serialized once, in place: the counter, then filler bytes.
      status = writer->EmitWith(record_size, [counter, value_bytes, record_size](char* dst) {
        StoreValue(dst, counter, value_bytes);
        if (record_size > value_bytes)
          std::memset(dst + value_bytes, 0x5a, record_size - value_bytes);
      });
      if (ABSL_PREDICT_FALSE(!status.ok())) break;
      ++counter;
    }
    progress->value.store(counter, std::memory_order_relaxed);
  }
  if (status.ok()) status = writer->Finish();
  // The consumer must hear of it, or it would wait for this partition's end for ever.
  if (!status.ok()) writer->partition().Fail(status);
  out->status = std::move(status);
  out->sent = counter;
  out->sum = SumOfValues(counter, ValueMask(value_bytes));
}

// `batch`: the records lying whole in the buffer being read go through PollRecords in one
// call, the rest (buffer borders, events, records spanning buffers) through PollNext, as a
// consumer that processes records in batches reads; otherwise every record through PollNext.
void ShuffleConsumerLoop(UnionInputGate* gate, size_t record_size, bool batch,
                         const std::atomic<bool>& abort, Progress* progress, ConsumerOutcome* out) {
  uint64_t count = 0;
  uint64_t sum = 0;
  uint64_t wrong_size = 0;
  uint64_t waits = 0;
  InputItem item;
  absl::Status status;
  while (true) {
    if (batch) {
      const size_t n = gate->PollRecords(
          [&](uint32_t /*channel*/, std::string_view record) {
            sum += LoadValue(record.data(), record.size());
            wrong_size += record.size() != record_size;
          },
          std::numeric_limits<size_t>::max());
      if (n > 0) {
        count += n;
        progress->value.store(count, std::memory_order_relaxed);
      }
    }
    status = gate->PollNext(&item);
    if (ABSL_PREDICT_FALSE(status.ok() && item.kind == InputItem::Kind::kNone)) {
      ++waits;
      const absl::Time stalled_since = absl::Now();
      while (status.ok() && item.kind == InputItem::Kind::kNone) {
        if (abort.load(std::memory_order_relaxed)) {
          status = absl::CancelledError("the run was aborted");
        } else if (absl::Now() - stalled_since > kStallTimeout) {
          status = absl::DeadlineExceededError(
              absl::StrFormat("the consumer received nothing for %s after %d records",
                              absl::FormatDuration(kStallTimeout), count));
        } else {
          status = gate->WaitNext(&item, kWaitSlice);
        }
      }
    }
    if (ABSL_PREDICT_FALSE(!status.ok())) break;
    if (ABSL_PREDICT_TRUE(item.kind == InputItem::Kind::kRecord)) {
      sum += LoadValue(item.record.data(), item.record.size());
      wrong_size += item.record.size() != record_size;
      if ((++count & (kPublishEvery - 1)) == 0) {
        progress->value.store(count, std::memory_order_relaxed);
      }
    } else if (item.kind == InputItem::Kind::kEnd) {
      out->ended = true;
      break;
    }
    // kEvent: the end of one channel's partition; the gate says kEnd after the last.
  }
  progress->value.store(count, std::memory_order_relaxed);
  out->status = std::move(status);
  out->received = count;
  out->sum = sum;
  out->wrong_size = wrong_size;
  out->waits = waits;
}

WorkloadFlags::WorkloadFlags(const ShuffleBenchOptions& defaults)
    : record_size(defaults.record_size),
      writers(defaults.writers),
      channels(defaults.channels),
      flush_ms(defaults.flush_ms),
      zero_copy_threshold(defaults.zero_copy_threshold),
      direct_send_limit(defaults.direct_send_limit) {}

void WorkloadFlags::AddTo(OptionParser& parser) {
  parser.AddBytes("--record-size", "Payload bytes per record", 1, kMaxBenchRecordSize,
                  &record_size);
  parser.AddCount("--writers", "N", "Writer threads, one result partition each", 1, 256, &writers);
  parser.AddCount("--channels", "N", "Subpartitions per writer (channels per input gate)", 1, 65536,
                  &channels);
  parser.AddOption("--flush-ms", "MS",
                   "Buffer timeout: flush partly filled buffers this often; 0 = after every "
                   "record, -1 = only full buffers",
                   absl::StrCat(flush_ms), [this](std::string_view v) {
                     int64_t ms = 0;
                     if (!absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &ms) || ms < -1 ||
                         ms > 86'400'000) {
                       return absl::InvalidArgumentError(
                           "expected -1, 0 or a number of milliseconds up to 86400000");
                     }
                     flush_ms = ms;
                     return absl::OkStatus();
                   });
  parser.AddBytes("--zero-copy-threshold",
                  "Net runs over uring: send payloads of at least this size with SEND_ZC "
                  "(shuffle.net.zero-copy-threshold); 0 = never",
                  0, uint64_t{1} << 30, &zero_copy_threshold);
  AddDirectSendLimitOption(parser, &direct_send_limit);
}

void AddDirectSendLimitOption(OptionParser& parser, uint64_t* limit) {
  parser.AddBytes("--direct-send-limit",
                  "Net runs: frames up to this size that find their connection idle are written "
                  "by the flushing thread itself (shuffle.net.direct-send-limit); 0 = never",
                  0, uint64_t{1} << 30, limit);
}

void WorkloadFlags::ApplyTo(ShuffleBenchOptions* o) const {
  o->record_size = record_size;
  o->writers = static_cast<uint32_t>(writers);
  o->channels = static_cast<uint32_t>(channels);
  o->flush_ms = flush_ms;
  o->zero_copy_threshold = zero_copy_threshold;
  o->direct_send_limit = direct_send_limit;
}

std::vector<std::string> WorkloadFlags::Args(const ShuffleBenchOptions& o) {
  return {absl::StrCat("--record-size=", o.record_size),
          absl::StrCat("--writers=", o.writers),
          absl::StrCat("--channels=", o.channels),
          absl::StrCat("--flush-ms=", o.flush_ms),
          absl::StrCat("--zero-copy-threshold=", o.zero_copy_threshold),
          absl::StrCat("--direct-send-limit=", o.direct_send_limit)};
}

}  // namespace internal

using internal::AddBenchGates;
using internal::AddBenchWriters;
using internal::BenchShuffleConfig;
using internal::CheckCounts;
using internal::ConsumerOutcome;
using internal::kRawWalkPadding;
using internal::MeasurePhases;
using internal::Progress;
using internal::RawBuffer;
using internal::RawProducerLoop;
using internal::RecordTally;
using internal::RegisterBenchPartitions;
using internal::RunningThreads;
using internal::ShuffleConsumerLoop;
using internal::ShuffleRig;
using internal::ShuffleWriterLoop;
using internal::StartShuffleService;
using internal::TakeSnapshot;
using internal::TallyRecords;
using internal::WorkloadFlags;
using internal::WriterOutcome;

namespace {

// Segments beyond the partitions' maxima; the pool is rounded up to 2 MiB so that it may use
// hugepages when the kernel has them reserved.
constexpr size_t kPoolSlack = 64;
constexpr size_t kHugePage = 2u << 20;

// ---------------------------------------------------------------- raw-handoff

// Two queues, each a std::mutex + std::condition_variable: full buffers to the consumer, empty
// ones back to the producer. A waiter is woken only when its queue turns non-empty, since it
// waits only on an empty queue.
class RawHandoffQueues {
 public:
  // nullptr: the end of the stream.
  void PushFull(RawBuffer* b) { Push(full_, b); }
  RawBuffer* PopFull(uint64_t* waits) { return Pop(full_, waits); }
  void PushFree(RawBuffer* b) { Push(free_, b); }
  RawBuffer* PopFree(uint64_t* waits) { return Pop(free_, waits); }

 private:
  struct Queue {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<RawBuffer*> items;
  };
  static void Push(Queue& q, RawBuffer* b) {
    bool was_empty = false;
    {
      std::lock_guard<std::mutex> lock(q.mu);
      was_empty = q.items.empty();
      q.items.push_back(b);
    }
    if (was_empty) q.cv.notify_one();
  }
  static RawBuffer* Pop(Queue& q, uint64_t* waits) {
    std::unique_lock<std::mutex> lock(q.mu);
    if (q.items.empty()) {
      ++*waits;
      q.cv.wait(lock, [&q] { return !q.items.empty(); });
    }
    RawBuffer* b = q.items.front();
    q.items.pop_front();
    return b;
  }

  Queue full_;
  Queue free_;
};

// The producer's side of the queues, as RawProducerLoop's sink: a full buffer goes to the
// consumer, and a free one comes back (waiting when there is none). Used by the producer only.
class HandoffSink {
 public:
  explicit HandoffSink(RawHandoffQueues* queues) : queues_(queues) {}
  RawBuffer* Take() { return queues_->PopFree(&waits_); }
  RawBuffer* Full(RawBuffer* b) {
    queues_->PushFull(b);
    return queues_->PopFree(&waits_);
  }
  uint64_t waits() const { return waits_; }

 private:
  RawHandoffQueues* const queues_;
  uint64_t waits_ = 0;  // times no free buffer was there
};

void RawHandoffConsumerLoop(RawHandoffQueues* queues, size_t record_size, Progress* progress,
                            ConsumerOutcome* out, uint64_t* buffers) {
  RecordTally tally;
  uint64_t waits = 0;
  while (RawBuffer* b = queues->PopFull(&waits)) {
    // The producer writes whole records only: no walk can end anywhere but at b->size.
    TallyRecords(b->data, b->size, record_size, &tally);
    ++*buffers;
    b->size = 0;
    queues->PushFree(b);
    progress->value.store(tally.count, std::memory_order_relaxed);
  }
  out->ended = true;
  out->received = tally.count;
  out->sum = tally.sum;
  out->wrong_size = tally.wrong_size;
  out->waits = waits;
}

}  // namespace

// ---------------------------------------------------------------- public

size_t ShufflePoolSegments(const ShuffleBenchOptions& o) {
  const ShuffleConfig defaults;
  const size_t per_partition = size_t{o.channels} * defaults.exclusive_buffers_per_channel +
                               defaults.floating_buffers_per_gate;
  const size_t per_huge_page = std::max<size_t>(1, kHugePage / o.segment_size);
  const size_t wanted = size_t{o.writers} * per_partition + kPoolSlack;
  return (wanted + per_huge_page - 1) / per_huge_page * per_huge_page;
}

absl::Status ValidateShuffleBenchOptions(const ShuffleBenchOptions& o) {
  if (o.writers == 0 || o.channels == 0) {
    return absl::InvalidArgumentError("--writers and --channels must be at least 1");
  }
  if (o.record_size == 0 || o.record_size > kMaxBenchRecordSize) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--record-size %d is outside [1, %d]", o.record_size, kMaxBenchRecordSize));
  }
  if (o.flush_ms < -1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--flush-ms %d is invalid (-1: full buffers only, 0: every record, or a "
                        "period in ms)",
                        o.flush_ms));
  }
  if (o.seconds <= 0 || o.warmup_seconds < 0) {
    return absl::InvalidArgumentError("--seconds must be above 0 and --warmup at least 0");
  }
  // The pools are populated at start (one per process for net): refuse what would not fit
  // comfortably in memory.
  const uint64_t processes = o.service == kNetShuffleService ? 2 : 1;
  const uint64_t bytes = processes * ShufflePoolSegments(o) * o.segment_size;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0 &&
      bytes > static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d writers x %d channels need buffer pools of %s, more than half of this machine's "
        "memory; lower --writers or --channels",
        o.writers, o.channels, FormatBytes(bytes)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ThroughputResult> RunShuffleThroughput(const ShuffleBenchOptions& o) {
  SLUICE_RETURN_IF_ERROR(ValidateShuffleBenchOptions(o));
  SLUICE_ASSIGN_OR_RETURN(const ShuffleConfig config, BenchShuffleConfig(o));
  ShuffleRig rig;
  SLUICE_RETURN_IF_ERROR(StartShuffleService(o, config, "bench", &rig));
  SLUICE_ASSIGN_OR_RETURN(const std::vector<ShuffleDescriptor> descriptors,
                          RegisterBenchPartitions(o, *rig.master, ProducerLocation{"bench", ""}));
  SLUICE_RETURN_IF_ERROR(AddBenchWriters(o, config, descriptors, &rig));
  SLUICE_RETURN_IF_ERROR(AddBenchGates(o, config, descriptors, &rig));

  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<Progress> sent(o.writers);
  Progress received;
  std::vector<WriterOutcome> writer_out(o.writers);
  ConsumerOutcome consumer_out;

  std::thread consumer([&] {
    ShuffleConsumerLoop(rig.input.get(), o.record_size, o.batch_consumer, failed, &received,
                        &consumer_out);
    if (!consumer_out.status.ok()) {
      // Writers blocked on a full pool would wait for ever: fail their partitions.
      failed.store(true);
      for (auto& p : rig.partitions) p->Release(consumer_out.status);
    }
  });
  std::vector<std::thread> writers;
  for (uint32_t w = 0; w < o.writers; ++w) {
    writers.emplace_back([&, w] {
      ShuffleWriterLoop(&rig.writers[w], o.record_size, stop, &sent[w], &writer_out[w]);
      if (!writer_out[w].status.ok()) failed.store(true);
    });
  }

  ThroughputResult result;
  result.name = o.service;
  result.record_size = o.record_size;
  const RunningThreads run{&writers, &consumer, &sent, &received};
  MeasurePhases(
      o, failed, [&run] { return TakeSnapshot(run); }, &result);
  stop.store(true);
  for (std::thread& t : writers) t.join();
  consumer.join();

  // The root cause. A consumer that failed on its own releases the partitions, which fails the
  // writers; a writer that failed fails its partition (the consumer then names its cause) and
  // aborts the consumer (Cancelled). So: the consumer's own error, else a writer's.
  auto consumer_error = [&] {
    return absl::Status(
        consumer_out.status.code(),
        absl::StrCat(o.service, ": the consumer failed: ", consumer_out.status.message()));
  };
  if (!consumer_out.status.ok() && !absl::IsCancelled(consumer_out.status)) return consumer_error();
  for (const WriterOutcome& w : writer_out) {
    if (!w.status.ok()) {
      return absl::Status(w.status.code(),
                          absl::StrCat(o.service, ": a writer failed: ", w.status.message()));
    }
  }
  if (!consumer_out.status.ok()) return consumer_error();
  SLUICE_RETURN_IF_ERROR(CheckCounts(o.service, writer_out, consumer_out, o.record_size));
  result.total_records = consumer_out.received;
  result.consumer_waits = consumer_out.waits;
  for (const auto& g : rig.gates) result.buffers += g->buffers_taken();
  for (const auto& p : rig.partitions) result.writer_waits += p->stats().waits_for_buffer;
  return result;
}

absl::StatusOr<ThroughputResult> RunRawHandoff(const ShuffleBenchOptions& o) {
  SLUICE_RETURN_IF_ERROR(ValidateShuffleBenchOptions(o));
  // As many buffers as one shuffle partition may hold: the current one of every channel, and
  // as many again plus a few in flight. The consumer's walk may read a little past the last.
  const size_t count = size_t{o.channels} * 2 + 8;
  const size_t size = o.segment_size;
  const size_t bytes = count * size + kRawWalkPadding;
  std::unique_ptr<char[]> memory(new char[bytes]);
  std::memset(memory.get(), 0, bytes);  // fault the pages in before the clock starts
  std::vector<RawBuffer> buffers(count);
  RawHandoffQueues queues;
  for (size_t i = 0; i < count; ++i) {
    buffers[i].data = memory.get() + i * size;
    queues.PushFree(&buffers[i]);
  }

  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::vector<Progress> sent(1);
  Progress received;
  std::vector<WriterOutcome> producer_out(1);
  ConsumerOutcome consumer_out;
  HandoffSink sink(&queues);
  uint64_t buffers_parsed = 0;
  std::thread consumer([&] {
    RawHandoffConsumerLoop(&queues, o.record_size, &received, &consumer_out, &buffers_parsed);
  });
  std::vector<std::thread> producer;
  producer.emplace_back([&] {
    std::vector<RawBuffer*> current(o.channels);
    for (RawBuffer*& b : current) b = sink.Take();
    if (o.record_size == 8) {
      RawProducerLoop<true>(&sink, &current, size, o.record_size, stop, &sent[0], &producer_out[0]);
    } else {
      RawProducerLoop<false>(&sink, &current, size, o.record_size, stop, &sent[0],
                             &producer_out[0]);
    }
    for (RawBuffer* b : current) {
      if (b->size > 0) {
        queues.PushFull(b);
      } else {
        queues.PushFree(b);
      }
    }
    queues.PushFull(nullptr);
  });

  ThroughputResult result;
  result.name = std::string(kRawHandoff);
  result.record_size = o.record_size;
  const RunningThreads run{&producer, &consumer, &sent, &received};
  MeasurePhases(
      o, failed, [&run] { return TakeSnapshot(run); }, &result);
  stop.store(true);
  producer[0].join();
  consumer.join();
  SLUICE_RETURN_IF_ERROR(CheckCounts(kRawHandoff, producer_out, consumer_out, o.record_size));
  result.total_records = consumer_out.received;
  result.buffers = buffers_parsed;
  result.writer_waits = sink.waits();
  result.consumer_waits = consumer_out.waits;
  return result;
}

// ---------------------------------------------------------------- the command

namespace {

BenchEntry ThroughputEntry(const ThroughputResult& r, bool two_process) {
  BenchEntry e;
  e.name = r.name;
  e.records_per_ms = r.records_per_ms();
  e.gbytes_per_s = r.gbytes_per_s();
  if (two_process) {
    e.extra = {{"copied_per_byte", absl::StrFormat("%.6f", r.copied_per_byte())},
               {"wire_bytes", absl::StrCat(r.wire_bytes)},
               {"payload_bytes", absl::StrCat(r.payload_bytes)}};
  }
  return e;
}

std::string NanosPerRecord(double cpu_seconds, uint64_t records) {
  return records > 0 ? absl::StrFormat("%.2f", cpu_seconds * 1e9 / static_cast<double>(records))
                     : std::string("-");
}

}  // namespace

int RunBenchShuffle(Args args) {
  if (FindOptionValue(args, "--mode") == "latency") return RunBenchShuffleLatency(args);
  ShuffleBenchOptions o;
  std::string transport = "local";
  WorkloadFlags workload(o);
  BenchHarness harness("shuffle");
  bool no_peers = false;
  OptionParser parser(
      "sluice bench shuffle",
      "Shuffle throughput, after Flink's StreamNetworkThroughputBenchmark: --writers threads\n"
      "each write --record-size records (a counter) as fast as they can, round-robin into the\n"
      "--channels subpartitions of their own result partition; one consumer thread reads every\n"
      "channel through one input gate per writer, merged by a union gate (--consumer batch:\n"
      "PollRecords for the records of a buffer, PollNext for the rest), counts the records and\n"
      "sums their values. After --warmup, records the consumer receives during --seconds are\n"
      "counted; at the end the writers finish and the consumer must have received exactly what\n"
      "was sent. GB/s counts payload bytes (1 GB = 10^9 bytes).\n"
      "\n"
      "--transport local: everything in this process, through the local service. The baseline,\n"
      "raw-handoff, measured in the same run: one thread fills 32 KiB buffers ([varint length]\n"
      "[record], round-robin over as many channels) and hands full ones to a second thread over\n"
      "a mutex + condition variable; that thread parses every record.\n"
      "\n"
      "--transport uring|epoll|auto (net = auto): two processes over loopback TCP through the\n"
      "net service. The writers run in a child process (sluice shuffle-peer) with its own net\n"
      "environment; this process is the consumer and measures. The baseline, raw-tcp, measured\n"
      "in the same run between the same two processes: --writers threads in the child, each\n"
      "round-robin over its own --channels, fill 32 KiB buffers as above and write each full one\n"
      "with an 8-byte (channel, length) header, under a mutex, to one plain blocking socket;\n"
      "this process receives into one buffer and walks the frames and records in place. No flow\n"
      "control: the machine's limit for the workload. Both are reported with the user-space\n"
      "bytes the receiver copied per byte delivered and the bytes on the wire per byte.\n"
      "ZeroMQ beside it (net runs): a PUSH socket in a second process sends --record-size\n"
      "messages as fast as it can to a PULL socket here.\n"
      "\n"
      "--mode latency: see 'sluice bench shuffle --mode latency --help'.");
  std::string mode = "throughput";
  parser.AddChoice(
      "--mode", {"throughput", "latency"},
      "throughput (this), or latency: see 'sluice bench shuffle --mode latency --help'", &mode);
  parser.AddChoice("--transport", {"local", "uring", "epoll", "auto", "net"},
                   "local: in this process (local service); uring, epoll, auto (or net): "
                   "sender and receiver in two processes through the net service",
                   &transport);
  workload.AddTo(parser);
  parser.AddSeconds("--seconds", "Measured time of each row, after the warm-up", 0.1, 3600,
                    &o.seconds);
  parser.AddSeconds("--warmup", "Warm-up before each row's measured time", 0, 3600,
                    &o.warmup_seconds);
  std::string consumer = "batch";
  parser.AddChoice("--consumer", {"batch", "record"},
                   "How the consumer reads: batch = the records of a buffer with one "
                   "PollRecords call, record = each with PollNext",
                   &consumer);
  parser.AddFlag("--no-peers", "Skip the ZeroMQ row of net runs", &no_peers);
  harness.AddOptions(parser);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  o.batch_consumer = consumer == "batch";
  workload.ApplyTo(&o);
  const bool net = transport != "local";
  if (net) {
    o.service = std::string(kNetShuffleService);
    o.net_transport = transport == "net" ? std::string("auto") : transport;
  } else {
    o.service = transport;
  }
  if (absl::Status s = ValidateShuffleBenchOptions(o); !s.ok()) {
    return ReportUsageError(parser.command(), s);
  }

  const size_t pool_segments = ShufflePoolSegments(o);
  const ShuffleConfig defaults;
  const std::string flush = o.flush_ms < 0    ? std::string("only full buffers")
                            : o.flush_ms == 0 ? std::string("after every record")
                                              : absl::StrCat("every ", o.flush_ms, " ms");
  const std::string service =
      net ? absl::StrCat("net over ", o.net_transport, ", writers in a second process") : o.service;
  absl::PrintF(
      "sluice bench shuffle: service %s; %d writers x %d channels, %s records, flush %s, "
      "%s consumer\n"
      "buffer pool%s: %d segments x %s = %s (%d %s x up to %d buffers, + slack)\n"
      "each row: %gs warm-up, then %gs measured\n\n",
      service, o.writers, o.channels, FormatBytes(o.record_size), flush, consumer,
      net ? " in each process" : "", pool_segments, FormatBytes(o.segment_size),
      FormatBytes(pool_segments * o.segment_size), o.writers,
      net ? "partitions, or gates," : "partitions",
      size_t{o.channels} * defaults.exclusive_buffers_per_channel +
          defaults.floating_buffers_per_gate,
      o.warmup_seconds, o.seconds);
  std::fflush(stdout);

  const std::string baseline_name(net ? kRawTcp : kRawHandoff);
  const std::string shuffle_name = net ? NetShuffleName(o) : o.service;
  const std::string group = absl::StrCat(FormatBytes(o.record_size), " records");
  const double row_seconds = o.warmup_seconds + o.seconds + 0.5;
  // The last run of each row, for the CPU breakdown.
  std::optional<ThroughputResult> raw;
  std::optional<ThroughputResult> shuffle;
  harness.Add({baseline_name, group, true, row_seconds, [&]() -> absl::StatusOr<BenchEntry> {
                 SLUICE_ASSIGN_OR_RETURN(raw, net ? RunRawTcpShuffle(o) : RunRawHandoff(o));
                 return ThroughputEntry(*raw, net);
               }});
  const bool zeromq = net && !no_peers && ZeroMqAvailable();
  if (zeromq) {
    PeerBenchOptions peer;
    peer.message_size = o.record_size;
    peer.warmup_seconds = o.warmup_seconds;
    peer.seconds = o.seconds;
    harness.Add(
        {"zeromq push/pull", group, true, row_seconds, [peer] { return RunZeroMqPushPull(peer); }});
  }
  harness.Add({shuffle_name, group, false, row_seconds, [&]() -> absl::StatusOr<BenchEntry> {
                 SLUICE_ASSIGN_OR_RETURN(
                     shuffle, net ? RunNetShuffleThroughput(o) : RunShuffleThroughput(o));
                 return ThroughputEntry(*shuffle, net);
               }});
  BenchReport report = harness.Run();
  report.config = {{"mode", JsonString("throughput")},
                   {"transport", JsonString(transport)},
                   {"record_size", absl::StrCat(o.record_size)},
                   {"writers", absl::StrCat(o.writers)},
                   {"channels", absl::StrCat(o.channels)},
                   {"flush_ms", absl::StrCat(o.flush_ms)},
                   {"consumer", JsonString(consumer)},
                   {"seconds", absl::StrFormat("%g", o.seconds)},
                   {"warmup", absl::StrFormat("%g", o.warmup_seconds)},
                   {"runs", absl::StrCat(harness.runs())}};
  if (const BenchEntry* ours = report.FindResult(group, shuffle_name); ours != nullptr && net) {
    if (const BenchEntry* base = report.FindBaseline(group, baseline_name); base != nullptr) {
      report.targets.push_back({absl::StrCat(shuffle_name, " records/ms / ", baseline_name),
                                ours->records_per_ms / base->records_per_ms, 0.85, false});
    }
    const BenchEntry* zmq = report.FindBaseline(group, "zeromq push/pull");
    if (zmq != nullptr && o.record_size == 8) {
      report.targets.push_back({absl::StrCat(shuffle_name, " records/ms / zeromq push/pull"),
                                ours->records_per_ms / zmq->records_per_ms, 15, false});
    }
  }

  // Where the time went: CPU per record on each side, and how often threads blocked.
  std::vector<const ThroughputResult*> rows;
  if (raw.has_value()) rows.push_back(&*raw);
  if (shuffle.has_value()) rows.push_back(&*shuffle);
  std::string& details = report.details;
  absl::StrAppendFormat(&details, "CPU time per record and blocking, measured phase (%d CPUs%s):\n",
                        std::thread::hardware_concurrency(),
                        harness.runs() > 1 ? ", the last run" : "");
  std::vector<std::string> cpu_header = {"name",         "writer ns",      "consumer ns",
                                         "cores busy",   "ctx switches/s", "records/buffer",
                                         "writer waits", "consumer waits"};
  if (net) {
    cpu_header.push_back("copied/byte");
    cpu_header.push_back("wire/byte");
  }
  Table cpu(cpu_header);
  for (const ThroughputResult* r : rows) {
    const CpuBreakdown& c = r->cpu;
    std::vector<std::string> cells = {
        r->name,
        NanosPerRecord(c.writer_seconds, c.records_sent),
        NanosPerRecord(c.consumer_seconds, r->records),
        absl::StrFormat("%.2f", r->seconds > 0 ? c.process_seconds / r->seconds : 0),
        absl::StrFormat("%.0f", r->seconds > 0 ? static_cast<double>(c.voluntary_switches +
                                                                     c.involuntary_switches) /
                                                     r->seconds
                                               : 0),
        r->buffers > 0 ? absl::StrFormat("%.0f", static_cast<double>(r->total_records) /
                                                     static_cast<double>(r->buffers))
                       : std::string("-"),
        absl::StrCat(r->writer_waits),
        absl::StrCat(r->consumer_waits)};
    if (net) {
      cells.push_back(absl::StrFormat("%.3f", r->copied_per_byte()));
      cells.push_back(absl::StrFormat("%.3f", r->wire_per_byte()));
    }
    cpu.AddRow(std::move(cells));
  }
  absl::StrAppend(&details, cpu.Render(),
                  "(writer ns: CPU of all writer threads per record written; consumer ns: of the "
                  "consumer\n thread per record read; waits and records/buffer count the whole "
                  "run)\n");
  if (net) {
    absl::StrAppend(
        &details,
        "(two processes: the writers run in the sender, cores busy and ctx switches add both\n"
        " processes; raw-tcp's writer waits are waits for the socket's lock. copied/byte: bytes\n"
        " the receiver copied in user space per byte of records delivered, length prefixes\n"
        " included; wire/byte: bytes it received from the socket(s) per such byte)\n");
  }
  return harness.Finish(report);
}

}  // namespace sluice::tools
