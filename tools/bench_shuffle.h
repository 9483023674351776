// The shuffle throughput benchmark behind `sluice bench shuffle` and `sluice demo`, after Flink's
// StreamNetworkThroughputBenchmark. W writer threads each write records as fast as they can,
// round-robin over the C subpartitions of their own ResultPartition; one consumer thread reads
// all W x C channels through a UnionInputGate over W InputGates, counts the records and sums a
// value from each, so that nothing can be optimised away. After the writers Finish, the consumer
// must reach the end of input with exactly the records, and the sum, that the writers sent.
//
// Two ways to run it:
//  - In one process, through the configured service (`local`). Its baseline, "raw-handoff", is
//    the same record stream done by hand in two threads: one fills 32 KiB buffers ([varint
//    length][record], one current buffer per channel, round-robin) and hands each full buffer to
//    the other over a mutex + condition variable queue; the other parses every record and
//    returns the buffer to a free list. It is what the shuffle's machinery (pools, subpartition
//    queues, credit, channels, gates) is judged against.
//  - In two processes, through the `net` service over loopback TCP: the writers run in a second
//    process (`sluice shuffle-peer`, started by this one), this process is the consumer and
//    measures. Its baseline, "raw-tcp", moves the same records between the same two processes
//    by hand: W writer threads in the sender, each round-robin over its own C channels, fill
//    32 KiB buffers as above and write each full one, behind an 8-byte header (channel, length)
//    and under a mutex, to one plain blocking TCP socket; the consumer receives into one buffer
//    and walks the frames and records in place. No flow control: it is this machine's limit for
//    the workload.
//
// Throughput is the records the consumer received during the measured phase, which follows a
// warm-up, divided by its length. Functions here run one benchmark at a time and block until it
// is done; they are not meant to be called concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "tools/bench_report.h"
#include "tools/commands.h"

namespace sluice::tools {

// The baseline's name where a shuffle service name goes.
inline constexpr std::string_view kRawHandoff = "raw-handoff";

struct ShuffleBenchOptions {
  std::string service = "local";  // the shuffle service (ShuffleConfig::service)
  // For the `net` service: shuffle.net.transport (uring, epoll or auto).
  std::string net_transport = "auto";
  // Net runs: payloads of at least this many bytes are sent with IORING_OP_SEND_ZC (uring only;
  // shuffle.net.zero-copy-threshold); 0 = never.
  uint64_t zero_copy_threshold = 0;
  // Net runs: shuffle.net.direct-send-limit (frames a flushing thread writes itself).
  uint64_t direct_send_limit = 4096;
  size_t record_size = 8;  // payload bytes; the first min(8, size) carry a counter
  uint32_t writers = 4;
  uint32_t channels = 1000;  // subpartitions per writer = channels per gate
  int64_t flush_ms = 100;    // ResultPartitionOptions::buffer_timeout_ms: -1, 0 or a period
  // The consumer reads the records of a buffer with one PollRecords call (true), or each with
  // PollNext (false).
  bool batch_consumer = true;
  double warmup_seconds = 1;
  double seconds = 5;
  size_t segment_size = 32 * 1024;
};

// The largest --record-size: the baseline writes whole records into one buffer.
inline constexpr size_t kMaxBenchRecordSize = 16 * 1024;

// Where the CPU went during the measured phase (thread CPU clocks, getrusage). In a two-process
// run the writers' figures come from the sender, and the process figures add both processes.
struct CpuBreakdown {
  double writer_seconds = 0;          // all writer threads together
  double consumer_seconds = 0;        // the consumer thread
  double process_seconds = 0;         // the whole process (adds timers, I/O and main threads)
  uint64_t records_sent = 0;          // by the writers in the measured phase
  uint64_t voluntary_switches = 0;    // the process's context switches: blocking waits
  uint64_t involuntary_switches = 0;  // and preemptions
};

struct ThroughputResult {
  std::string name;  // service name ("net/uring" for net), or a baseline's
  size_t record_size = 0;
  uint64_t records = 0;         // received in the measured phase
  double seconds = 0;           // length of the measured phase
  uint64_t total_records = 0;   // received in the whole run, checked equal to those sent
  uint64_t buffers = 0;         // data buffers the consumer took in the whole run
  uint64_t writer_waits = 0;    // times a writer waited for a free buffer
  uint64_t consumer_waits = 0;  // times the consumer found nothing and waited
  CpuBreakdown cpu;
  // Two-process runs, on the receiver over the whole run (zero otherwise): the record bytes
  // delivered (length prefixes included: the data buffers' payload), the bytes received from
  // the wire (frame headers and control messages included), and the payload bytes the receive
  // path copied in user space.
  uint64_t payload_bytes = 0;
  uint64_t wire_bytes = 0;
  uint64_t copied_bytes = 0;

