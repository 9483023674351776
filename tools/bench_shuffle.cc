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
#include "base/status.h"
#include "shuffle/input_gate.h"
#include "shuffle/record_writer.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"
#include "tools/bench_common.h"
#include "tools/cli.h"

namespace sluice::tools {
namespace {

// Records between two updates of a thread's published counter (a power of two).
constexpr uint64_t kPublishEvery = 1024;
// A consumer that receives nothing for this long gives up: something is stuck.
constexpr absl::Duration kStallTimeout = absl::Seconds(30);
// How long the consumer blocks in one wait before it looks at the abort flag again.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(100);
// Segments beyond the partitions' maxima; the pool is rounded up to 2 MiB so that it may use
// hugepages when the kernel has them reserved.
constexpr size_t kPoolSlack = 64;
constexpr size_t kHugePage = 2u << 20;

// A counter one thread publishes for the main thread, on its own cache line.
struct alignas(64) Progress {
  std::atomic<uint64_t> value{0};
};

// The first min(8, size) bytes of a record as a number.
inline uint64_t LoadValue(const char* p, size_t size) {
  uint64_t v = 0;
  if (ABSL_PREDICT_TRUE(size >= 8)) {
    std::memcpy(&v, p, 8);
  } else {
    std::memcpy(&v, p, size);
  }
  return v;
}
inline void StoreValue(char* p, uint64_t v, size_t value_bytes) {
  if (ABSL_PREDICT_TRUE(value_bytes == 8)) {
    std::memcpy(p, &v, 8);
  } else {
    std::memcpy(p, &v, value_bytes);
  }
}
// What the consumer sums for counter `v` of a record of `value_bytes` counter bytes.
inline uint64_t ValueMask(size_t value_bytes) {
  return value_bytes >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * value_bytes)) - 1;
}
// 0 + 1 + ... + (n - 1), modulo 2^64.
inline uint64_t Triangle(uint64_t n) { return n % 2 == 0 ? n / 2 * (n - 1) : (n - 1) / 2 * n; }
// The sum, modulo 2^64, of (i & mask) for i in [0, n): what the consumer must add up when a
// writer sent counters 0 .. n-1. Computed once, so that the writers' loops carry nothing extra.
// REQUIRES: mask is 2^k - 1 with k in [8, 64].
inline uint64_t SumOfValues(uint64_t n, uint64_t mask) {
  if (mask == ~uint64_t{0}) return Triangle(n);
  const uint64_t period = mask + 1;
  return (n / period) * Triangle(period) + Triangle(n % period);
}

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

// The state of a run at one instant, as the main thread sees it.
struct Snapshot {
  int64_t nanos = 0;
  uint64_t received = 0;
  uint64_t sent = 0;
  double writer_cpu = 0;
  double consumer_cpu = 0;
  double process_cpu = 0;
  uint64_t voluntary = 0;
  uint64_t involuntary = 0;
};

// The threads and counters of a running benchmark, for the main thread to time.
struct RunningThreads {
  std::vector<std::thread>* writers;
  std::thread* consumer;
  const std::vector<Progress>* sent;  // one per writer
  const Progress* received;
  const std::atomic<bool>* failed;
};

Snapshot TakeSnapshot(const RunningThreads& run) {
  Snapshot s;
  for (std::thread& t : *run.writers) s.writer_cpu += ThreadCpuSeconds(t);
  s.consumer_cpu = ThreadCpuSeconds(*run.consumer);
  s.process_cpu = CpuSeconds(CLOCK_PROCESS_CPUTIME_ID);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  s.voluntary = static_cast<uint64_t>(ru.ru_nvcsw);
  s.involuntary = static_cast<uint64_t>(ru.ru_nivcsw);
  for (const Progress& p : *run.sent) s.sent += p.value.load(std::memory_order_relaxed);
  s.received = run.received->value.load(std::memory_order_relaxed);
  s.nanos = MonotonicNanos();
  return s;
}

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

