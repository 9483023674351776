// What the shuffle benchmark's in-process runs (bench_shuffle.cc) and its two-process runs
// (bench_shuffle_net.cc) share: the record values, the writer and consumer loops, the raw
// baselines' buffers and record walk, the phase timing and the exactly-once check. Not an API:
// only those two files include it. Thread contracts are those of bench_shuffle.h.
#pragma once

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/buffer_pool.h"
#include "shuffle/input_gate.h"
#include "shuffle/record_format.h"
#include "shuffle/record_writer.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"
#include "tools/bench_shuffle.h"
#include "tools/cli.h"

namespace sluice::tools::internal {

// Records between two updates of a thread's published counter (a power of two).
inline constexpr uint64_t kPublishEvery = 1024;
// A consumer that receives nothing for this long gives up: something is stuck.
inline constexpr absl::Duration kStallTimeout = absl::Seconds(30);
// How long the consumer blocks in one wait before it looks at the abort flag again.
inline constexpr absl::Duration kWaitSlice = absl::Milliseconds(100);

// A counter one thread publishes for the main thread, on its own cache line.
struct alignas(64) Progress {
  std::atomic<uint64_t> value{0};
};

// ---------------------------------------------------------------- record values

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

// ---------------------------------------------------------------- timing

double CpuSeconds(clockid_t clock);
double ThreadCpuSeconds(std::thread& t);

// The state of one process's side of a run at one instant.
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

// The threads and counters of a running benchmark in this process, for the main thread to time.
// A null member is a side that runs in the other process (or not at all).
struct RunningThreads {
  std::vector<std::thread>* writers = nullptr;
  std::thread* consumer = nullptr;
  const std::vector<Progress>* sent = nullptr;  // one per writer
  const Progress* received = nullptr;
};
Snapshot TakeSnapshot(const RunningThreads& run);

// Warm-up, then the measured phase, each boundary a call of `snapshot`: fills the measured
// fields of `out` from the difference. Returns false, with `out` untouched, when `failed` turned
// true before the end.
bool MeasurePhases(const ShuffleBenchOptions& o, const std::atomic<bool>& failed,
                   absl::FunctionRef<Snapshot()> snapshot, ThroughputResult* out);

// ---------------------------------------------------------------- outcomes

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

// The end-of-run check every run shares: the consumer reached the end of input with exactly the
// records, of the right size, and the value sum that the writers sent.
absl::Status CheckCounts(std::string_view name, const std::vector<WriterOutcome>& writers,
                         const ConsumerOutcome& consumer, size_t record_size);

// ---------------------------------------------------------------- the shuffle

// The ShuffleConfig of a run, from the `shuffle.*` keys a deployment would set: the service,
// the buffer timeout, and for `net` its transport and a loopback data server. Fails when the
// service is not in this build.
absl::StatusOr<ShuffleConfig> BenchShuffleConfig(const ShuffleBenchOptions& o);

// Everything a shuffle run creates in one process, declared in the order it is built, so that
// it is torn down in reverse: readers, then writers, then the service, then the memory.
struct ShuffleRig {
  std::unique_ptr<BufferPool> pool;
  std::unique_ptr<ShuffleMaster> master;
  std::unique_ptr<ShuffleEnvironment> env;
  std::vector<std::shared_ptr<ResultPartition>> partitions;
  std::vector<RecordWriter> writers;
  std::vector<std::unique_ptr<InputGate>> gates;
  std::unique_ptr<UnionInputGate> input;

  ~ShuffleRig();
};

// The global pool (ShufflePoolSegments), the master and the environment of worker `worker_id`.
absl::Status StartShuffleService(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                                 std::string worker_id, ShuffleRig* rig);
// The descriptors of the W partitions (result 1, producers 0 .. W-1, C subpartitions each) as
// `master` registers them. Deterministic: two processes that register with the same location
// get the same descriptors.
absl::StatusOr<std::vector<ShuffleDescriptor>> RegisterBenchPartitions(
    const ShuffleBenchOptions& o, ShuffleMaster& master, const ProducerLocation& producer);
// One result partition, and a round-robin RecordWriter over it, per descriptor.
absl::Status AddBenchWriters(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                             const std::vector<ShuffleDescriptor>& partitions, ShuffleRig* rig);
// One input gate of C channels per descriptor, and the union over them (rig->input).
absl::Status AddBenchGates(const ShuffleBenchOptions& o, const ShuffleConfig& config,
                           const std::vector<ShuffleDescriptor>& partitions, ShuffleRig* rig);

// A writer thread: records until `stop`, then Finish (or Fail the partition on an error).
void ShuffleWriterLoop(RecordWriter* writer, size_t record_size, const std::atomic<bool>& stop,
                       Progress* progress, WriterOutcome* out);
// The consumer thread: everything until the end of input, or an error, or `abort`.
void ShuffleConsumerLoop(UnionInputGate* gate, size_t record_size, bool batch,
                         const std::atomic<bool>& abort, Progress* progress, ConsumerOutcome* out);

// ---------------------------------------------------------------- the raw baselines

// One buffer of a baseline: records framed as in a shuffle buffer, for one channel.
struct RawBuffer {
  char* data = nullptr;
  size_t size = 0;
  uint32_t channel = 0;
};

// The consumer's running totals.
struct RecordTally {
  uint64_t count = 0;
  uint64_t sum = 0;
  uint64_t wrong_size = 0;
};

// Decodes the record length at [p, end) (shuffle/record_format.h's varint). Returns its size in
// bytes, or 0 when [p, end) ends inside it; lengths of more than 32 bits decode as UINT32_MAX.
inline size_t DecodeRecordLength(const char* p, const char* end, uint32_t* length) {
  uint64_t v = 0;
  for (size_t i = 0; i < kMaxVarintLength && p + i < end; ++i) {
    const auto byte = static_cast<uint8_t>(p[i]);
    v |= uint64_t{byte & 0x7fu} << (7 * i);
    if (byte < 0x80) {
      *length = v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v);
      return i + 1;
    }
  }
  if (p + kMaxVarintLength <= end) {
    *length = UINT32_MAX;
    return kMaxVarintLength;
  }
  return 0;
}

