#include "net/internal/frame_reader.h"

#include <algorithm>
#include <cstring>

#include "base/logging.h"
#include "base/status.h"

namespace sluice::net::internal {
namespace {
// Below this much room left in a segment, start the next receive in a fresh one.
constexpr size_t kMinReceiveRoom = 256;
// In large mode, small frames in a row before the reader goes back to generic reads. A few
// control frames among large ones (credit, backlog announcements) cost a receive each instead
// of a copy of the large frame that follows them.
constexpr int kSmallFramesToLeaveLargeMode = 8;
}  // namespace

FrameReader::FrameReader(LocalBufferPool* pool, size_t max_frame_size, TransportStats* stats)
    : pool_(pool),
      max_frame_size_(max_frame_size),
      direct_threshold_(std::max<size_t>(pool->segment_size() / 4, kFrameHeaderSize * 4)),
      stats_(stats) {}

void FrameReader::Reset() {
  rx_.Release();
  partial_.Release();
  payload_.Release();
  mode_ = Mode::kGeneric;
  header_have_ = 0;
  large_mode_ = false;
  small_streak_ = 0;
}

bool FrameReader::at_frame_boundary() const {
  switch (mode_) {
    case Mode::kGeneric:
      return !rx_.valid() || rx_.readable_bytes() == 0;
    case Mode::kHeader:
      return header_have_ == 0;
    case Mode::kPayload:
      return false;
  }
  return false;
}

size_t FrameReader::partial_bytes() const {
  switch (mode_) {
    case Mode::kGeneric:
      return rx_.valid() ? rx_.readable_bytes() : 0;
    case Mode::kHeader:
      return header_have_;
    case Mode::kPayload:
      return kFrameHeaderSize + partial_.readable_bytes() +
             (payload_.valid() ? payload_.readable_bytes() : 0);
  }
  return 0;
}

bool FrameReader::MoveTail() {
  Buffer fresh = pool_->TryRequest();
  if (!fresh.valid()) return false;
  const size_t tail = rx_.readable_bytes();
  fresh.Append(rx_.readable());
  stats_->bytes_copied.fetch_add(tail, std::memory_order_relaxed);
  rx_ = std::move(fresh);
  return true;
}

bool FrameReader::AllocatePayload() {
  if (buffer_source_ != nullptr) {
    // The receiver's own buffer, when it offers one that is large enough.
    payload_ = buffer_source_->ReceiveBuffer(current_);
    if (payload_.valid() && payload_.writable_bytes() < current_.length) payload_.Release();
  }
  if (!payload_.valid() && current_.length <= pool_->segment_size()) {
    payload_ = pool_->TryRequest();
    if (!payload_.valid()) return false;
  } else if (!payload_.valid()) {
    // Larger than a segment (up to max_frame_size): a buffer of its own.
    payload_ = Buffer::AllocateUnpooled(current_.length);
  }
  if (partial_.valid()) {
    payload_.Append(partial_.readable());
    stats_->bytes_copied.fetch_add(partial_.readable_bytes(), std::memory_order_relaxed);
    partial_.Release();
  }
  return true;
}

int FrameReader::PrepareTargets(Target targets[2]) {
  if (!PrepareTarget(&targets[0])) return 0;
  if (mode_ != Mode::kPayload) return 1;
  // The next header lands in header_ right behind the payload.
  targets[1].data = header_;
  targets[1].len = kFrameHeaderSize;
  spill_armed_ = true;
  return 2;
}

bool FrameReader::PrepareTarget(Target* target) {
  spill_armed_ = false;
  switch (mode_) {
    case Mode::kHeader:
      target->data = header_ + header_have_;
      target->len = kFrameHeaderSize - header_have_;
      return true;
    case Mode::kPayload:
      if (!payload_.valid() && !AllocatePayload()) return false;
      target->data = payload_.write_ptr();
      target->len = current_.length - payload_.writer_index();
      return true;
    case Mode::kGeneric:
      if (!rx_.valid()) {
        rx_ = pool_->TryRequest();
        if (!rx_.valid()) return false;
      } else if (rx_.writable_bytes() < kMinReceiveRoom) {
        if (rx_.ref_count() == 1) {
          // Nobody holds a frame of this segment any more: start it over (moving a partial
          // frame to the front) rather than take another one from the pool.
          const size_t tail = rx_.readable_bytes();
          if (tail > 0) {
            std::memmove(rx_.data(), rx_.read_ptr(), tail);
            stats_->bytes_copied.fetch_add(tail, std::memory_order_relaxed);
          }
          rx_.SetIndexes(0, tail);
        } else if (rx_.readable_bytes() > 0) {
          if (!MoveTail()) return false;
        } else {
          Buffer fresh = pool_->TryRequest();
          if (!fresh.valid()) return false;
          rx_ = std::move(fresh);
        }
      }
      target->data = rx_.write_ptr();
      target->len = rx_.writable_bytes();
      return true;
  }
  return false;
}

absl::Status FrameReader::OnReceived(size_t n, Sink sink) {
  stats_->bytes_received.fetch_add(n, std::memory_order_relaxed);
  switch (mode_) {
    case Mode::kHeader:
      header_have_ += n;
      if (header_have_ == kFrameHeaderSize) return CompleteHeader(sink);
      return absl::OkStatus();
    case Mode::kPayload: {
      const size_t k = std::min(n, current_.length - payload_.writer_index());
      payload_.Commit(k);
      const size_t spilled = n - k;
      SLUICE_CHECK(spilled == 0 || spill_armed_);
      spill_armed_ = false;
      if (payload_.writer_index() < current_.length) return absl::OkStatus();
      FinishPayload(sink);
      if (spilled > 0) {
        // The start of the next frame's header arrived with the payload.
        header_have_ = spilled;
        mode_ = Mode::kHeader;
        if (header_have_ == kFrameHeaderSize) return CompleteHeader(sink);
      }
      return absl::OkStatus();
    }
    case Mode::kGeneric:
      rx_.Commit(n);
      return ParseGeneric(sink);
  }
  return absl::OkStatus();
}

absl::Status FrameReader::CompleteHeader(Sink sink) {
  header_have_ = 0;
  SLUICE_ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(header_, max_frame_size_));
  if (h.length == 0) {
    stats_->frames_received.fetch_add(1, std::memory_order_relaxed);
    sink(h, Buffer());
    AfterFrame(/*large=*/false);
    return absl::OkStatus();
  }
  current_ = h;
  mode_ = Mode::kPayload;
  return absl::OkStatus();
}

