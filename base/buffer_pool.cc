#include "base/buffer_pool.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "base/logging.h"

namespace sluice {

absl::StatusOr<std::unique_ptr<BufferPool>> BufferPool::Create(const BufferPoolOptions& options) {
  if (options.segment_size < 4096 || options.segment_size % 4096 != 0 ||
      options.segment_size > (1u << 30)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "buffer pool segment size %d must be a multiple of 4096 between 4 KiB and 1 GiB",
        options.segment_size));
  }
  if (options.num_segments == 0) {
    return absl::InvalidArgumentError("buffer pool needs at least one segment");
  }
  const size_t bytes = options.segment_size * options.num_segments;
  void* memory = MAP_FAILED;
  bool hugepages = false;
  constexpr size_t kHuge = 2 * 1024 * 1024;
  if (options.try_hugepages && bytes % kHuge == 0) {
    memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    hugepages = memory != MAP_FAILED;
  }
  if (memory == MAP_FAILED) {
    // No reserved hugepages (the common case). Ask for transparent huge pages before the
    // memory is touched: a writer with thousands of open segments touches thousands of 4 KiB
    // pages in turn, more than the TLB holds, and pays a page walk on nearly every record.
    const int populate = options.try_hugepages ? 0 : MAP_POPULATE;
    memory =
        mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | populate, -1, 0);
    if (memory == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "cannot map a buffer pool of %d segments x %d bytes (%d MiB): %s", options.num_segments,
          options.segment_size, bytes >> 20, std::strerror(errno)));
    }
    if (options.try_hugepages) {
      // Either may be refused (THP disabled, an old kernel); plain pages work the same.
      const bool thp = madvise(memory, bytes, MADV_HUGEPAGE) == 0;
      SLUICE_LOG_DEBUG("buffer pool: transparent huge pages {}", thp ? "requested" : "refused");
      // Fault everything in now so that the data path never takes a page fault on a fresh
      // segment (MADV_POPULATE_WRITE needs Linux 5.14; otherwise touch every page).
      constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE
      if (madvise(memory, bytes, kPopulateWrite) != 0) {
        auto* bytes_ptr = static_cast<volatile char*>(memory);
        for (size_t off = 0; off < bytes; off += 4096) bytes_ptr[off] = 0;
      }
    }
  }
  SLUICE_LOG_DEBUG("buffer pool: {} segments x {} bytes, hugepages={}", options.num_segments,
                   options.segment_size, hugepages);
  return std::unique_ptr<BufferPool>(new BufferPool(
      options.segment_size, static_cast<char*>(memory), bytes, hugepages, options.num_segments));
}

BufferPool::BufferPool(size_t segment_size, char* memory, size_t mapped_bytes, bool hugepages,
                       size_t num_segments)
    : segment_size_(segment_size),
      memory_(memory),
      mapped_bytes_(mapped_bytes),
      hugepages_(hugepages),
      segments_(num_segments) {
  free_.reserve(num_segments);
  for (size_t i = 0; i < num_segments; ++i) {
    MemorySegment& s = segments_[i];
    s.data = memory_ + i * segment_size_;
    s.size = static_cast<uint32_t>(segment_size_);
    s.index = static_cast<uint32_t>(i);
    s.recycler = this;
  }
  // Hand out low addresses first.
  for (size_t i = num_segments; i > 0; --i) free_.push_back(&segments_[i - 1]);
}

BufferPool::~BufferPool() {
  {
    MutexLock lock(&mu_);
    SLUICE_CHECK_MSG(free_.size() == segments_.size(),
                     absl::StrFormat("buffer pool destroyed with %d of %d segments in use",
                                     segments_.size() - free_.size(), segments_.size()));
  }
  munmap(memory_, mapped_bytes_);
}

size_t BufferPool::available_segments() const {
  MutexLock lock(&mu_);
  return free_.size();
}

