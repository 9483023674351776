// In-band events: what travels between records in a channel's stream. Each event is encoded into
// a small buffer of its own, so a consumer sees it exactly where the producer put it (or ahead of
// queued data, for priority events). The encoding is fixed little-endian binary; DecodeEvent
// checks every length, because on the `net` service these bytes come from another process.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "base/buffer.h"

namespace sluice {

enum class EventType : uint8_t {
  kCheckpointBarrier = 1,
  kWatermark = 2,
  kEndOfPartition = 3,
  kUser = 4,
};
std::string_view EventTypeName(EventType type);

// Options of a checkpoint barrier (bit flags).
inline constexpr uint32_t kBarrierUnaligned = 1u << 0;  // sent as a priority event
inline constexpr uint32_t kBarrierSavepoint = 1u << 1;

struct CheckpointBarrier {
  uint64_t id = 0;
  int64_t timestamp_ms = 0;
  uint32_t options = 0;

  bool unaligned() const { return (options & kBarrierUnaligned) != 0; }
  bool operator==(const CheckpointBarrier&) const = default;
};

struct Event {
  EventType type = EventType::kEndOfPartition;
  CheckpointBarrier barrier;  // kCheckpointBarrier
  int64_t watermark = 0;      // kWatermark: event time in milliseconds
  uint32_t user_type = 0;     // kUser: the application's own tag
  std::string user_payload;   // kUser

  static Event Barrier(CheckpointBarrier barrier);
  static Event Watermark(int64_t timestamp_ms);
  static Event EndOfPartition();
  static Event User(uint32_t user_type, std::string payload);

  bool operator==(const Event&) const = default;
  std::string ToString() const;
};

// User payloads are capped so that an event always fits in one frame.
inline constexpr size_t kMaxUserEventPayload = 1 << 20;

// The event as a fresh unpooled buffer (events are rare; they never take a pool segment, so a
// producer whose pool is exhausted can still send a barrier or end its partition).
// REQUIRES: user_payload.size() <= kMaxUserEventPayload.
Buffer EncodeEvent(const Event& event);
// Parses an encoded event; errors name what is wrong (unknown type, truncated, trailing bytes).
absl::StatusOr<Event> DecodeEvent(std::string_view bytes);

}  // namespace sluice
