// The native query protocol: QueryRequests and QueryResponses (query_service.h) as FlatBuffers
// (schemas/query.fbs) in net/ frames of their own type, matched by the frame's channel, which
// carries the request id. Decoders verify every message before reading it and check every enum
// and the protocol version, naming what was wrong. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "base/buffer.h"
#include "net/frame.h"
#include "statestore/query_service.h"

namespace sluice {

inline constexpr uint8_t kQueryRequestFrame =
    static_cast<uint8_t>(net::FrameType::kFirstUserType) + 32;
inline constexpr uint8_t kQueryResponseFrame = kQueryRequestFrame + 1;
inline constexpr uint32_t kQueryProtocolVersion = 1;

Buffer EncodeQueryRequest(const QueryRequest& request);
// `allocate(n)` returns the buffer the n bytes of the answer are written to (servers give one
// that tells them when the kernel has sent it).
Buffer EncodeQueryResponse(const QueryResponse& response,
                           absl::FunctionRef<Buffer(size_t)> allocate = Buffer::AllocateUnpooled);

// `bytes` may lie at any address (it is copied when FlatBuffers could not read it in place).
absl::StatusOr<QueryRequest> DecodeQueryRequest(std::string_view bytes);
absl::StatusOr<QueryResponse> DecodeQueryResponse(std::string_view bytes);

// The continuation of a PrefixScan: the key group to go on in, the checkpoint read (committed
// reads), and the last key returned in that key group (empty: from its first key).
struct ScanPosition {
  uint32_t key_group = 0;
  uint64_t checkpoint_id = 0;
  std::string after_key;
  bool operator==(const ScanPosition&) const = default;
};
std::string EncodeScanPosition(const ScanPosition& position);
// BadRequest naming what is wrong with a token that was not made by EncodeScanPosition.
absl::StatusOr<ScanPosition> DecodeScanPosition(std::string_view token);

}  // namespace sluice
