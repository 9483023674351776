// What the shuffle peer process (shuffle_peer.cc) and the tests that start it share: the records
// a producer writes, a pure function of (partition, index) so that a consumer in another process
// can recompute them; per-channel digests in a one-line text form; and a worker of the `net`
// shuffle service (pool, timer, master, environment) with the descriptor wiring both sides use.
// Nothing here is thread-safe beyond what ShuffleEnvironment itself promises.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/buffer_pool.h"
#include "base/config.h"
#include "base/timer_service.h"
#include "shuffle/input_gate.h"
#include "shuffle/shuffle_service.h"

namespace sluice::integration {

// Small segments, so that records span buffers and frames often.
inline constexpr size_t kPeerSegmentSize = 4096;
inline constexpr size_t kPeerSegments = 1024;
// The worker name producers register under.
inline constexpr std::string_view kProducerWorker = "producer";

// Record `index` of partition `partition` (0-based): three in four are under 64 bytes, the rest
// up to `max_size` bytes; some are empty.
std::string PeerRecord(uint32_t partition, uint64_t index, size_t max_size);
// Its key, for the hash and custom partitioners: decimal digits, so that the first byte (which
// the custom rule looks at) varies.
std::string PeerKey(uint32_t partition, uint64_t index);

// What one channel delivered: records and bytes, and a CRC32C over each record's 4-byte length
// and bytes, in order.
struct ChannelDigest {
  uint64_t records = 0;
  uint64_t bytes = 0;
  uint32_t crc = 0;

  void Add(std::string_view record);
  bool operator==(const ChannelDigest&) const = default;
};
using Digests = std::map<uint32_t, ChannelDigest>;

// "DIGEST <channel> <records> <bytes> <crc as 8 hex digits>"
std::string FormatDigestLine(uint32_t channel, const ChannelDigest& digest);
// The inverse; an error quoting the line when it is not one.
absl::Status ParseDigestLine(std::string_view line, uint32_t* channel, ChannelDigest* digest);

// shuffle.service = net over `transport`, serving on 127.0.0.1 at a port the kernel picks.
Config NetPeerConfig(std::string_view transport);

// One worker's share of the net service. Partitions and gates taken from it must be dropped
// before it is.
class PeerWorker {
 public:
  // Errors name the configuration key or the resource at fault.
  static absl::StatusOr<std::unique_ptr<PeerWorker>> Create(std::string worker_id,
                                                            const Config& config);
  ~PeerWorker();

  PeerWorker(const PeerWorker&) = delete;
  PeerWorker& operator=(const PeerWorker&) = delete;

  const ShuffleConfig& config() const { return config_; }
  ShuffleEnvironment& env() { return *env_; }
  BufferPool& pool() { return *pool_; }

  // Partition i of `count` is PartitionId{first_result + i, 0} with `subpartitions`
  // subpartitions, produced by kProducerWorker at `producer_address`.
  absl::StatusOr<std::vector<ShuffleDescriptor>> Register(uint64_t first_result, uint32_t count,
                                                          uint32_t subpartitions,
                                                          const std::string& producer_address);
  // One gate reading every subpartition of every partition: channel p * S + s is subpartition
  // s of partitions[p].
  absl::StatusOr<std::unique_ptr<InputGate>> GateOver(
      const std::vector<ShuffleDescriptor>& partitions);

 private:
  PeerWorker() = default;

  ShuffleConfig config_;
  std::unique_ptr<BufferPool> pool_;
  std::unique_ptr<TimerService> timer_;
  std::unique_ptr<ShuffleMaster> master_;
  std::unique_ptr<ShuffleEnvironment> env_;
};

// Reads `gate` to its end into `digests` (one entry per channel, empty ones included). Each wait
// for the next item is bounded by `wait`. `on_buffer`, when set, runs whenever the gate starts
// another data buffer, with the digests so far (a slow consumer sleeps there). Errors: the
// gate's own (a channel failure), nothing arriving within `wait`, or an event other than the
// end of a partition.
absl::Status DrainGate(InputGate& gate, absl::Duration wait, Digests* digests,
                       const std::function<void(const Digests&)>& on_buffer = nullptr);

}  // namespace sluice::integration