// Counts and sums the records in [p, p + n) and returns the offset where the walk stopped: n when
// the bytes hold whole records, more when the last length claims bytes past the end (corrupt
// data). No check per record: raw-handoff reads its own buffers. REQUIRES: kRawWalkPadding
// readable bytes after p + n.
inline constexpr size_t kRawWalkPadding = kMaxVarintLength + 8;
inline size_t TallyRecords(const char* p, size_t n, size_t record_size, RecordTally* tally) {
  uint64_t count = tally->count;
  uint64_t sum = tally->sum;
  uint64_t wrong_size = tally->wrong_size;
  size_t pos = 0;
  while (pos < n) {
    size_t length = static_cast<uint8_t>(p[pos]);
    if (ABSL_PREDICT_TRUE(length < 0x80)) {
      ++pos;
    } else {
      uint32_t long_length = 0;
      pos += DecodeRecordLength(p + pos, p + pos + kMaxVarintLength, &long_length);
      length = long_length;
    }
    sum += LoadValue(p + pos, length);
    wrong_size += length != record_size;
    ++count;
    pos += length;
  }
  tally->count = count;
  tally->sum = sum;
  tally->wrong_size = wrong_size;
  return pos;
}

// A baseline producer: records of `record_size` (a counter) round-robin over the channels of
// `current` (one buffer each), framed `[varint length][record]` as the shuffle frames them. A
// full buffer goes to `sink->Full(b)`, which returns the buffer to go on with for that channel,
// or nullptr to stop (the sink failed). The buffers being filled stay in `current`.
// `kEightBytes`: the benchmark's default record, `[8][counter]`, written the way one would by
// hand for a fixed record (one byte and one 8-byte store); otherwise any size, copied from a
// prepared record as the shuffle's writers do.
template <bool kEightBytes, typename Sink>
void RawProducerLoop(Sink* sink, std::vector<RawBuffer*>* current, size_t buffer_size,
                     size_t record_size, const std::atomic<bool>& stop, Progress* progress,
                     WriterOutcome* out) {
  std::string record(record_size, '\x5a');
  const size_t value_bytes = std::min<size_t>(8, record_size);
  char header[kMaxVarintLength];
  const size_t header_size =
      static_cast<size_t>(EncodeVarint(header, static_cast<uint32_t>(record_size)) - header);
  const size_t framed = header_size + record_size;
  std::vector<RawBuffer*>& buffers = *current;
  const auto channels = static_cast<uint32_t>(buffers.size());
  uint32_t channel = 0;
  uint64_t counter = 0;
  bool sink_ok = true;
  while (sink_ok && !stop.load(std::memory_order_relaxed)) {
    for (uint64_t i = 0; i < kPublishEvery; ++i) {
      RawBuffer* b = buffers[channel];
      if (ABSL_PREDICT_FALSE(buffer_size - b->size < framed)) {
        b = sink->Full(b);
        if (ABSL_PREDICT_FALSE(b == nullptr)) {
          sink_ok = false;
          break;
        }
        buffers[channel] = b;
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
  progress->value.store(counter, std::memory_order_relaxed);
  out->sent = counter;
  out->sum = SumOfValues(counter, ValueMask(value_bytes));
}

// ---------------------------------------------------------------- the command line

// The options that shape the workload, as `bench shuffle` parses them and passes them on to the
// sender process it starts (which parses them the same way).
struct WorkloadFlags {
  explicit WorkloadFlags(const ShuffleBenchOptions& defaults);
  // Adds --record-size, --writers, --channels, --flush-ms, --zero-copy-threshold and
  // --direct-send-limit. `this` must
  // outlive the parse.
  void AddTo(OptionParser& parser);
  void ApplyTo(ShuffleBenchOptions* o) const;
  // The same options as arguments, for a child process.
  static std::vector<std::string> Args(const ShuffleBenchOptions& o);

  uint64_t record_size;
  uint64_t writers;
  uint64_t channels;
  int64_t flush_ms;
  uint64_t zero_copy_threshold;
  uint64_t direct_send_limit;
};

// Adds --direct-send-limit (shuffle.net.direct-send-limit) into `limit`.
void AddDirectSendLimitOption(OptionParser& parser, uint64_t* limit);

}  // namespace sluice::tools::internal
