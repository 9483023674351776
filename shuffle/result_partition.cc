#include "shuffle/result_partition.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "shuffle/record_format.h"

namespace sluice {

// ---------------------------------------------------------------- SubpartitionView

SubpartitionView::~SubpartitionView() { Release(); }

absl::StatusOr<std::optional<PolledBuffer>> SubpartitionView::Poll(bool has_credit) {
  return partition_->Poll(index_, has_credit);
}

uint32_t SubpartitionView::backlog() const { return partition_->backlog(index_); }

void SubpartitionView::Release() {
  if (released_) return;
  released_ = true;
  partition_->ReleaseView(index_);
}

// ---------------------------------------------------------------- ResultPartition

absl::StatusOr<std::shared_ptr<ResultPartition>> ResultPartition::Create(
    std::string name, const ResultPartitionOptions& options, BufferPool* pool,
    TimerService* timer) {
  const uint32_t n = options.num_subpartitions;
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("result partition %s needs at least one subpartition", name));
  }
  if (options.buffer_timeout_ms < -1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "buffer timeout %d ms is invalid (shuffle.buffer-timeout-ms: -1, 0 or a positive number)",
        options.buffer_timeout_ms));
  }
  if (options.buffer_timeout_ms > 0 && timer == nullptr) {
    return absl::InvalidArgumentError("a buffer timeout above 0 needs a timer service");
  }
  if (options.max_record_size == 0 || options.max_record_size > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrFormat("max record size %d is outside [1, 4 GiB) (shuffle.max-record-size)",
                        options.max_record_size));
  }
  const size_t min_needed = size_t{n} + 1;
  const size_t min = options.min_buffers == 0 ? min_needed : options.min_buffers;
  if (min < min_needed) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "result partition %s: min buffers %d is below the %d it needs (one per subpartition "
        "plus one)",
        name, min, min_needed));
  }
  size_t max = options.max_buffers;
  if (max == 0) {
    max = std::max(
        min, size_t{n} * options.exclusive_buffers_per_channel + options.floating_buffers_per_gate);
  }
  if (max < min) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "result partition %s: max buffers %d is below min buffers %d", name, max, min));
  }
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<LocalBufferPool> local,
                          pool->CreateLocalPool("partition " + name, min, max));
  std::shared_ptr<ResultPartition> p(
      new ResultPartition(std::move(name), options, std::move(local)));
  if (options.buffer_timeout_ms > 0) p->ScheduleFlush(timer);
  return p;
}

ResultPartition::ResultPartition(std::string name, const ResultPartitionOptions& options,
                                 std::unique_ptr<LocalBufferPool> pool)
    : name_(std::move(name)),
      options_(options),
      flush_every_record_(options.buffer_timeout_ms == 0),
      pool_(std::move(pool)),
      subs_(options.num_subpartitions),
      cursors_(options.num_subpartitions),
      writer_buffers_(options.num_subpartitions) {
  for (size_t i = 0; i < subs_.size(); ++i) subs_[i].committed = &cursors_[i].pos;
}

ResultPartition::~ResultPartition() {
  if (timer_ != nullptr) timer_->Cancel(flush_timer_.load());
  CloseWriter();
  for (Subpartition& sub : subs_) {
    MutexLock lock(&sub.mu);
    sub.queue.clear();
    sub.writing.Release();
    sub.listener.reset();
  }
  // Buffers may still be on their way out (a socket's send queue): the pool goes when they do.
  LocalBufferPool::Retire(std::move(pool_));
}

void ResultPartition::ScheduleFlush(TimerService* timer) {
  timer_ = timer;
  std::weak_ptr<ResultPartition> weak = weak_from_this();
  const absl::Duration period = absl::Milliseconds(options_.buffer_timeout_ms);
  // A self-rescheduling callback: flush, then come back one period later.
  struct Tick {
    std::weak_ptr<ResultPartition> weak;
    absl::Duration period;
    TimerService* timer;
    void operator()() && {
      std::shared_ptr<ResultPartition> p = weak.lock();
      if (p == nullptr || p->released()) return;
      p->FlushAll();
      p->flush_timer_.store(timer->Schedule(period, Tick{weak, period, timer}));
    }
  };
  flush_timer_.store(timer->Schedule(period, Tick{std::move(weak), period, timer}));
}

// ---------------------------------------------------------------- producer

absl::Status ResultPartition::WriterError() const {
  if (writer_finished_) {
    return absl::FailedPreconditionError(
        absl::StrFormat("result partition %s is finished; nothing more can be written", name_));
  }
  MutexLock lock(&state_mu_);
  return cause_;
}

