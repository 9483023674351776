#include "tests/integration/net_peer.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/checksum.h"
#include "base/status.h"
#include "shuffle/event.h"

namespace sluice::integration {
namespace {

// SplitMix64: a cheap, well-mixed function of its input.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t RecordSeed(uint32_t partition, uint64_t index) {
  return Mix((uint64_t{partition} << 48) ^ index);
}

}  // namespace

std::string PeerRecord(uint32_t partition, uint64_t index, size_t max_size) {
  uint64_t state = RecordSeed(partition, index);
  const uint64_t pick = Mix(state);
  const size_t limit = pick % 4 != 0 ? std::min<size_t>(max_size, 63) : max_size;
  const size_t size = static_cast<size_t>((pick >> 8) % (uint64_t{limit} + 1));
  std::string record(size, '\0');
  for (size_t at = 0; at < size; at += sizeof(state)) {
    state = Mix(state);
    std::memcpy(record.data() + at, &state, std::min(sizeof(state), size - at));
  }
  return record;
}

std::string PeerKey(uint32_t partition, uint64_t index) {
  return absl::StrCat(Mix(RecordSeed(partition, index) ^ 0x6b6579) % 1000000);
}

void ChannelDigest::Add(std::string_view record) {
  const auto length = static_cast<uint32_t>(record.size());
  char prefix[sizeof(length)];
  std::memcpy(prefix, &length, sizeof(length));
  crc = Crc32c(crc, prefix, sizeof(prefix));
  crc = Crc32c(crc, record.data(), record.size());
  ++records;
  bytes += record.size();
}

std::string FormatDigestLine(uint32_t channel, const ChannelDigest& digest) {
  return absl::StrFormat("DIGEST %d %d %d %08x", channel, digest.records, digest.bytes, digest.crc);
}

absl::Status ParseDigestLine(std::string_view line, uint32_t* channel, ChannelDigest* digest) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(line.data(), line.size()), ' ');
  if (parts.size() != 5 || parts[0] != "DIGEST" || !absl::SimpleAtoi(parts[1], channel) ||
      !absl::SimpleAtoi(parts[2], &digest->records) ||
      !absl::SimpleAtoi(parts[3], &digest->bytes) || !absl::SimpleHexAtoi(parts[4], &digest->crc)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "not a digest line (DIGEST <channel> <records> <bytes> <crc>): '%s'", line));
  }
  return absl::OkStatus();
}

Config NetPeerConfig(std::string_view transport) {
  Config config;
  config.Set("shuffle.service", "net");
  config.Set("shuffle.net.transport", std::string(transport));
  config.Set("shuffle.net.bind", "127.0.0.1:0");
  return config;
}

absl::StatusOr<std::unique_ptr<PeerWorker>> PeerWorker::Create(std::string worker_id,
                                                               const Config& config) {
  std::unique_ptr<PeerWorker> worker(new PeerWorker());
  SLUICE_ASSIGN_OR_RETURN(worker->config_, ShuffleConfig::FromConfig(config));
  BufferPoolOptions pool;
  pool.segment_size = kPeerSegmentSize;
  pool.num_segments = kPeerSegments;
  pool.try_hugepages = false;
  SLUICE_ASSIGN_OR_RETURN(worker->pool_, BufferPool::Create(pool));
  worker->timer_ = std::make_unique<TimerService>(worker_id + "-timer");
  SLUICE_ASSIGN_OR_RETURN(worker->master_, CreateShuffleMaster(worker->config_));
  ShuffleEnvironmentContext context;
  context.worker_id = std::move(worker_id);
  context.pool = worker->pool_.get();
  context.timer = worker->timer_.get();
  SLUICE_ASSIGN_OR_RETURN(worker->env_, CreateShuffleEnvironment(worker->config_, context));
  return worker;
}

PeerWorker::~PeerWorker() {
  // The environment goes first: its connections and partitions hold segments and timers.
  if (env_ != nullptr) env_->Close();
  env_.reset();
  master_.reset();
  timer_.reset();
  pool_.reset();
}

absl::StatusOr<std::vector<ShuffleDescriptor>> PeerWorker::Register(
    uint64_t first_result, uint32_t count, uint32_t subpartitions,
    const std::string& producer_address) {
  std::vector<ShuffleDescriptor> out;
  for (uint32_t i = 0; i < count; ++i) {
    SLUICE_ASSIGN_OR_RETURN(ShuffleDescriptor d,
                            master_->RegisterPartition(
                                PartitionId{first_result + i, 0}, subpartitions,
                                ProducerLocation{std::string(kProducerWorker), producer_address}));
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<InputGate>> PeerWorker::GateOver(
    const std::vector<ShuffleDescriptor>& partitions) {
  std::vector<InputChannelSpec> channels;
  for (const ShuffleDescriptor& d : partitions) {
    for (uint32_t s = 0; s < d.num_subpartitions; ++s) channels.push_back(InputChannelSpec{d, s});
  }
  return env_->CreateInputGate("peer-gate", channels, config_.gate_options());
}

absl::Status DrainGate(InputGate& gate, absl::Duration wait, Digests* digests,
                       const std::function<void(const Digests&)>& on_buffer) {
  for (uint32_t c = 0; c < gate.num_channels(); ++c) (*digests)[c];
  uint64_t buffers = gate.buffers_taken();
  InputItem item;
  while (true) {
    SLUICE_RETURN_IF_ERROR(gate.WaitNext(&item, wait));
    if (on_buffer && gate.buffers_taken() != buffers) {
      buffers = gate.buffers_taken();
      on_buffer(*digests);
    }
    switch (item.kind) {
      case InputItem::Kind::kNone:
        return absl::DeadlineExceededError(absl::StrFormat(
            "gate %s: nothing arrived for %s", gate.name(), absl::FormatDuration(wait)));
      case InputItem::Kind::kEnd:
        return absl::OkStatus();
      case InputItem::Kind::kEvent:
        if (item.event->type != EventType::kEndOfPartition) {
          return absl::FailedPreconditionError(
              absl::StrFormat("channel %d delivered an unexpected event: %s", item.channel,
                              item.event->ToString()));
        }
        break;
      case InputItem::Kind::kRecord:
        (*digests)[item.channel].Add(item.record);
        break;
    }
  }
}

}  // namespace sluice::integration
