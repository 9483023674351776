// Buffer: a move-only, refcounted view over a memory segment, with a reader and a writer index.
// Slices and shares point into the same segment; when the last Buffer over a segment is released
// the segment goes back to whoever handed it out (a LocalBufferPool, the global BufferPool, or
// the heap for unpooled buffers). A Buffer object is not thread-safe, but distinct Buffers over
// one segment may be used and released on different threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "absl/types/span.h"

namespace sluice {

struct MemorySegment;

// Whoever takes a segment back when its last reference goes.
class SegmentRecycler {
 public:
  virtual ~SegmentRecycler() = default;
  virtual void Recycle(MemorySegment* segment) = 0;
};

// A fixed block of memory and its reference count. Pool segments are preallocated together
// with their descriptors, so taking one allocates nothing.
struct MemorySegment {
  char* data = nullptr;
  uint32_t size = 0;
  uint32_t index = 0;  // position in its pool, for diagnostics
  std::atomic<int32_t> refs{0};
  SegmentRecycler* recycler = nullptr;
};

class Buffer {
 public:
  Buffer() = default;

  // Takes over one reference to `segment`, whose `refs` the caller has already counted.
  // The view covers the whole segment with both indexes at 0.
  static Buffer Adopt(MemorySegment* segment) {
    return Buffer(segment, segment->data, segment->size);
  }

  // A buffer outside any pool, for frames larger than a segment. Returned to the heap on release.
  static Buffer AllocateUnpooled(size_t size);

  // A buffer that copies `bytes` into a new unpooled allocation (tests and control messages).
  static Buffer CopyOf(std::string_view bytes);

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { MoveFrom(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      Release();
      MoveFrom(other);
    }
    return *this;
  }
  ~Buffer() { Release(); }

  bool valid() const { return segment_ != nullptr; }
  explicit operator bool() const { return valid(); }

  // The view.
  char* data() const { return data_; }
  size_t capacity() const { return capacity_; }

  // [reader_index, writer_index) are the readable bytes; [writer_index, capacity) is writable.
  size_t reader_index() const { return reader_; }
  size_t writer_index() const { return writer_; }
  size_t readable_bytes() const { return writer_ - reader_; }
  size_t writable_bytes() const { return capacity_ - writer_; }
  const char* read_ptr() const { return data_ + reader_; }
  char* write_ptr() const { return data_ + writer_; }
  std::string_view readable() const { return std::string_view(read_ptr(), readable_bytes()); }

  // REQUIRES: n <= writable_bytes().
  void Commit(size_t n) { writer_ += n; }
  // REQUIRES: n <= readable_bytes().
  void Consume(size_t n) { reader_ += n; }
  // REQUIRES: reader <= writer <= capacity().
  void SetIndexes(size_t reader, size_t writer) {
    reader_ = reader;
    writer_ = writer;
  }
  // Copies `bytes` at the writer index. REQUIRES: bytes.size() <= writable_bytes().
  void Append(std::string_view bytes);

  // A new view of [offset, offset + length) of this view, fully readable, sharing the segment.
  // REQUIRES: offset + length <= capacity().
  Buffer Slice(size_t offset, size_t length) const;
  // The readable bytes as a new shared view.
  Buffer ReadableSlice() const { return Slice(reader_, readable_bytes()); }
  // Another reference to the same view with the same indexes.
  Buffer Share() const;

  // References to the segment held by all Buffers together.
  // Acquire: a reader that sees 1 may reuse the memory, so every other holder's last access
  // (before its release) must happen before that.
  int32_t ref_count() const {
    return segment_ ? segment_->refs.load(std::memory_order_acquire) : 0;
  }
  const MemorySegment* segment() const { return segment_; }

  // Drops this reference; the last one returns the segment. Safe on an empty Buffer.
  void Release();

 private:
  Buffer(MemorySegment* segment, char* data, size_t capacity)
      : segment_(segment), data_(data), capacity_(capacity) {}
  void MoveFrom(Buffer& other) {
    segment_ = std::exchange(other.segment_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    reader_ = std::exchange(other.reader_, 0);
    writer_ = std::exchange(other.writer_, 0);
  }

  MemorySegment* segment_ = nullptr;
  char* data_ = nullptr;
  size_t capacity_ = 0;
  size_t reader_ = 0;
  size_t writer_ = 0;
};

}  // namespace sluice