  double records_per_ms() const {
    return seconds > 0 ? static_cast<double>(records) / (seconds * 1e3) : 0;
  }
  // Payload bytes (record_size per record; framing not counted), 1 GB = 10^9 bytes.
  double gbytes_per_s() const {
    return seconds > 0 ? static_cast<double>(records) * record_size / seconds / 1e9 : 0;
  }
  double copied_per_byte() const {
    return payload_bytes > 0
               ? static_cast<double>(copied_bytes) / static_cast<double>(payload_bytes)
               : 0;
  }
  double wire_per_byte() const {
    return payload_bytes > 0 ? static_cast<double>(wire_bytes) / static_cast<double>(payload_bytes)
                             : 0;
  }
};

// Segments of the global pool of each process of a shuffle run: every writer's partition at its
// maximum (channels x exclusive + floating), plus slack, rounded up to 2 MiB. The same covers a
// net receiver, whose W gates reserve channels x exclusive + floating each up front.
size_t ShufflePoolSegments(const ShuffleBenchOptions& options);

// Checks the options; errors name the option. Whether the service is in this build is the
// runs' to say.
absl::Status ValidateShuffleBenchOptions(const ShuffleBenchOptions& options);

// The shuffle run described above in one process, through the configured shuffle service.
absl::StatusOr<ThroughputResult> RunShuffleThroughput(const ShuffleBenchOptions& options);
// The raw-handoff baseline with the same record size, channel count and phases (one producer).
absl::StatusOr<ThroughputResult> RunRawHandoff(const ShuffleBenchOptions& options);

// The shuffle run in two processes through the `net` service (options.service must be "net"):
// a `sluice shuffle-peer` child writes, this process reads and measures.
absl::StatusOr<ThroughputResult> RunNetShuffleThroughput(const ShuffleBenchOptions& options);
// The raw-tcp baseline (kRawTcp, tools/bench_net.h) with the same workload and phases.
absl::StatusOr<ThroughputResult> RunRawTcpShuffle(const ShuffleBenchOptions& options);
// The name of a net run's result: "net/<transport>".
std::string NetShuffleName(const ShuffleBenchOptions& options);

// ---------------------------------------------------------------- latency
// (bench_shuffle_latency.cc)

struct LatencyBenchOptions {
  std::string transport = "uring";    // local (one process), or uring, epoll, auto (net service)
  uint64_t record_size = 16;          // at least 16: a sequence and a time
  uint64_t direct_send_limit = 4096;  // shuffle.net.direct-send-limit
  double warmup_seconds = 1;
  double seconds = 3;
};

// The name of a latency run's result: "local" or "net/<transport>".
std::string LatencyRowName(const LatencyBenchOptions& options);
// Round trips of one record through two shuffles, A -> B -> A, a flush after every record.
absl::StatusOr<BenchEntry> RunShufflePingPong(const LatencyBenchOptions& options);
// The same records echoed over one blocking socket between two processes.
absl::StatusOr<BenchEntry> RunRawTcpPingPong(const LatencyBenchOptions& options);
// One-way latency at a constant `rate` (records/ms), from each record's due time.
absl::StatusOr<BenchEntry> RunShuffleOneWay(const LatencyBenchOptions& options, double rate);
absl::StatusOr<BenchEntry> RunRawTcpOneWay(const LatencyBenchOptions& options, double rate);

// `sluice bench shuffle`; `--mode latency` goes to RunBenchShuffleLatency.
int RunBenchShuffle(Args args);
int RunBenchShuffleLatency(Args args);
// `sluice shuffle-peer --role echo|paced`: the peer of the latency runs.
int RunLatencyPeer(Args args);

}  // namespace sluice::tools
