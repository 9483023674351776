#include "shuffle/record_format.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace sluice {
namespace {

// Decodes a varint from [p, p + n). Returns the bytes used, 0 when more bytes are needed, or -1
// when the encoding is malformed (longer than five bytes or above 2^32 - 1).
int DecodeVarint(const char* p, size_t n, uint32_t* out) {
  uint64_t v = 0;
  for (size_t i = 0; i < kMaxVarintLength; ++i) {
    if (i == n) return 0;
    const auto b = static_cast<uint8_t>(p[i]);
    v |= uint64_t{b & 0x7fu} << (7 * i);
    if ((b & 0x80) == 0) {
      if (v > UINT32_MAX) return -1;
      *out = static_cast<uint32_t>(v);
      return static_cast<int>(i + 1);
    }
  }
  return -1;
}

absl::Status MalformedLength() {
  return absl::DataLossError("malformed record length (a varint of more than 32 bits)");
}

}  // namespace

void RecordDeserializer::Reset() {
  buffer_.Release();
  data_ = nullptr;
  pos_ = end_ = 0;
  varint_len_ = 0;
  reading_body_ = false;
  partial_ = false;
  body_len_ = 0;
  body_.clear();
}

absl::StatusOr<bool> RecordDeserializer::StartRecord(uint32_t length, std::string_view* record) {
  if (length > max_record_size_) {
    return absl::DataLossError(absl::StrFormat(
        "record length %d exceeds the maximum record size %d", length, max_record_size_));
  }
  if (end_ - pos_ >= length) {
    *record = std::string_view(data_ + pos_, length);
    pos_ += length;
    return true;
  }
  reading_body_ = true;
  partial_ = true;
  body_len_ = length;
  body_.clear();
  // Grown as bytes arrive beyond this: a corrupt length must not reserve memory up front.
  body_.reserve(std::min<size_t>(length, 1 << 20));
  body_.append(data_ + pos_, end_ - pos_);
  pos_ = end_;
  return false;
}

absl::StatusOr<bool> RecordDeserializer::NextSlow(std::string_view* record) {
  if (reading_body_) {
    const size_t take = std::min<size_t>(body_len_ - body_.size(), end_ - pos_);
    body_.append(data_ + pos_, take);
    pos_ += take;
    if (body_.size() < body_len_) return false;
    reading_body_ = false;
    partial_ = false;
    *record = body_;
    return true;
  }
  if (varint_len_ > 0) {
    // Complete a length begun in an earlier buffer, one byte at a time (at most five).
    while (pos_ < end_) {
      varint_[varint_len_++] = data_[pos_++];
      uint32_t length = 0;
      const int used = DecodeVarint(varint_, varint_len_, &length);
      if (used < 0) return MalformedLength();
      if (used > 0) {
        varint_len_ = 0;
        partial_ = false;
        return StartRecord(length, record);
      }
    }
    return false;
  }
  if (pos_ >= end_) return false;
  uint32_t length = 0;
  const int used = DecodeVarint(data_ + pos_, end_ - pos_, &length);
  if (used < 0) return MalformedLength();
  if (used == 0) {
    varint_len_ = end_ - pos_;
    partial_ = true;
    std::copy(data_ + pos_, data_ + end_, varint_);
    pos_ = end_;
    return false;
  }
  pos_ += used;
  return StartRecord(length, record);
}

}  // namespace sluice
