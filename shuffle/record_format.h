// The record format inside a channel's data buffers: `[varint length][bytes]`, back to back.
// A record that does not fit in the rest of a buffer continues at the start of the channel's
// next data buffer, so a record may span any number of buffers and any split point (even inside
// its length). RecordDeserializer reassembles them on the consumer side; it is not thread-safe
// (one per channel, used by the consuming thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/base/optimization.h"
#include "absl/status/statusor.h"
#include "base/buffer.h"

namespace sluice {

// Lengths are 32-bit: at most five LEB128 bytes.
inline constexpr size_t kMaxVarintLength = 5;

inline size_t VarintLength(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Writes `v` at `out` and returns the end. REQUIRES: room for VarintLength(v) bytes.
inline char* EncodeVarint(char* out, uint32_t v) {
  while (v >= 0x80) {
    *out++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<char>(v);
  return out;
}

class RecordDeserializer {
 public:
  // Records whose length exceeds `max_record_size` are rejected as corrupt data.
  explicit RecordDeserializer(size_t max_record_size)
      : max_record_size_(max_record_size),
        fast_limit_(static_cast<uint8_t>(max_record_size < 0x7f ? max_record_size : 0x7f)) {}

  RecordDeserializer(const RecordDeserializer&) = delete;
  RecordDeserializer& operator=(const RecordDeserializer&) = delete;
  RecordDeserializer(RecordDeserializer&&) = default;
  RecordDeserializer& operator=(RecordDeserializer&&) = default;

  // Starts reading the next data buffer of the channel. REQUIRES: !has_buffer().
  void SetBuffer(Buffer buffer) {
    buffer_ = std::move(buffer);
    data_ = buffer_.read_ptr();
    pos_ = 0;
    end_ = buffer_.readable_bytes();
  }
  bool has_buffer() const { return buffer_.valid(); }
  // True while a record begun in an earlier buffer waits for its remaining bytes.
  bool has_partial_record() const { return partial_; }

  // The common case inline: a record shorter than 128 bytes lying whole in the current buffer.
  // Returns false when the slow path must decide.
  bool NextFast(std::string_view* record) {
    if (ABSL_PREDICT_TRUE(pos_ < end_ && !partial_)) {
      const auto len = static_cast<uint8_t>(data_[pos_]);
      if (ABSL_PREDICT_TRUE(len <= fast_limit_ && end_ - pos_ > len)) {
        *record = std::string_view(data_ + pos_ + 1, len);
        pos_ += 1 + len;
        return true;
      }
    }
    return false;
  }

  // Calls fn(record) for consecutive records that take the fast path, at most `max`, keeping
  // the read position in a register; returns how many. The views are valid until the buffer
  // is given up. The caller goes on with Next() when this returns fewer than `max`.
  template <typename Fn>
  size_t ForEachFast(Fn&& fn, size_t max) {
    if (partial_) return 0;
    const char* const data = data_;
    const size_t end = end_;
    const uint8_t limit = fast_limit_;
    size_t pos = pos_;
    size_t n = 0;
    while (n < max && pos < end) {
      const auto len = static_cast<uint8_t>(data[pos]);
      if (len > limit || end - pos <= len) break;
      fn(std::string_view(data + pos + 1, len));
      pos += 1 + len;
      ++n;
    }
    pos_ = pos;
    return n;
  }

  // The next whole record (a view valid until the next call), or false once the current buffer
  // is used up, with any partial record kept for the next buffer. Errors on a malformed length.
  absl::StatusOr<bool> Next(std::string_view* record) {
    if (NextFast(record)) return true;
    return NextSlow(record);
  }

  // Gives up the used-up buffer (the caller returns its credit). REQUIRES: has_buffer().
  Buffer TakeBuffer() {
    data_ = nullptr;
    pos_ = end_ = 0;
    return std::move(buffer_);
  }
  // Drops the buffer and any partial record.
  void Reset();

 private:
  absl::StatusOr<bool> NextSlow(std::string_view* record);
  absl::StatusOr<bool> StartRecord(uint32_t length, std::string_view* record);

  size_t max_record_size_;
  uint8_t fast_limit_;  // one-byte lengths up to this take the fast path
  Buffer buffer_;
  const char* data_ = nullptr;
  size_t pos_ = 0;
  size_t end_ = 0;
  // A length split across buffers.
  char varint_[kMaxVarintLength] = {};
  size_t varint_len_ = 0;
  // Either of the two below: the fast path checks one flag.
  bool partial_ = false;
  // A body split across buffers, reassembled here.
  bool reading_body_ = false;
  uint32_t body_len_ = 0;
  std::string body_;
};

}  // namespace sluice