// Warm-up, then the measured phase: fills the measured fields of `out`.
void MeasurePhases(const ShuffleBenchOptions& o, const RunningThreads& run, ThroughputResult* out) {
  if (!SleepUnlessFailed(o.warmup_seconds, *run.failed)) return;
  const Snapshot a = TakeSnapshot(run);
  if (!SleepUnlessFailed(o.seconds, *run.failed)) return;
  const Snapshot b = TakeSnapshot(run);
  out->records = b.received - a.received;
  out->seconds = static_cast<double>(b.nanos - a.nanos) / 1e9;
  out->cpu.writer_seconds = b.writer_cpu - a.writer_cpu;
  out->cpu.consumer_seconds = b.consumer_cpu - a.consumer_cpu;
  out->cpu.process_seconds = b.process_cpu - a.process_cpu;
  out->cpu.records_sent = b.sent - a.sent;
  out->cpu.voluntary_switches = b.voluntary - a.voluntary;
  out->cpu.involuntary_switches = b.involuntary - a.involuntary;
}

// What every writer thread reports when it is done.
struct WriterOutcome {
  absl::Status status;
  uint64_t sent = 0;
  uint64_t sum = 0;
};
struct ConsumerOutcome {
  absl::Status status;
  bool ended = false;
  uint64_t received = 0;
  uint64_t sum = 0;
  uint64_t wrong_size = 0;  // records whose size was not the one written
  uint64_t waits = 0;
};

// The end-of-run check both benchmarks share.
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

// ---------------------------------------------------------------- the shuffle

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

// Everything a shuffle run creates, declared in the order it is built, so that it is torn down
// in reverse: readers, then writers, then the service, then the memory.
struct ShuffleRig {
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<ShuffleMaster> master;
  std::unique_ptr<ShuffleEnvironment> env;
  std::vector<std::shared_ptr<ResultPartition>> partitions;
  std::vector<RecordWriter> writers;
  std::vector<std::unique_ptr<InputGate>> gates;
  std::unique_ptr<UnionInputGate> input;

  ~ShuffleRig() {
    input.reset();
    gates.clear();
    writers.clear();
    partitions.clear();
    if (env != nullptr) env->Close();
    env.reset();
    master.reset();
  }
};

absl::Status BuildShuffle(const ShuffleBenchOptions& o, ShuffleRig* rig) {
  ShuffleConfig config;
  config.service = o.service;
  config.buffer_timeout_ms = o.flush_ms;
  BufferPoolOptions pool_options;
  pool_options.segment_size = o.segment_size;
  pool_options.num_segments = ShufflePoolSegments(o);
  SLUICE_ASSIGN_OR_RETURN(rig->pool, BufferPool::Create(pool_options));
  SLUICE_ASSIGN_OR_RETURN(rig->master, CreateShuffleMaster(config));
  ShuffleEnvironmentContext context;
  context.worker_id = "bench";
  context.pool = rig->pool.get();
  SLUICE_ASSIGN_OR_RETURN(rig->env, CreateShuffleEnvironment(config, context));

  const ProducerLocation location{"bench", ""};
  std::vector<ShuffleDescriptor> descriptors;
  for (uint32_t w = 0; w < o.writers; ++w) {
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d, rig->master->RegisterPartition(
                                                     PartitionId{1, w}, o.channels, location));
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
    descriptors.push_back(std::move(d));
  }
  std::vector<InputGate*> gates;
  for (uint32_t w = 0; w < o.writers; ++w) {
    std::vector<InputChannelSpec> specs(o.channels);
    for (uint32_t c = 0; c < o.channels; ++c) specs[c] = InputChannelSpec{descriptors[w], c};
    SLUICE_ASSIGN_OR_RETURN(
        std::unique_ptr<InputGate> gate,
        rig->env->CreateInputGate(absl::StrCat("bench-gate-", w), specs, config.gate_options()));
    gates.push_back(gate.get());
    rig->gates.push_back(std::move(gate));
  }
  rig->input = std::make_unique<UnionInputGate>(std::move(gates));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- raw-handoff