MemorySegment* BufferPool::TakeSegment() {
  MutexLock lock(&mu_);
  if (free_.empty()) return nullptr;
  MemorySegment* s = free_.back();
  free_.pop_back();
  return s;
}

bool BufferPool::TakeSegments(size_t n, std::vector<MemorySegment*>* out) {
  MutexLock lock(&mu_);
  if (free_.size() < n) return false;
  for (size_t i = 0; i < n; ++i) {
    out->push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void BufferPool::GiveSegment(MemorySegment* segment) {
  std::vector<AvailabilityCallback> to_run;
  {
    MutexLock lock(&mu_);
    segment->recycler = this;
    free_.push_back(segment);
    to_run.swap(waiters_);
  }
  for (auto& cb : to_run) std::move(cb)();
}

Buffer BufferPool::TryRequest() {
  MemorySegment* s = TakeSegment();
  if (s == nullptr) return Buffer();
  s->recycler = this;
  s->refs.store(1, std::memory_order_relaxed);
  return Buffer::Adopt(s);
}

void BufferPool::NotifyWhenAvailable(AvailabilityCallback callback) {
  {
    MutexLock lock(&mu_);
    if (free_.empty()) {
      waiters_.push_back(std::move(callback));
      return;
    }
  }
  std::move(callback)();
}

void BufferPool::Recycle(MemorySegment* segment) { GiveSegment(segment); }

absl::StatusOr<std::unique_ptr<LocalBufferPool>> BufferPool::CreateLocalPool(std::string name,
                                                                             size_t min_segments,
                                                                             size_t max_segments) {
  if (max_segments < min_segments) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "local pool '%s': maximum %d is below minimum %d", name, max_segments, min_segments));
  }
  std::vector<MemorySegment*> initial;
  initial.reserve(min_segments);
  if (!TakeSegments(min_segments, &initial)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "local pool '%s' needs %d segments of %d bytes but the buffer pool has only %d free of %d; "
        "raise the pool size (--buffer-segments / buffer_pool.num_segments) or lower the number "
        "of channels per worker",
        name, min_segments, segment_size_, available_segments(), total_segments()));
  }
  return std::unique_ptr<LocalBufferPool>(
      new LocalBufferPool(this, std::move(name), min_segments, max_segments, std::move(initial)));
}

LocalBufferPool::LocalBufferPool(BufferPool* global, std::string name, size_t min_segments,
                                 size_t max_segments, std::vector<MemorySegment*> initial)
    : global_(global),
      name_(std::move(name)),
      min_(min_segments),
      max_(max_segments),
      owned_(initial.size()),
      free_(std::move(initial)),
      handle_(std::make_shared<Handle>()) {
  MutexLock lock(&handle_->mu);
  handle_->pool = this;
}

LocalBufferPool::~LocalBufferPool() {
  {
    MutexLock lock(&handle_->mu);
    handle_->pool = nullptr;
  }
  std::vector<MemorySegment*> to_return;
  {
    MutexLock lock(&mu_);
    SLUICE_CHECK_MSG(free_.size() == owned_,
                     absl::StrFormat("local pool '%s' destroyed with %d buffers in use", name_,
                                     owned_ - free_.size()));
    to_return.swap(free_);
    owned_ = 0;
  }
  for (MemorySegment* s : to_return) global_->GiveSegment(s);
}

size_t LocalBufferPool::owned_segments() const {
  MutexLock lock(&mu_);
  return owned_;
}

size_t LocalBufferPool::in_use_segments() const {
  MutexLock lock(&mu_);
  return owned_ - free_.size();
}

Buffer LocalBufferPool::Wrap(MemorySegment* segment) {
  segment->recycler = this;
  segment->refs.store(1, std::memory_order_relaxed);
  return Buffer::Adopt(segment);
}

