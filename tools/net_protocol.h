// The protocol between the net benchmark's client (`sluice demo`, `sluice bench net`) and its
// peer process (the hidden `sluice net-peer`): a one-way stream paced by a sliding window of
// acknowledgements and verified by a summary at its end, an echo for ping-pong, and a final report
// of the peer's transport counters. The same frames travel over every transport and over the
// raw-tcp baseline. Pure data and codecs; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "net/frame.h"

namespace sluice::tools {

enum class BenchFrame : uint8_t {
  // client -> peer: a new stream. header.sequence = acknowledge every N data frames;
  // header.flags & kVerifyFlag = compute CRC32C of the payload bytes.
  kStreamBegin = static_cast<uint8_t>(net::FrameType::kFirstUserType),
  kData,          // client -> peer; header.sequence = index of the frame in its stream
  kAck,           // peer -> client; header.sequence = data frames received so far
  kStreamEnd,     // client -> peer: no more data; the peer answers kStreamResult
  kStreamResult,  // payload: StreamSummary
  kEcho,          // sent back unchanged (ping-pong)
  kStatsRequest,  // the peer answers kStats
  kStats,         // payload: PeerStats
};
inline constexpr uint16_t kVerifyFlag = 1;

inline constexpr uint8_t FrameTypeOf(BenchFrame f) { return static_cast<uint8_t>(f); }

// What the peer saw of one stream.
struct StreamSummary {
  uint64_t bytes = 0;
  uint64_t frames = 0;
  uint64_t out_of_order = 0;   // data frames whose sequence was not the next expected one
  uint64_t receive_nanos = 0;  // first data frame to the end of the stream, on the peer's clock
  uint32_t crc = 0;            // CRC32C of every payload byte in order (when verifying)
};
std::string EncodeStreamSummary(const StreamSummary& s);
absl::StatusOr<StreamSummary> DecodeStreamSummary(std::string_view payload);

// The peer's transport counters (TransportStats) at the end of a session.
struct PeerStats {
  std::string transport;  // what the peer ran ("uring" when "auto" picked it)
  uint64_t bytes_received = 0;
  uint64_t bytes_copied = 0;
  uint64_t frames_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t frames_sent = 0;
  uint64_t zero_copy_sends = 0;
};
std::string EncodePeerStats(const PeerStats& s);
absl::StatusOr<PeerStats> DecodePeerStats(std::string_view payload);

// Ping payload: [u64 sequence][u64 send time, MonotonicNanos][filler up to the requested size].
inline constexpr size_t kPingHeaderSize = 16;

}  // namespace sluice::tools
