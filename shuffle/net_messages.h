// The wire protocol of the `net` shuffle service, on top of net/ frames.
//
//  - Control frames (type kControlFrame) carry one FlatBuffers `Control` message
//    (shuffle/schemas/net_shuffle.fbs) with the protocol version: PartitionRequest, AddCredit,
//    BacklogAnnouncement, CancelPartitionRequest, CloseRequest, ResumeConsumption, ErrorResponse.
//  - Data frames (type kBufferFrame) are BufferResponses and carry a buffer's bytes raw, as they
//    lie in the producer's segment. The frame header holds the rest: channel, sequence number
//    (per channel, from 0), the producer's backlog after this buffer, and the data type in the
//    flags.
//
// Decoders verify everything before use; errors say what was wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "absl/status/statusor.h"
#include "base/buffer.h"
#include "net/frame.h"
#include "shuffle/result_partition.h"
#include "shuffle/shuffle_service.h"

namespace sluice::netshuffle {

inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr uint8_t kControlFrame = static_cast<uint8_t>(net::FrameType::kFirstUserType) + 16;
inline constexpr uint8_t kBufferFrame = kControlFrame + 1;
// Control messages are small; anything larger is refused before it is parsed.
inline constexpr size_t kMaxControlBytes = 16 * 1024;

enum class ErrorCode : uint8_t {
  kInternal = 0,
  kPartitionNotFound = 1,  // not produced (yet) on that worker: worth asking again
  kBadRequest = 2,
  kUnsupportedVersion = 3,
  kPartitionFailed = 4,
};
std::string_view ErrorCodeName(ErrorCode code);

struct PartitionRequest {
  PartitionId partition;
  uint32_t subpartition = 0;
  uint32_t channel = 0;
  uint32_t initial_credit = 0;
  bool operator==(const PartitionRequest&) const = default;
};
struct AddCredit {
  uint32_t channel = 0;
  uint32_t credit = 0;
  bool operator==(const AddCredit&) const = default;
};
struct BacklogAnnouncement {
  uint32_t channel = 0;
  uint32_t backlog = 0;
  bool operator==(const BacklogAnnouncement&) const = default;
};
struct CancelPartitionRequest {
  uint32_t channel = 0;
  bool operator==(const CancelPartitionRequest&) const = default;
};
struct CloseRequest {
  bool operator==(const CloseRequest&) const = default;
};
struct ResumeConsumption {
  uint32_t channel = 0;
  bool operator==(const ResumeConsumption&) const = default;
};
struct ErrorResponse {
  uint32_t channel = 0;
  bool whole_connection = false;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  absl::StatusCode status_code = absl::StatusCode::kUnavailable;  // of the cause
  bool operator==(const ErrorResponse&) const = default;
};

using ControlMessage =
    std::variant<PartitionRequest, AddCredit, BacklogAnnouncement, CancelPartitionRequest,
                 CloseRequest, ResumeConsumption, ErrorResponse>;

// "PartitionRequest", "AddCredit", ... for logs and errors.
std::string_view MessageName(const ControlMessage& message);

// The payload of a control frame. `version` is for tests of the version check.
Buffer EncodeControl(const ControlMessage& message, uint16_t version = kProtocolVersion);
// Verifies and reads a control frame's payload. Errors: too large, fails the FlatBuffers
// verifier, unsupported version (naming both), no or unknown message.
absl::StatusOr<ControlMessage> DecodeControl(std::string_view payload);

// The header of a control frame for `payload`.
net::FrameHeader ControlHeader();

struct BufferResponse {
  uint32_t channel = 0;
  uint32_t sequence = 0;
  uint32_t backlog = 0;
  DataType type = DataType::kData;
};
net::FrameHeader BufferResponseHeader(const BufferResponse& response);
// Reads a data frame's header. Errors: unknown data type, a data frame without bytes.
absl::StatusOr<BufferResponse> DecodeBufferResponse(const net::FrameHeader& header);

}  // namespace sluice::netshuffle
