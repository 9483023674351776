#include "tools/net_protocol.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace sluice::tools {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__);

void PutU64(std::string* out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out->append(b, 8);
}

// Reads little-endian u64s from a payload, remembering whether it ran short.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  uint64_t U64() {
    uint64_t v = 0;
    if (in_.size() < 8) {
      short_ = true;
      return 0;
    }
    std::memcpy(&v, in_.data(), 8);
    in_.remove_prefix(8);
    return v;
  }
  std::string_view rest() const { return in_; }
  bool short_read() const { return short_; }

 private:
  std::string_view in_;
  bool short_ = false;
};

}  // namespace

std::string EncodeStreamSummary(const StreamSummary& s) {
  std::string out;
  PutU64(&out, s.bytes);
  PutU64(&out, s.frames);
  PutU64(&out, s.out_of_order);
  PutU64(&out, s.receive_nanos);
  PutU64(&out, s.crc);
  return out;
}

absl::StatusOr<StreamSummary> DecodeStreamSummary(std::string_view payload) {
  if (payload.size() != 40) {
    return absl::DataLossError(
        absl::StrFormat("stream result of %d bytes, expected 40", payload.size()));
  }
  Reader r(payload);
  StreamSummary s;
  s.bytes = r.U64();
  s.frames = r.U64();
  s.out_of_order = r.U64();
  s.receive_nanos = r.U64();
  s.crc = static_cast<uint32_t>(r.U64());
  return s;
}

std::string EncodePeerStats(const PeerStats& s) {
  std::string out;
  PutU64(&out, s.bytes_received);
  PutU64(&out, s.bytes_copied);
  PutU64(&out, s.frames_received);
  PutU64(&out, s.bytes_sent);
  PutU64(&out, s.frames_sent);
  PutU64(&out, s.zero_copy_sends);
  out += s.transport;
  return out;
}

absl::StatusOr<PeerStats> DecodePeerStats(std::string_view payload) {
  Reader r(payload);
  PeerStats s;
  s.bytes_received = r.U64();
  s.bytes_copied = r.U64();
  s.frames_received = r.U64();
  s.bytes_sent = r.U64();
  s.frames_sent = r.U64();
  s.zero_copy_sends = r.U64();
  if (r.short_read() || r.rest().size() > 64) {
    return absl::DataLossError(
        absl::StrFormat("peer stats of %d bytes, expected 48 plus a name", payload.size()));
  }
  s.transport = std::string(r.rest());
  return s;
}

}  // namespace sluice::tools