absl::Status ResultPartition::RecordTooLarge(size_t size) const {
  return absl::InvalidArgumentError(absl::StrFormat(
      "record of %d bytes exceeds the maximum record size of %d bytes in result partition %s "
      "(raise shuffle.max-record-size)",
      size, options_.max_record_size, name_));
}

absl::Status ResultPartition::EmitRecordSlow(uint32_t subpartition, std::string_view record) {
  if (record.size() > options_.max_record_size) return RecordTooLarge(record.size());
  if (writer_finished_ || released()) return WriterError();
  char length[kMaxVarintLength];
  const size_t length_size = EncodeVarint(length, static_cast<uint32_t>(record.size())) - length;
  SLUICE_RETURN_IF_ERROR(Write(subpartition, length, length_size));
  SLUICE_RETURN_IF_ERROR(Write(subpartition, record.data(), record.size()));
  CountRecord();
  if (flush_every_record_) Flush(subpartition);
  return absl::OkStatus();
}

absl::Status ResultPartition::Write(uint32_t subpartition, const char* data, size_t n) {
  Cursor& c = cursors_[subpartition];
  while (true) {
    if (c.limit == 0) SLUICE_RETURN_IF_ERROR(NewBuffer(subpartition));
    const uint32_t pos = c.pos.load(std::memory_order_relaxed);
    const size_t take = std::min<size_t>(n, c.limit - pos);
    std::memcpy(c.base + pos, data, take);
    const uint32_t end = pos + static_cast<uint32_t>(take);
    c.pos.store(end, std::memory_order_release);
    data += take;
    n -= take;
    // A full buffer goes to the consumer at once, not when the next record needs room.
    if (end == c.limit) FinishBuffer(subpartition);
    if (n == 0) return absl::OkStatus();
  }
}

absl::StatusOr<Buffer> ResultPartition::RequestBuffer() {
  while (true) {
    Buffer b = pool_->TryRequest();
    if (b.valid()) return b;
    if (released()) return WriterError();
    auto wake = std::make_shared<Notification>();
    {
      MutexLock lock(&state_mu_);
      if (!cause_.ok()) return cause_;
      blocked_writer_ = wake;
    }
    waits_for_buffer_.store(waits_for_buffer_.load(std::memory_order_relaxed) + 1,
                            std::memory_order_relaxed);
    pool_->NotifyWhenAvailable([wake] { wake->Notify(); });
    wake->WaitForNotification();
    MutexLock lock(&state_mu_);
    blocked_writer_.reset();
  }
}

absl::Status ResultPartition::NewBuffer(uint32_t subpartition) {
  SLUICE_ASSIGN_OR_RETURN(Buffer fresh, RequestBuffer());
  Subpartition& sub = subs_[subpartition];
  Cursor& c = cursors_[subpartition];
  {
    MutexLock lock(&sub.mu);
    if (!sub.failure.ok()) return sub.failure;
    sub.writing = fresh.Share();
    sub.delivered = 0;
    c.pos.store(0, std::memory_order_relaxed);
    sub.flush_requested = false;
  }
  c.base = fresh.data();
  c.limit = static_cast<uint32_t>(fresh.capacity());
  writer_buffers_[subpartition] = std::move(fresh);
  return absl::OkStatus();
}

