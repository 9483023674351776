#include "net/frame.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace sluice::net {
namespace {

// Fixed little-endian layout; x86-64 and aarch64 are little-endian, so these are plain copies.
template <typename T>
void Put(char* out, size_t offset, T v) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);
  std::memcpy(out + offset, &v, sizeof(T));
}
template <typename T>
T Get(const char* in, size_t offset) {
  T v;
  std::memcpy(&v, in + offset, sizeof(T));
  return v;
}

// Layout: magic u16 | version u8 | type u8 | flags u16 | reserved u16 |
//         channel u32 | length u32 | backlog u32 | sequence u32
constexpr size_t kMagicAt = 0, kVersionAt = 2, kTypeAt = 3, kFlagsAt = 4, kReservedAt = 6,
                 kChannelAt = 8, kLengthAt = 12, kBacklogAt = 16, kSequenceAt = 20;

}  // namespace

void EncodeFrameHeader(const FrameHeader& h, char* out) {
  Put<uint16_t>(out, kMagicAt, kFrameMagic);
  Put<uint8_t>(out, kVersionAt, kFrameVersion);
  Put<uint8_t>(out, kTypeAt, h.type);
  Put<uint16_t>(out, kFlagsAt, h.flags);
  Put<uint16_t>(out, kReservedAt, 0);
  Put<uint32_t>(out, kChannelAt, h.channel);
  Put<uint32_t>(out, kLengthAt, h.length);
  Put<uint32_t>(out, kBacklogAt, h.backlog);
  Put<uint32_t>(out, kSequenceAt, h.sequence);
}

absl::StatusOr<FrameHeader> DecodeFrameHeader(const char* in, size_t max_frame_size) {
  const auto magic = Get<uint16_t>(in, kMagicAt);
  if (magic != kFrameMagic) {
    return absl::DataLossError(
        absl::StrFormat("bad frame magic 0x%04x (expected 0x%04x): the peer does not speak the "
                        "Sluice protocol or the stream is out of step",
                        magic, kFrameMagic));
  }
  const auto version = Get<uint8_t>(in, kVersionAt);
  if (version != kFrameVersion) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "unsupported frame version %d (this build speaks version %d)", version, kFrameVersion));
  }
  FrameHeader h;
  h.type = Get<uint8_t>(in, kTypeAt);
  h.flags = Get<uint16_t>(in, kFlagsAt);
  h.channel = Get<uint32_t>(in, kChannelAt);
  h.length = Get<uint32_t>(in, kLengthAt);
  h.backlog = Get<uint32_t>(in, kBacklogAt);
  h.sequence = Get<uint32_t>(in, kSequenceAt);
  if (h.length > max_frame_size) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "frame of %d bytes (type %s, channel %d) exceeds the maximum frame size of %d bytes "
        "(option max_frame_size)",
        h.length, FrameTypeName(h.type), h.channel, max_frame_size));
  }
  return h;
}

std::string FrameTypeName(uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: return "hello";
    case FrameType::kHelloAck: return "hello-ack";
    case FrameType::kError: return "error";
    case FrameType::kPing: return "ping";
    case FrameType::kPong: return "pong";
    default: return absl::StrFormat("%d", type);
  }
}

}  // namespace sluice::net