// One 32 KiB buffer of the baseline.
struct RawBuffer {
  char* data = nullptr;
  size_t size = 0;
};

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

// The producer of the baseline. `kEightBytes`: the benchmark's default record, `[8][counter]`,
// written the way one would by hand for a fixed record (one byte and one 8-byte store); otherwise
// any size, copied from a prepared record like the shuffle's writers do.
template <bool kEightBytes>
void RawProducerLoop(RawHandoffQueues* queues, uint32_t channels, size_t buffer_size,
                     size_t record_size, const std::atomic<bool>& stop, Progress* progress,
                     WriterOutcome* out, uint64_t* waits) {
  std::string record(record_size, '\x5a');
  const size_t value_bytes = std::min<size_t>(8, record_size);
  // The length prefix: one byte below 128, else a two-byte varint (records are at most 16 KiB).
  char header[2];
  size_t header_size = 1;
  if (record_size < 0x80) {
    header[0] = static_cast<char>(record_size);
  } else {
    header[0] = static_cast<char>((record_size & 0x7f) | 0x80);
    header[1] = static_cast<char>(record_size >> 7);
    header_size = 2;
  }
  const size_t framed = header_size + record_size;
  std::vector<RawBuffer*> current(channels);
  for (RawBuffer*& b : current) b = queues->PopFree(waits);
  uint32_t channel = 0;
  uint64_t counter = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    for (uint64_t i = 0; i < kPublishEvery; ++i) {
      RawBuffer* b = current[channel];
      if (ABSL_PREDICT_FALSE(buffer_size - b->size < framed)) {
        queues->PushFull(b);
        b = current[channel] = queues->PopFree(waits);
      }
      char* p = b->data + b->size;
      if constexpr (kEightBytes) {
        *p = 8;
        std::memcpy(p + 1, &counter, 8);
        b->size += 9;
      } else {
        StoreValue(record.data(), counter, value_bytes);
        if (ABSL_PREDICT_TRUE(header_size == 1)) {
          *p = header[0];
        } else {
          std::memcpy(p, header, header_size);
        }
        std::memcpy(p + header_size, record.data(), record_size);
        b->size += framed;
      }
      ++counter;
      if (++channel == channels) channel = 0;
    }
    progress->value.store(counter, std::memory_order_relaxed);
  }
  for (RawBuffer* b : current) {
    if (b->size > 0) {
      queues->PushFull(b);
    } else {
      queues->PushFree(b);
    }
  }
  queues->PushFull(nullptr);
  out->sent = counter;
  out->sum = SumOfValues(counter, ValueMask(value_bytes));
}

void RawConsumerLoop(RawHandoffQueues* queues, size_t record_size, Progress* progress,
                     ConsumerOutcome* out, uint64_t* buffers) {
  uint64_t count = 0;
  uint64_t sum = 0;
  uint64_t wrong_size = 0;
  uint64_t waits = 0;
  while (RawBuffer* b = queues->PopFull(&waits)) {
    const char* p = b->data;
    const char* const end = p + b->size;
    while (p < end) {
      size_t length = static_cast<uint8_t>(*p++);
      if (ABSL_PREDICT_FALSE(length >= 0x80)) {
        length = (length & 0x7f) | (size_t{static_cast<uint8_t>(*p++)} << 7);
      }
      sum += LoadValue(p, length);
      wrong_size += length != record_size;
      p += length;
      ++count;
    }
    ++*buffers;
    b->size = 0;
    queues->PushFree(b);
    progress->value.store(count, std::memory_order_relaxed);
  }
  out->ended = true;
  out->received = count;
  out->sum = sum;
  out->wrong_size = wrong_size;
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
  // The pool is populated at start: refuse what would not fit comfortably in memory.
  const uint64_t bytes = uint64_t{ShufflePoolSegments(o)} * o.segment_size;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page_size > 0 &&
      bytes > static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / 2) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d writers x %d channels need a buffer pool of %s, more than half of this machine's "
        "memory; lower --writers or --channels",
        o.writers, o.channels, FormatBytes(bytes)));
  }
  return ShuffleServiceRegistry::Find(o.service).status();
}