void ResultPartition::FinishBuffer(uint32_t subpartition) {
  Subpartition& sub = subs_[subpartition];
  Cursor& c = cursors_[subpartition];
  if (c.limit == 0) return;
  std::shared_ptr<SubpartitionListener> notify;
  {
    MutexLock lock(&sub.mu);
    const bool was_available = sub.AvailableLocked();
    if (sub.writing.valid()) {
      const uint32_t committed = c.pos.load(std::memory_order_relaxed);
      if (committed > sub.delivered) {
        if (sub.consumer_released) {
          buffers_discarded_.fetch_add(1, std::memory_order_relaxed);
        } else {
          sub.queue.push_back(
              Queued{sub.writing.Slice(sub.delivered, committed - sub.delivered), DataType::kData});
          ++sub.backlog;
          buffers_finished_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      sub.writing.Release();
      sub.delivered = 0;
      c.pos.store(0, std::memory_order_relaxed);
      sub.flush_requested = false;
    }
    if (!was_available && sub.AvailableLocked()) notify = sub.listener;
  }
  writer_buffers_[subpartition].Release();
  c.base = nullptr;
  c.limit = 0;
  if (notify != nullptr) notify->OnDataAvailable(false);
}

absl::Status ResultPartition::BroadcastRecord(std::string_view record) {
  for (uint32_t i = 0; i < num_subpartitions(); ++i) {
    SLUICE_RETURN_IF_ERROR(EmitRecord(i, record));
  }
  return absl::OkStatus();
}

absl::Status ResultPartition::AddEvent(uint32_t subpartition, const Buffer& encoded,
                                       bool priority) {
  Subpartition& sub = subs_[subpartition];
  if (!priority) FinishBuffer(subpartition);  // what came before the event goes first
  std::shared_ptr<SubpartitionListener> notify;
  {
    MutexLock lock(&sub.mu);
    if (!sub.failure.ok()) return sub.failure;
    if (sub.consumer_released) return absl::OkStatus();
    const bool was_available = sub.AvailableLocked();
    if (priority) {
      sub.queue.insert(sub.queue.begin() + sub.priority_events,
                       Queued{encoded.Share(), DataType::kPriorityEvent});
      ++sub.priority_events;
    } else {
      sub.queue.push_back(Queued{encoded.Share(), DataType::kEvent});
    }
    if (priority || !was_available) notify = sub.listener;
  }
  if (notify != nullptr) notify->OnDataAvailable(priority);
  return absl::OkStatus();
}

absl::Status ResultPartition::EmitEvent(uint32_t subpartition, const Event& event, bool priority) {
  if (writer_finished_ || released()) return WriterError();
  return AddEvent(subpartition, EncodeEvent(event), priority);
}

absl::Status ResultPartition::BroadcastEvent(const Event& event, bool priority) {
  if (writer_finished_ || released()) return WriterError();
  // Encoded once; every subpartition holds a reference to the same bytes.
  const Buffer encoded = EncodeEvent(event);
  for (uint32_t i = 0; i < num_subpartitions(); ++i) {
    SLUICE_RETURN_IF_ERROR(AddEvent(i, encoded, priority));
  }
  return absl::OkStatus();
}

absl::Status ResultPartition::Finish() {
  SLUICE_RETURN_IF_ERROR(BroadcastEvent(Event::EndOfPartition()));
  for (Subpartition& sub : subs_) {
    MutexLock lock(&sub.mu);
    sub.finished = true;
  }
  CloseWriter();
  writer_finished_ = true;
  return absl::OkStatus();
}

void ResultPartition::CloseWriter() {
  for (uint32_t i = 0; i < cursors_.size(); ++i) {
    if (cursors_[i].limit != 0 && !released()) FinishBuffer(i);
    Cursor& c = cursors_[i];
    Subpartition& sub = subs_[i];
    MutexLock lock(&sub.mu);
    writer_buffers_[i].Release();
    c.base = nullptr;
    c.limit = 0;
    c.pos.store(0, std::memory_order_relaxed);
  }
}

bool ResultPartition::IsAvailable() const {
  return released() || pool_->in_use_segments() < pool_->max_segments();
}

void ResultPartition::NotifyWhenAvailable(AvailabilityCallback callback) {
  pool_->NotifyWhenAvailable(std::move(callback));
}

ResultPartitionStats ResultPartition::stats() const {
  ResultPartitionStats s;
  s.records = records_.load(std::memory_order_relaxed);
  s.buffers_finished = buffers_finished_.load(std::memory_order_relaxed);
  s.waits_for_buffer = waits_for_buffer_.load(std::memory_order_relaxed);
  s.buffers_discarded = buffers_discarded_.load(std::memory_order_relaxed);
  return s;
}

// ---------------------------------------------------------------- any thread

void ResultPartition::Flush(uint32_t subpartition) {
  Subpartition& sub = subs_[subpartition];
  std::shared_ptr<SubpartitionListener> notify;
  {
    MutexLock lock(&sub.mu);
    if (sub.flush_requested || !sub.writing.valid()) return;
    if (sub.committed->load(std::memory_order_acquire) <= sub.delivered) return;
    const bool was_available = sub.AvailableLocked();
    sub.flush_requested = true;
    if (!was_available) notify = sub.listener;
  }
  if (notify != nullptr) notify->OnDataAvailable(false);
}

void ResultPartition::FlushAll() {
  for (uint32_t i = 0; i < num_subpartitions(); ++i) Flush(i);
}

void ResultPartition::SetFailed(State state, absl::Status cause) {
  int expected = kRunning;
  if (!state_.compare_exchange_strong(expected, state)) return;  // the first cause wins
  std::shared_ptr<Notification> blocked;
  {
    MutexLock lock(&state_mu_);
    cause_ = cause;
    blocked = blocked_writer_;
  }
  if (timer_ != nullptr) timer_->Cancel(flush_timer_.load());
  for (Subpartition& sub : subs_) {
    std::deque<Queued> dropped;
    Buffer writing;
    std::shared_ptr<SubpartitionListener> listener;
    {
      MutexLock lock(&sub.mu);
      listener = sub.listener;
      sub.failure = cause;
      dropped.swap(sub.queue);
      writing = std::move(sub.writing);
      sub.backlog = 0;
      sub.priority_events = 0;
    }
    // Buffers go back to the pool outside the lock (recycling may run pool callbacks).
    dropped.clear();
    writing.Release();
    if (listener != nullptr) listener->OnDataAvailable(false);
  }
  if (blocked != nullptr) blocked->Notify();
}

void ResultPartition::Fail(absl::Status cause) {
  if (cause.ok()) cause = absl::UnknownError("failed without a cause");
  SLUICE_LOG_DEBUG("result partition {} failed: {}", name_, cause);
  SetFailed(kFailed,
            absl::Status(cause.code(), absl::StrFormat("producer of result partition %s failed: %s",
                                                       name_, std::string(cause.message()))));
}

void ResultPartition::Release(absl::Status cause) {
  if (cause.ok()) cause = absl::CancelledError("released");
  SetFailed(kReleased,
            absl::Status(cause.code(), absl::StrFormat("result partition %s was released: %s",
                                                       name_, std::string(cause.message()))));
}

absl::Status ResultPartition::cause() const {
  MutexLock lock(&state_mu_);
  return cause_;
}

uint32_t ResultPartition::backlog(uint32_t subpartition) const {
  const Subpartition& sub = subs_[subpartition];
  MutexLock lock(&sub.mu);
  return sub.backlog;
}

// ---------------------------------------------------------------- consumer side

absl::StatusOr<std::unique_ptr<SubpartitionView>> ResultPartition::CreateView(
    uint32_t subpartition, std::shared_ptr<SubpartitionListener> listener) {
  if (subpartition >= num_subpartitions()) {
    return absl::OutOfRangeError(
        absl::StrFormat("result partition %s has %d subpartitions; there is no subpartition %d",
                        name_, num_subpartitions(), subpartition));
  }
  Subpartition& sub = subs_[subpartition];
  std::shared_ptr<SubpartitionListener> notify;
  {
    MutexLock lock(&sub.mu);
    if (sub.has_view) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "subpartition %d of result partition %s already has a consumer", subpartition, name_));
    }
    if (sub.consumer_released) {
      return absl::FailedPreconditionError(
          absl::StrFormat("subpartition %d of result partition %s was released by its consumer",
                          subpartition, name_));
    }
    sub.has_view = true;
    sub.listener = std::move(listener);
    if (sub.AvailableLocked()) notify = sub.listener;
  }
  auto view =
      std::unique_ptr<SubpartitionView>(new SubpartitionView(shared_from_this(), subpartition));
  if (notify != nullptr) notify->OnDataAvailable(false);
  return view;
}

