#include "shuffle/event.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "base/logging.h"

namespace sluice {
namespace {

// [type:1][version:1][reserved:2] then the type's fields.
constexpr uint8_t kEventVersion = 1;
constexpr size_t kEventHeader = 4;

template <typename T>
void Put(std::string* out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // little-endian hosts only (checked in meson)
  out->append(bytes, sizeof(T));
}

template <typename T>
bool Get(std::string_view* in, T* v) {
  if (in->size() < sizeof(T)) return false;
  std::memcpy(v, in->data(), sizeof(T));
  in->remove_prefix(sizeof(T));
  return true;
}

}  // namespace

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kCheckpointBarrier:
      return "checkpoint-barrier";
    case EventType::kWatermark:
      return "watermark";
    case EventType::kEndOfPartition:
      return "end-of-partition";
    case EventType::kUser:
      return "user";
  }
  return "unknown";
}

Event Event::Barrier(CheckpointBarrier barrier) {
  Event e;
  e.type = EventType::kCheckpointBarrier;
  e.barrier = barrier;
  return e;
}
Event Event::Watermark(int64_t timestamp_ms) {
  Event e;
  e.type = EventType::kWatermark;
  e.watermark = timestamp_ms;
  return e;
}
Event Event::EndOfPartition() { return Event(); }
Event Event::User(uint32_t user_type, std::string payload) {
  Event e;
  e.type = EventType::kUser;
  e.user_type = user_type;
  e.user_payload = std::move(payload);
  return e;
}

std::string Event::ToString() const {
  switch (type) {
    case EventType::kCheckpointBarrier:
      return absl::StrFormat("barrier(id=%d, ts=%d, options=%#x)", barrier.id, barrier.timestamp_ms,
                             barrier.options);
    case EventType::kWatermark:
      return absl::StrFormat("watermark(%d)", watermark);
    case EventType::kEndOfPartition:
      return "end-of-partition";
    case EventType::kUser:
      return absl::StrFormat("user(type=%d, %d bytes)", user_type, user_payload.size());
  }
  return "unknown-event";
}

Buffer EncodeEvent(const Event& event) {
  std::string out;
  out.reserve(kEventHeader + 24 + event.user_payload.size());
  out.push_back(static_cast<char>(event.type));
  out.push_back(static_cast<char>(kEventVersion));
  out.append(2, '\0');
  switch (event.type) {
    case EventType::kCheckpointBarrier:
      Put(&out, event.barrier.id);
      Put(&out, event.barrier.timestamp_ms);
      Put(&out, event.barrier.options);
      break;
    case EventType::kWatermark:
      Put(&out, event.watermark);
      break;
    case EventType::kEndOfPartition:
      break;
    case EventType::kUser:
      SLUICE_CHECK(event.user_payload.size() <= kMaxUserEventPayload);
      Put(&out, event.user_type);
      Put(&out, static_cast<uint32_t>(event.user_payload.size()));
      out.append(event.user_payload);
      break;
  }
  return Buffer::CopyOf(out);
}

absl::StatusOr<Event> DecodeEvent(std::string_view bytes) {
  if (bytes.size() < kEventHeader) {
    return absl::DataLossError(absl::StrFormat(
        "event of %d bytes is shorter than its %d-byte header", bytes.size(), kEventHeader));
  }
  const auto type = static_cast<uint8_t>(bytes[0]);
  const auto version = static_cast<uint8_t>(bytes[1]);
  if (version != kEventVersion) {
    return absl::DataLossError(absl::StrFormat(
        "event version %d is not supported (this build reads %d)", version, kEventVersion));
  }
  std::string_view in = bytes.substr(kEventHeader);
  Event e;
  bool ok = true;
  switch (type) {
    case static_cast<uint8_t>(EventType::kCheckpointBarrier):
      e.type = EventType::kCheckpointBarrier;
      ok = Get(&in, &e.barrier.id) && Get(&in, &e.barrier.timestamp_ms) &&
           Get(&in, &e.barrier.options);
      break;
    case static_cast<uint8_t>(EventType::kWatermark):
      e.type = EventType::kWatermark;
      ok = Get(&in, &e.watermark);
      break;
    case static_cast<uint8_t>(EventType::kEndOfPartition):
      e.type = EventType::kEndOfPartition;
      break;
    case static_cast<uint8_t>(EventType::kUser): {
      e.type = EventType::kUser;
      uint32_t size = 0;
      ok = Get(&in, &e.user_type) && Get(&in, &size);
      if (ok && (size > kMaxUserEventPayload || size > in.size())) {
        return absl::DataLossError(
            absl::StrFormat("user event claims a %d-byte payload but %d bytes follow (limit %d)",
                            size, in.size(), kMaxUserEventPayload));
      }
      if (ok) {
        e.user_payload.assign(in.data(), size);
        in.remove_prefix(size);
      }
      break;
    }
    default:
      return absl::DataLossError(absl::StrFormat("unknown event type %d", type));
  }
  if (!ok) {
    return absl::DataLossError(absl::StrFormat("truncated %s event: %d bytes",
                                               std::string(EventTypeName(e.type)), bytes.size()));
  }
  if (!in.empty()) {
    return absl::DataLossError(absl::StrFormat("%d unexpected bytes after a %s event", in.size(),
                                               std::string(EventTypeName(e.type))));
  }
  return e;
}

}  // namespace sluice
