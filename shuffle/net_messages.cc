#include "shuffle/net_messages.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "flatbuffers/flatbuffers.h"
#include "shuffle/schemas/net_shuffle_generated.h"

namespace sluice::netshuffle {
namespace {

namespace fb = ::sluice::fb::netshuffle;

// Builds the flatbuffer for one message; each overload returns the body type and offset.
struct BodyBuilder {
  flatbuffers::FlatBufferBuilder& b;

  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const PartitionRequest& m) const {
    return {fb::Body::PartitionRequest,
            fb::CreatePartitionRequest(b, m.partition.result, m.partition.producer, m.subpartition,
                                       m.channel, m.initial_credit)
                .Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const AddCredit& m) const {
    return {fb::Body::AddCredit, fb::CreateAddCredit(b, m.channel, m.credit).Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const BacklogAnnouncement& m) const {
    return {fb::Body::BacklogAnnouncement,
            fb::CreateBacklogAnnouncement(b, m.channel, m.backlog).Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const CancelPartitionRequest& m) const {
    return {fb::Body::CancelPartitionRequest,
            fb::CreateCancelPartitionRequest(b, m.channel).Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const CloseRequest&) const {
    return {fb::Body::CloseRequest, fb::CreateCloseRequest(b).Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const ResumeConsumption& m) const {
    return {fb::Body::ResumeConsumption, fb::CreateResumeConsumption(b, m.channel).Union()};
  }
  std::pair<fb::Body, flatbuffers::Offset<void>> operator()(const ErrorResponse& m) const {
    return {fb::Body::ErrorResponse,
            fb::CreateErrorResponse(b, m.channel, m.whole_connection,
                                    static_cast<fb::ErrorCode>(m.code), b.CreateString(m.message),
                                    static_cast<uint8_t>(m.status_code))
                .Union()};
  }
};

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInternal:
      return "internal";
    case ErrorCode::kPartitionNotFound:
      return "partition not found";
    case ErrorCode::kBadRequest:
      return "bad request";
    case ErrorCode::kUnsupportedVersion:
      return "unsupported version";
    case ErrorCode::kPartitionFailed:
      return "partition failed";
  }
  return "unknown";
}

std::string_view MessageName(const ControlMessage& message) {
  static constexpr std::string_view kNames[] = {
      "PartitionRequest", "AddCredit",         "BacklogAnnouncement", "CancelPartitionRequest",
      "CloseRequest",     "ResumeConsumption", "ErrorResponse"};
  return kNames[message.index()];
}

Buffer EncodeControl(const ControlMessage& message, uint16_t version) {
  flatbuffers::FlatBufferBuilder b(128);
  auto [type, body] = std::visit(BodyBuilder{b}, message);
  b.Finish(fb::CreateControl(b, version, type, body));
  Buffer out = Buffer::AllocateUnpooled(b.GetSize());
  out.Append(std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
  return out;
}

absl::StatusOr<ControlMessage> DecodeControl(std::string_view payload) {
  if (payload.size() > kMaxControlBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shuffle control message of %d bytes; the limit is %d", payload.size(), kMaxControlBytes));
  }
  // FlatBuffers reads its offsets in place, so they must be aligned; a control frame that
  // follows an odd-sized one in a receive segment is not: read it from an aligned copy.
  alignas(8) uint8_t aligned[kMaxControlBytes];
  const auto* data = reinterpret_cast<const uint8_t*>(payload.data());
  if (reinterpret_cast<uintptr_t>(data) % 8 != 0) {
    std::memcpy(aligned, payload.data(), payload.size());
    data = aligned;
  }
  flatbuffers::Verifier verifier(data, payload.size(), /*max_depth=*/8, /*max_tables=*/16);
  if (!fb::VerifyControlBuffer(verifier)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "shuffle control message of %d bytes is not a valid FlatBuffers Control table",
        payload.size()));
  }
  const fb::Control* c = fb::GetControl(data);
  if (c->version() != kProtocolVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("shuffle protocol version %d is not supported (this side speaks %d)",
                        c->version(), kProtocolVersion));
  }
  const absl::Status no_body = absl::InvalidArgumentError(absl::StrFormat(
      "shuffle control message %s without its table", fb::EnumNameBody(c->body_type())));
  switch (c->body_type()) {
    case fb::Body::PartitionRequest: {
      const fb::PartitionRequest* m = c->body_as_PartitionRequest();
      if (m == nullptr) return no_body;
      return PartitionRequest{PartitionId{m->result(), m->producer()}, m->subpartition(),
                              m->channel(), m->initial_credit()};
    }
    case fb::Body::AddCredit: {
      const fb::AddCredit* m = c->body_as_AddCredit();
      if (m == nullptr) return no_body;
      if (m->credit() == 0) return absl::InvalidArgumentError("AddCredit of 0 buffers");
      return AddCredit{m->channel(), m->credit()};
    }
    case fb::Body::BacklogAnnouncement: {
      const fb::BacklogAnnouncement* m = c->body_as_BacklogAnnouncement();
      if (m == nullptr) return no_body;
      return BacklogAnnouncement{m->channel(), m->backlog()};
    }
    case fb::Body::CancelPartitionRequest: {
      const fb::CancelPartitionRequest* m = c->body_as_CancelPartitionRequest();
      if (m == nullptr) return no_body;
      return CancelPartitionRequest{m->channel()};
    }
    case fb::Body::CloseRequest:
      if (c->body_as_CloseRequest() == nullptr) return no_body;
      return CloseRequest{};
    case fb::Body::ResumeConsumption: {
      const fb::ResumeConsumption* m = c->body_as_ResumeConsumption();
      if (m == nullptr) return no_body;
      return ResumeConsumption{m->channel()};
    }
    case fb::Body::ErrorResponse: {
      const fb::ErrorResponse* m = c->body_as_ErrorResponse();
      if (m == nullptr) return no_body;
      const auto code = static_cast<uint8_t>(m->code());
      if (code > static_cast<uint8_t>(ErrorCode::kPartitionFailed)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("ErrorResponse with unknown error code %d", code));
      }
      if (m->status_code() == 0 || m->status_code() > 16) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "ErrorResponse with status code %d (expected 1..16)", m->status_code()));
      }
      return ErrorResponse{m->channel(), m->whole_connection(), static_cast<ErrorCode>(code),
                           m->message() != nullptr ? m->message()->str() : std::string(),
                           static_cast<absl::StatusCode>(m->status_code())};
    }
    case fb::Body::NONE:
      return absl::InvalidArgumentError("shuffle control message without a body");
  }
  return absl::InvalidArgumentError(absl::StrFormat("shuffle control message of unknown kind %d",
                                                    static_cast<int>(c->body_type())));
}

net::FrameHeader ControlHeader() {
  net::FrameHeader h;
  h.type = kControlFrame;
  return h;
}

net::FrameHeader BufferResponseHeader(const BufferResponse& r) {
  net::FrameHeader h;
  h.type = kBufferFrame;
  h.channel = r.channel;
  h.sequence = r.sequence;
  h.backlog = r.backlog;
  h.flags = static_cast<uint16_t>(r.type);
  return h;
}

absl::StatusOr<BufferResponse> DecodeBufferResponse(const net::FrameHeader& h) {
  if (h.flags > static_cast<uint16_t>(DataType::kPriorityEvent)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "BufferResponse on channel %d has unknown data type %d", h.channel, h.flags));
  }
  if (h.length == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BufferResponse on channel %d carries no bytes", h.channel));
  }
  return BufferResponse{h.channel, h.sequence, h.backlog, static_cast<DataType>(h.flags)};
}

}  // namespace sluice::netshuffle