Buffer LocalBufferPool::TryRequest() {
  MutexLock lock(&mu_);
  if (!free_.empty()) {
    MemorySegment* s = free_.back();
    free_.pop_back();
    return Wrap(s);
  }
  if (owned_ >= max_) return Buffer();
  // Grow under the lock (order: local, then global): an owned_ counted ahead of a global take
  // that fails would let a concurrent Recycle hand a reserved segment to the global pool.
  MemorySegment* s = global_->TakeSegment();
  if (s == nullptr) return Buffer();
  ++owned_;
  return Wrap(s);
}

void LocalBufferPool::NotifyWhenAvailable(AvailabilityCallback callback) {
  bool subscribe_global = false;
  {
    MutexLock lock(&mu_);
    const bool available_here = !free_.empty();
    const bool may_grow = owned_ < max_;
    if (!available_here && !(may_grow && global_->available_segments() > 0)) {
      waiters_.push_back(std::move(callback));
      if (may_grow && !waiting_on_global_) {
        waiting_on_global_ = true;
        subscribe_global = true;
      }
      callback = nullptr;
    }
  }
  if (subscribe_global) WaitOnGlobal();
  if (callback) std::move(callback)();
}

void LocalBufferPool::WaitOnGlobal() {
  global_->NotifyWhenAvailable([handle = handle_]() mutable {
    std::vector<AvailabilityCallback> to_run;
    {
      MutexLock lock(&handle->mu);
      if (handle->pool != nullptr) to_run = handle->pool->TakeWaitersOnGlobalAvailable();
    }
    // Waiters retry TryRequest; one that loses the race registers again.
    for (auto& cb : to_run) std::move(cb)();
  });
}

std::vector<AvailabilityCallback> LocalBufferPool::TakeWaitersOnGlobalAvailable() {
  std::vector<AvailabilityCallback> to_run;
  MutexLock lock(&mu_);
  waiting_on_global_ = false;
  to_run.swap(waiters_);
  return to_run;
}

void LocalBufferPool::Retire(std::unique_ptr<LocalBufferPool> pool) {
  LocalBufferPool* p = pool.release();
  std::vector<AvailabilityCallback> dropped;
  bool destroy = false;
  {
    MutexLock lock(&p->mu_);
    p->retired_ = true;
    dropped.swap(p->waiters_);
    destroy = p->free_.size() == p->owned_;
  }
  dropped.clear();
  if (destroy) delete p;
}

void LocalBufferPool::Recycle(MemorySegment* segment) {
  std::vector<AvailabilityCallback> to_run;
  bool give_back = false;
  bool destroy = false;
  {
    MutexLock lock(&mu_);
    if (retired_) {
      --owned_;
      give_back = true;
      // The last buffer out: nothing touches the pool after this, so it may go.
      destroy = free_.size() == owned_;
    } else if (!waiters_.empty()) {
      free_.push_back(segment);
      to_run.swap(waiters_);
    } else if (owned_ > max_ || owned_ > min_) {
      // Above the guaranteed share and nobody here waits: let other pools have it.
      --owned_;
      give_back = true;
    } else {
      free_.push_back(segment);
    }
  }
  if (give_back) global_->GiveSegment(segment);
  if (destroy) {
    delete this;
    return;
  }
  for (auto& cb : to_run) std::move(cb)();
}

void LocalBufferPool::SetMaxSegments(size_t max_segments) {
  SLUICE_CHECK(max_segments >= min_);
  std::vector<MemorySegment*> surplus;
  bool subscribe_global = false;
  {
    MutexLock lock(&mu_);
    max_ = max_segments;
    while (owned_ > max_ && !free_.empty()) {
      surplus.push_back(free_.back());
      free_.pop_back();
      --owned_;
    }
    // Waiters that queued at the old cap may now grow from the global pool.
    if (!waiters_.empty() && owned_ < max_ && !waiting_on_global_) {
      waiting_on_global_ = true;
      subscribe_global = true;
    }
  }
  for (MemorySegment* s : surplus) global_->GiveSegment(s);
  if (subscribe_global) WaitOnGlobal();
}

}  // namespace sluice
