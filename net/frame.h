// The wire format shared by every transport: a fixed 24-byte little-endian header followed by
// `length` payload bytes. Transport-level frame types sit below kFirstUserType; the layers
// above (shuffle, state queries, control RPC) define their own types from there on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace sluice::net {

inline constexpr uint16_t kFrameMagic = 0x4C53;  // "SL" on the wire
inline constexpr uint8_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderSize = 24;
inline constexpr size_t kDefaultMaxFrameSize = 4 * 1024 * 1024;

enum class FrameType : uint8_t {
  kHello = 1,     // client -> server, first frame: FlatBuffers net.Hello
  kHelloAck = 2,  // server -> client: FlatBuffers net.HelloAck
  kError = 3,     // either way, then close: FlatBuffers net.Error
  kPing = 4,      // liveness; payload echoed in kPong
  kPong = 5,
  kFirstUserType = 16,
};

struct FrameHeader {
  uint8_t type = 0;
  uint16_t flags = 0;
  uint32_t channel = 0;  // logical channel multiplexed on the connection
  uint32_t length = 0;   // payload bytes after the header
  uint32_t backlog = 0;  // for credit-based flow control
  uint32_t sequence = 0;
};

// Writes `h` (with magic and version) into `out[0, kFrameHeaderSize)`.
void EncodeFrameHeader(const FrameHeader& h, char* out);

// Parses `in[0, kFrameHeaderSize)`. Errors name what was wrong: bad magic, an unsupported
// version, or a length above `max_frame_size`.
absl::StatusOr<FrameHeader> DecodeFrameHeader(const char* in, size_t max_frame_size);

std::string FrameTypeName(uint8_t type);

}  // namespace sluice::net