absl::StatusOr<ThroughputResult> RunShuffleThroughput(const ShuffleBenchOptions& o) {
  SLUICE_RETURN_IF_ERROR(ValidateShuffleBenchOptions(o));
  ShuffleRig rig;
  SLUICE_RETURN_IF_ERROR(BuildShuffle(o, &rig));

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
  MeasurePhases(o, RunningThreads{&writers, &consumer, &sent, &received, &failed}, &result);
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
  // as many again plus a few in flight.
  const size_t count = size_t{o.channels} * 2 + 8;
  const size_t size = o.segment_size;
  std::unique_ptr<char[]> memory(new char[count * size]);
  std::memset(memory.get(), 0, count * size);  // fault the pages in before the clock starts
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
  uint64_t producer_waits = 0;
  uint64_t buffers_parsed = 0;
  std::thread consumer(
      [&] { RawConsumerLoop(&queues, o.record_size, &received, &consumer_out, &buffers_parsed); });
  std::vector<std::thread> producer;
  producer.emplace_back([&] {
    if (o.record_size == 8) {
      RawProducerLoop<true>(&queues, o.channels, size, o.record_size, stop, &sent[0],
                            &producer_out[0], &producer_waits);
    } else {
      RawProducerLoop<false>(&queues, o.channels, size, o.record_size, stop, &sent[0],
                             &producer_out[0], &producer_waits);
    }
  });

  ThroughputResult result;
  result.name = std::string(kRawHandoff);
  result.record_size = o.record_size;
  MeasurePhases(o, RunningThreads{&producer, &consumer, &sent, &received, &failed}, &result);
  stop.store(true);
  producer[0].join();
  consumer.join();
  SLUICE_RETURN_IF_ERROR(CheckCounts(kRawHandoff, producer_out, consumer_out, o.record_size));
  result.total_records = consumer_out.received;
  result.buffers = buffers_parsed;
  result.writer_waits = producer_waits;
  result.consumer_waits = consumer_out.waits;
  return result;
}

// ---------------------------------------------------------------- the command

namespace {

std::string ResultJson(const ThroughputResult& r) {
  return absl::StrFormat("{\"name\": %s, \"records_per_ms\": %.1f, \"gbytes_per_s\": %.4f}",
                         JsonString(r.name), r.records_per_ms(), r.gbytes_per_s());
}

std::string NanosPerRecord(double cpu_seconds, uint64_t records) {
  return records > 0 ? absl::StrFormat("%.2f", cpu_seconds * 1e9 / static_cast<double>(records))
                     : std::string("-");
}

}  // namespace