absl::StatusOr<std::optional<PolledBuffer>> ResultPartition::Poll(uint32_t index, bool has_credit) {
  Subpartition& sub = subs_[index];
  MutexLock lock(&sub.mu);
  if (!sub.failure.ok()) return sub.failure;
  if (sub.consumer_released) {
    return absl::FailedPreconditionError(
        absl::StrFormat("subpartition %d of result partition %s is released", index, name_));
  }
  PolledBuffer out;
  if (!sub.queue.empty()) {
    Queued& front = sub.queue.front();
    if (front.type == DataType::kData) {
      if (!has_credit) return std::nullopt;
      --sub.backlog;
    } else if (front.type == DataType::kPriorityEvent) {
      --sub.priority_events;
    }
    out.buffer = std::move(front.buffer);
    out.type = front.type;
    sub.queue.pop_front();
  } else if (sub.flush_requested && has_credit) {
    const uint32_t committed = sub.committed->load(std::memory_order_acquire);
    if (committed <= sub.delivered) return std::nullopt;
    out.buffer = sub.writing.Slice(sub.delivered, committed - sub.delivered);
    out.type = DataType::kData;
    sub.delivered = committed;
    sub.flush_requested = false;
    buffers_finished_.fetch_add(1, std::memory_order_relaxed);
  } else {
    return std::nullopt;
  }
  out.backlog = sub.backlog;
  out.more_available = sub.AvailableLocked();
  return out;
}

void ResultPartition::ReleaseView(uint32_t index) {
  Subpartition& sub = subs_[index];
  std::deque<Queued> dropped;
  Buffer writing;
  std::shared_ptr<SubpartitionListener> listener;
  {
    MutexLock lock(&sub.mu);
    sub.consumer_released = true;
    sub.has_view = false;
    dropped.swap(sub.queue);
    writing = std::move(sub.writing);
    listener = std::move(sub.listener);
    sub.backlog = 0;
    sub.priority_events = 0;
    sub.flush_requested = false;
  }
}

}  // namespace sluice