void FrameReader::FinishPayload(Sink sink) {
  stats_->frames_received.fetch_add(1, std::memory_order_relaxed);
  const bool large = current_.length >= direct_threshold_;
  sink(current_, std::move(payload_));
  payload_.Release();
  AfterFrame(large);
}

void FrameReader::AfterFrame(bool large) {
  if (large) {
    large_mode_ = true;
    small_streak_ = 0;
  } else if (large_mode_ && ++small_streak_ >= kSmallFramesToLeaveLargeMode) {
    // Small frames only, it seems: back to reading many at once.
    large_mode_ = false;
  }
  mode_ = large_mode_ ? Mode::kHeader : Mode::kGeneric;
}

absl::Status FrameReader::ParseGeneric(Sink sink) {
  while (rx_.readable_bytes() >= kFrameHeaderSize) {
    SLUICE_ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(rx_.read_ptr(), max_frame_size_));
    const size_t total = kFrameHeaderSize + h.length;
    const size_t avail = rx_.readable_bytes();
    if (avail >= total) {
      Buffer payload =
          h.length > 0 ? rx_.Slice(rx_.reader_index() + kFrameHeaderSize, h.length) : Buffer();
      rx_.Consume(total);
      stats_->frames_received.fetch_add(1, std::memory_order_relaxed);
      sink(h, std::move(payload));
      continue;
    }
    const bool fits_here = rx_.reader_index() + total <= rx_.capacity();
    if (h.length < direct_threshold_ && fits_here) break;  // the rest lands right behind it
    if (h.length < direct_threshold_) {
      // Small frame at the end of a segment: restart it at the front of a fresh one. If the pool
      // is dry, PrepareTarget retries the move when a segment returns.
      if (!MoveTail()) return absl::OkStatus();
      continue;
    }
    // Large frame: read the rest straight into a buffer of its own.
    current_ = h;
    const size_t have = avail - kFrameHeaderSize;
    if (have > 0) partial_ = rx_.Slice(rx_.reader_index() + kFrameHeaderSize, have);
    rx_.Consume(avail);
    mode_ = Mode::kPayload;
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status FrameReader::OnSegment(Buffer segment, size_t n, Sink sink) {
  SLUICE_CHECK(mode_ == Mode::kGeneric);
  stats_->bytes_received.fetch_add(n, std::memory_order_relaxed);
  segment.SetIndexes(0, n);
  while (segment.readable_bytes() > 0) {
    if (mode_ == Mode::kGeneric) {
      if (!rx_.valid() || rx_.readable_bytes() == 0) {
        rx_ = std::move(segment);  // the common case: frames are sliced out of this segment
        return ParseGeneric(sink);
      }
      // A frame straddles the previous segment and this one: complete it by copying.
      size_t need = kFrameHeaderSize - std::min(kFrameHeaderSize, rx_.readable_bytes());
      if (need == 0) {
        SLUICE_ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(rx_.read_ptr(), max_frame_size_));
        need = kFrameHeaderSize + h.length - rx_.readable_bytes();
      }
      if (rx_.writable_bytes() < std::min(need, segment.readable_bytes()) && !MoveTail()) {
        // No segment to join into: fall back to a buffer of its own for the tail.
        Buffer own = Buffer::AllocateUnpooled(pool_->segment_size());
        own.Append(rx_.readable());
        rx_ = std::move(own);
      }
      const size_t k = std::min({need, segment.readable_bytes(), rx_.writable_bytes()});
      rx_.Append(std::string_view(segment.read_ptr(), k));
      segment.Consume(k);
      stats_->bytes_copied.fetch_add(k, std::memory_order_relaxed);
      SLUICE_RETURN_IF_ERROR(ParseGeneric(sink));
      continue;
    }
    // A directed read is in progress: its bytes are in this segment already, so copy them.
    Target t;
    if (mode_ == Mode::kPayload && !payload_.valid() && !AllocatePayload()) {
      // The ring already holds these bytes; with the pool dry, park them in a buffer of their own.
      payload_ = Buffer::AllocateUnpooled(current_.length);
      if (partial_.valid()) {
        payload_.Append(partial_.readable());
        partial_.Release();
      }
    }
    PrepareTarget(&t);
    const size_t k = std::min(t.len, segment.readable_bytes());
    std::memcpy(t.data, segment.read_ptr(), k);
    segment.Consume(k);
    stats_->bytes_copied.fetch_add(k, std::memory_order_relaxed);
    stats_->bytes_received.fetch_sub(k, std::memory_order_relaxed);  // OnReceived counts again
    SLUICE_RETURN_IF_ERROR(OnReceived(k, sink));
  }
  return absl::OkStatus();
}

}  // namespace sluice::net::internal