int RunBenchShuffle(Args args) {
  ShuffleBenchOptions o;
  std::string transport = "local";
  uint64_t record_size = o.record_size;
  uint64_t writers = o.writers;
  uint64_t channels = o.channels;
  std::string json_path;
  OptionParser parser(
      "sluice bench shuffle",
      "Shuffle throughput in one process, after Flink's StreamNetworkThroughputBenchmark:\n"
      "--writers threads each write --record-size records (a counter) as fast as they can,\n"
      "round-robin into the --channels subpartitions of their own result partition; one consumer\n"
      "thread reads every channel through one input gate per writer, merged by a union gate\n"
      "(--consumer batch: PollRecords for the records of a buffer, PollNext for the rest),\n"
      "counts the records and sums their values. After --warmup, records the consumer receives\n"
      "during --seconds are counted; at the end the writers finish and the consumer must have\n"
      "received exactly what was sent.\n"
      "The baseline, raw-handoff, measured in the same run: one thread fills 32 KiB buffers\n"
      "([1-byte length][record], round-robin over as many channels) and hands full ones to a\n"
      "second thread over a mutex + condition variable; that thread parses every record.\n"
      "GB/s counts payload bytes (1 GB = 10^9 bytes).");
  parser.AddOption("--transport", "NAME",
                   "Shuffle service: local (in-process); uring and epoll need the net service",
                   "local", [&transport](std::string_view v) {
                     transport = std::string(v);
                     return absl::OkStatus();
                   });
  parser.AddBytes("--record-size", "Payload bytes per record", 1, kMaxBenchRecordSize,
                  &record_size);
  parser.AddCount("--writers", "N", "Writer threads, one result partition each", 1, 256, &writers);
  parser.AddCount("--channels", "N", "Subpartitions per writer (channels per input gate)", 1, 65536,
                  &channels);
  parser.AddOption("--flush-ms", "MS",
                   "Buffer timeout: flush partly filled buffers this often; 0 = after every "
                   "record, -1 = only full buffers",
                   "100", [&o](std::string_view v) {
                     int64_t ms = 0;
                     if (!absl::SimpleAtoi(absl::string_view(v.data(), v.size()), &ms) || ms < -1 ||
                         ms > 86'400'000) {
                       return absl::InvalidArgumentError(
                           "expected -1, 0 or a number of milliseconds up to 86400000");
                     }
                     o.flush_ms = ms;
                     return absl::OkStatus();
                   });
  parser.AddSeconds("--seconds", "Measured time of each row, after the warm-up", 0.1, 3600,
                    &o.seconds);
  parser.AddSeconds("--warmup", "Warm-up before each row's measured time", 0, 3600,
                    &o.warmup_seconds);
  std::string consumer = "batch";
  parser.AddChoice("--consumer", {"batch", "record"},
                   "How the consumer reads: batch = the records of a buffer with one "
                   "PollRecords call, record = each with PollNext",
                   &consumer);
  parser.AddString("--json", "FILE", "Also write the results as JSON here", &json_path);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  o.batch_consumer = consumer == "batch";

  if (transport == "uring" || transport == "epoll" || transport == "auto" || transport == "net") {
    absl::FPrintF(stderr,
                  "sluice bench shuffle: --transport %s needs the net shuffle service, which is "
                  "not built yet (it comes with the network data path); only --transport local "
                  "runs now\n",
                  transport);
    return kExitFailure;
  }
  if (absl::Status s = ShuffleServiceRegistry::Find(transport).status(); !s.ok()) {
    return ReportUsageError(parser.command(),
                            absl::InvalidArgumentError(absl::StrCat(
                                "bad value '", transport, "' for --transport: ", s.message())));
  }
  o.service = transport;
  o.record_size = record_size;
  o.writers = static_cast<uint32_t>(writers);
  o.channels = static_cast<uint32_t>(channels);
  if (absl::Status s = ValidateShuffleBenchOptions(o); !s.ok()) {
    return ReportUsageError(parser.command(), s);
  }

  const size_t pool_segments = ShufflePoolSegments(o);
  const ShuffleConfig defaults;
  absl::PrintF(
      "sluice bench shuffle: service %s, %d writers x %d channels, %s records, flush %s, "
      "%s consumer\n"
      "buffer pool: %d segments x %s = %s (%d partitions x up to %d buffers, + slack)\n"
      "each row: %gs warm-up, then %gs measured\n\n",
      o.service, o.writers, o.channels, FormatBytes(o.record_size),
      o.flush_ms < 0    ? std::string("only full buffers")
      : o.flush_ms == 0 ? std::string("after every record")
                        : absl::StrCat("every ", o.flush_ms, " ms"),
      consumer, pool_segments, FormatBytes(o.segment_size),
      FormatBytes(pool_segments * o.segment_size), o.writers,
      size_t{o.channels} * defaults.exclusive_buffers_per_channel +
          defaults.floating_buffers_per_gate,
      o.warmup_seconds, o.seconds);
  std::fflush(stdout);

  absl::StatusOr<ThroughputResult> raw = RunRawHandoff(o);
  if (!raw.ok()) {
    absl::FPrintF(stderr, "sluice bench shuffle: %s\n", raw.status().message());
    return kExitFailure;
  }
  absl::StatusOr<ThroughputResult> shuffle = RunShuffleThroughput(o);
  if (!shuffle.ok()) {
    absl::FPrintF(stderr, "sluice bench shuffle: FAILED: %s\n", shuffle.status().message());
    return kExitFailure;
  }

  const std::vector<const ThroughputResult*> rows = {&*raw, &*shuffle};
  Table table({"name", "records/ms", "GB/s", "vs raw-handoff"});
  for (const ThroughputResult* r : rows) {
    table.AddRow({r->name, absl::StrFormat("%.0f", r->records_per_ms()),
                  absl::StrFormat("%.3f", r->gbytes_per_s()),
                  raw->records_per_ms() > 0
                      ? absl::StrFormat("%.2fx", r->records_per_ms() / raw->records_per_ms())
                      : std::string("-")});
  }
  std::fputs(table.Render().c_str(), stdout);

  // Where the time went: CPU per record on each side, and how often threads blocked.
  absl::PrintF("\nCPU time per record and blocking, measured phase (%d CPUs):\n",
               std::thread::hardware_concurrency());
  Table cpu({"name", "writer ns", "consumer ns", "cores busy", "ctx switches/s", "records/buffer",
             "writer waits", "consumer waits"});
  for (const ThroughputResult* r : rows) {
    const CpuBreakdown& c = r->cpu;
    cpu.AddRow(
        {r->name, NanosPerRecord(c.writer_seconds, c.records_sent),
         NanosPerRecord(c.consumer_seconds, r->records),
         absl::StrFormat("%.2f", r->seconds > 0 ? c.process_seconds / r->seconds : 0),
         absl::StrFormat("%.0f", r->seconds > 0 ? static_cast<double>(c.voluntary_switches +
                                                                      c.involuntary_switches) /
                                                      r->seconds
                                                : 0),
         r->buffers > 0 ? absl::StrFormat("%.0f", static_cast<double>(r->total_records) /
                                                      static_cast<double>(r->buffers))
                        : std::string("-"),
         absl::StrCat(r->writer_waits), absl::StrCat(r->consumer_waits)});
  }
  std::fputs(cpu.Render().c_str(), stdout);
  absl::PrintF(
      "(writer ns: CPU of all writer threads per record written; consumer ns: of the consumer\n"
      " thread per record read; waits and records/buffer count the whole run)\n");

  if (!json_path.empty()) {
    const std::string json = absl::StrFormat(
        "{\n  \"benchmark\": \"shuffle\",\n"
        "  \"config\": {\"transport\": %s, \"record_size\": %d, \"writers\": %d, \"channels\": %d, "
        "\"flush_ms\": %d, \"consumer\": %s, \"seconds\": %g, \"warmup\": %g},\n"
        "  \"host\": {%s},\n"
        "  \"results\": [\n    %s\n  ],\n  \"baselines\": [\n    %s\n  ]\n}\n",
        JsonString(transport), o.record_size, o.writers, o.channels, o.flush_ms,
        JsonString(consumer), o.seconds, o.warmup_seconds, HostJsonFields(DescribeHost()),
        ResultJson(*shuffle), ResultJson(*raw));
    if (absl::Status s = WriteFileAtomically(json_path, json); !s.ok()) {
      absl::FPrintF(stderr, "sluice bench shuffle: %s\n", s.message());
      return kExitFailure;
    }
    absl::PrintF("\nwrote %s\n", json_path);
  }
  return kExitOk;
}

}  // namespace sluice::tools
