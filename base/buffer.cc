#include "base/buffer.h"

#include <cstring>
#include <memory>

#include "base/logging.h"

namespace sluice {
namespace {

// Unpooled buffers: the descriptor and the bytes are one heap allocation, freed by the
// recycler when the last reference goes.
class HeapRecycler final : public SegmentRecycler {
 public:
  void Recycle(MemorySegment* segment) override {
    segment->~MemorySegment();
    ::operator delete(static_cast<void*>(segment), std::align_val_t(64));
  }
};

HeapRecycler heap_recycler;

}  // namespace

Buffer Buffer::AllocateUnpooled(size_t size) {
  void* raw = ::operator new(sizeof(MemorySegment) + size, std::align_val_t(64));
  auto* segment = new (raw) MemorySegment();
  segment->data = static_cast<char*>(raw) + sizeof(MemorySegment);
  segment->size = static_cast<uint32_t>(size);
  segment->recycler = &heap_recycler;
  segment->refs.store(1, std::memory_order_relaxed);
  return Adopt(segment);
}

Buffer Buffer::CopyOf(std::string_view bytes) {
  Buffer b = AllocateUnpooled(bytes.size());
  b.Append(bytes);
  return b;
}

void Buffer::Append(std::string_view bytes) {
  SLUICE_CHECK(bytes.size() <= writable_bytes());
  if (!bytes.empty()) std::memcpy(write_ptr(), bytes.data(), bytes.size());
  writer_ += bytes.size();
}

Buffer Buffer::Slice(size_t offset, size_t length) const {
  SLUICE_CHECK(segment_ != nullptr && offset + length <= capacity_);
  segment_->refs.fetch_add(1, std::memory_order_relaxed);
  Buffer b(segment_, data_ + offset, length);
  b.writer_ = length;
  return b;
}

Buffer Buffer::Share() const {
  SLUICE_CHECK(segment_ != nullptr);
  segment_->refs.fetch_add(1, std::memory_order_relaxed);
  Buffer b(segment_, data_, capacity_);
  b.reader_ = reader_;
  b.writer_ = writer_;
  return b;
}

void Buffer::Release() {
  MemorySegment* segment = std::exchange(segment_, nullptr);
  data_ = nullptr;
  capacity_ = reader_ = writer_ = 0;
  if (segment == nullptr) return;
  const int32_t before = segment->refs.fetch_sub(1, std::memory_order_acq_rel);
  SLUICE_CHECK(before >= 1);
  if (before == 1) segment->recycler->Recycle(segment);
}

}  // namespace sluice
