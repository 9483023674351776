#include "shuffle/input_gate.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"

namespace sluice {
namespace {

// PollNext, sleeping on the gate's availability callback while it returns kNone.
template <typename Gate>
absl::Status WaitNextOn(Gate& gate, InputItem* out, absl::Duration timeout) {
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  while (true) {
    SLUICE_RETURN_IF_ERROR(gate.PollNext(out));
    if (out->kind != InputItem::Kind::kNone) return absl::OkStatus();
    auto ready = std::make_shared<Notification>();
    gate.NotifyWhenAvailable([ready] { ready->Notify(); });
    if (deadline == absl::InfiniteFuture()) {
      ready->WaitForNotification();
    } else if (!ready->WaitForNotificationWithTimeout(deadline - absl::Now())) {
      return gate.PollNext(out);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- InputGate

InputGate::InputGate(std::string name, const InputGateOptions& options)
    : name_(std::move(name)), options_(options), floating_(options.floating_buffers_per_gate) {}

InputGate::~InputGate() { Close(); }

void InputGate::AddChannel(std::unique_ptr<InputChannel> channel) {
  SLUICE_CHECK(!started_);
  Slot slot{std::move(channel), RecordDeserializer(options_.max_record_size)};
  channels_.push_back(std::move(slot));
  MutexLock lock(&mu_);
  queued_.push_back(0);
}

absl::Status InputGate::Start() {
  SLUICE_CHECK(!started_);
  started_ = true;
  for (Slot& slot : channels_) SLUICE_RETURN_IF_ERROR(slot.channel->Request());
  return absl::OkStatus();
}

void InputGate::Close() {
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
  }
  // Buffers first: a channel's buffers must be back before the channel lets go of its producer.
  current_ = nullptr;
  for (Slot& slot : channels_) slot.deserializer.Reset();
  for (Slot& slot : channels_) slot.channel->Release();
  std::vector<AvailabilityCallback> waiters;
  {
    MutexLock lock(&mu_);
    ready_.clear();
    priority_ready_.clear();
    waiters.swap(waiters_);
  }
}

void InputGate::NotifyChannelNonEmpty(uint32_t channel, bool priority) {
  Enqueue(channel, priority);
}

void InputGate::Enqueue(uint32_t index, bool priority) {
  std::vector<AvailabilityCallback> wake;
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    if (priority) {
      priority_ready_.push_back(index);
      priority_pending_.store(true, std::memory_order_release);
    } else if (!queued_[index]) {
      queued_[index] = 1;
      ready_.push_back(index);
    } else {
      return;
    }
    wake.swap(waiters_);
  }
  for (AvailabilityCallback& cb : wake) std::move(cb)();
}

bool InputGate::Pop(uint32_t* index, bool* priority) {
  MutexLock lock(&mu_);
  if (!priority_ready_.empty()) {
    *index = priority_ready_.front();
    priority_ready_.pop_front();
    *priority = true;
    if (priority_ready_.empty()) priority_pending_.store(false, std::memory_order_relaxed);
    return true;
  }
  if (ready_.empty()) return false;
  *index = ready_.front();
  ready_.pop_front();
  queued_[*index] = 0;
  *priority = false;
  return true;
}

void InputGate::NotifyWhenAvailable(AvailabilityCallback callback) {
  {
    MutexLock lock(&mu_);
    const bool now = closed_ || !failure_.ok() || !ready_.empty() || !priority_ready_.empty() ||
                     (current_ != nullptr) || finished_count_ == channels_.size();
    if (!now) {
      waiters_.push_back(std::move(callback));
      return;
    }
  }
  std::move(callback)();
}

absl::Status InputGate::WaitNext(InputItem* out, absl::Duration timeout) {
  return WaitNextOn(*this, out, timeout);
}

void InputGate::BlockChannel(uint32_t channel) { channels_[channel].blocked = true; }

void InputGate::ResumeChannel(uint32_t channel) {
  Slot& slot = channels_[channel];
  slot.blocked = false;
  if (slot.parked) {
    slot.parked = false;
    Enqueue(channel, false);
  }
}

absl::Status InputGate::Failed(uint32_t channel, const absl::Status& cause) {
  failure_ =
      absl::Status(cause.code(), absl::StrFormat("input gate %s, channel %d (%s): %s", name_,
                                                 channel, channels_[channel].channel->description(),
                                                 std::string(cause.message())));
  current_ = nullptr;
  return failure_;
}

absl::Status InputGate::PollSlow(InputItem* out) {
  if (!failure_.ok()) return failure_;
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrFormat("input gate %s is closed", name_));
  }
  while (true) {
    if (priority_pending_.load(std::memory_order_acquire)) {
      uint32_t index = 0;
      bool priority = false;
      // Priority channels are popped first; a plain one popped here goes back to the queue.
      if (Pop(&index, &priority)) {
        if (priority) {
          bool done = false;
          SLUICE_RETURN_IF_ERROR(ReadChannel(index, true, out, &done));
          if (done) return absl::OkStatus();
          continue;
        }
        Enqueue(index, false);
      }
    }
    if (current_ != nullptr) {
      absl::StatusOr<bool> got = current_->deserializer.Next(&out->record);
      if (!got.ok()) {
        return Failed(current_index_, got.status());
      }
      if (*got) {
        out->kind = InputItem::Kind::kRecord;
        out->channel = current_index_;
        return absl::OkStatus();
      }
      // The buffer is used up; its credit goes back to the channel's producer.
      current_->deserializer.TakeBuffer().Release();
      current_->channel->OnBufferConsumed();
      current_ = nullptr;
    }
    uint32_t index = 0;
    bool priority = false;
    if (!Pop(&index, &priority)) {
      out->kind =
          finished_count_ == channels_.size() ? InputItem::Kind::kEnd : InputItem::Kind::kNone;
      return absl::OkStatus();
    }
    bool done = false;
    SLUICE_RETURN_IF_ERROR(ReadChannel(index, priority, out, &done));
    if (done) return absl::OkStatus();
  }
}

absl::Status InputGate::ReadChannel(uint32_t index, bool priority, InputItem* out, bool* done) {
  Slot& slot = channels_[index];
  *done = false;
  if (slot.finished) return absl::OkStatus();
  if (slot.blocked && !priority) {
    slot.parked = true;
    return absl::OkStatus();
  }
  // With a buffer of some channel in progress, only a priority event may be taken.
  absl::StatusOr<std::optional<ReceivedBuffer>> polled =
      slot.channel->Poll(/*priority_only=*/current_ != nullptr);
  if (!polled.ok()) {
    return Failed(index, polled.status());
  }
  if (!polled->has_value()) return absl::OkStatus();
  ReceivedBuffer& received = **polled;
  if (received.more_available) Enqueue(index, false);
  if (received.type == DataType::kData) {
    SLUICE_CHECK(current_ == nullptr);
    ++buffers_taken_;
    slot.deserializer.SetBuffer(std::move(received.buffer));
    current_ = &slot;
    current_index_ = index;
    return absl::OkStatus();
  }
  absl::StatusOr<Event> event = DecodeEvent(received.buffer.readable());
  if (!event.ok()) {
    return Failed(index, event.status());
  }
  event_ = *std::move(event);
  if (event_.type == EventType::kEndOfPartition) {
    if (slot.deserializer.has_partial_record()) {
      return Failed(index, absl::DataLossError("the partition ended inside a record"));
    }
    slot.finished = true;
    ++finished_count_;
    slot.deserializer.Reset();
    slot.channel->Release();
  }
  out->kind = InputItem::Kind::kEvent;
  out->channel = index;
  out->event = &event_;
  *done = true;
  return absl::OkStatus();
}

// ---------------------------------------------------------------- UnionInputGate

struct UnionInputGate::Shared {
  Mutex mu;
  std::deque<int> ready ABSL_GUARDED_BY(mu);
  std::vector<bool> queued ABSL_GUARDED_BY(mu);
  std::vector<AvailabilityCallback> waiters ABSL_GUARDED_BY(mu);
  bool dead ABSL_GUARDED_BY(mu) = false;

  void Ready(int gate) {
    std::vector<AvailabilityCallback> wake;
    {
      MutexLock lock(&mu);
      if (dead || queued[gate]) return;
      queued[gate] = true;
      ready.push_back(gate);
      wake.swap(waiters);
    }
    for (AvailabilityCallback& cb : wake) std::move(cb)();
  }
};

UnionInputGate::UnionInputGate(std::vector<InputGate*> gates)
    : gates_(std::move(gates)), shared_(std::make_shared<Shared>()) {
  MutexLock lock(&shared_->mu);
  for (size_t i = 0; i < gates_.size(); ++i) {
    offsets_.push_back(total_channels_);
    total_channels_ += gates_[i]->num_channels();
    shared_->queued.push_back(true);
    shared_->ready.push_back(static_cast<int>(i));
  }
  ended_.assign(gates_.size(), false);
}

UnionInputGate::~UnionInputGate() {
  std::vector<AvailabilityCallback> dropped;
  MutexLock lock(&shared_->mu);
  shared_->dead = true;
  dropped.swap(shared_->waiters);
}

void UnionInputGate::Requeue(int gate) { shared_->Ready(gate); }

absl::Status UnionInputGate::Finish(absl::Status s, InputItem* out) {
  if (!s.ok()) return s;
  const int g = current_;
  switch (out->kind) {
    case InputItem::Kind::kRecord:
      // The gate moved to a new buffer: return the record, then let the other gates have a turn.
      out->gate = static_cast<uint32_t>(g);
      out->channel += offsets_[g];
      current_buffers_ = gates_[g]->buffers_taken();
      current_ = -1;
      Requeue(g);
      return s;
    case InputItem::Kind::kEvent:
      out->gate = static_cast<uint32_t>(g);
      out->channel += offsets_[g];
      return s;
    case InputItem::Kind::kEnd:
      if (!ended_[g]) {
        ended_[g] = true;
        ++ended_count_;
      }
      current_ = -1;
      return PollSlow(out);
    case InputItem::Kind::kNone: {
      current_ = -1;
      std::weak_ptr<Shared> weak = shared_;
      gates_[g]->NotifyWhenAvailable([weak, g] {
        if (auto shared = weak.lock()) shared->Ready(g);
      });
      return PollSlow(out);
    }
  }
  return s;
}

absl::Status UnionInputGate::PollSlow(InputItem* out) {
  while (true) {
    if (current_ >= 0) {
      InputGate* g = gates_[current_];
      absl::Status s = g->PollNext(out);
      if (s.ok() && out->kind == InputItem::Kind::kRecord &&
          g->buffers_taken() == current_buffers_) {
        out->gate = static_cast<uint32_t>(current_);
        out->channel += offsets_[current_];
        return s;
      }
      return Finish(std::move(s), out);
    }
    int next = -1;
    {
      MutexLock lock(&shared_->mu);
      if (!shared_->ready.empty()) {
        next = shared_->ready.front();
        shared_->ready.pop_front();
        shared_->queued[next] = false;
      }
    }
    if (next < 0) {
      out->kind = ended_count_ == gates_.size() ? InputItem::Kind::kEnd : InputItem::Kind::kNone;
      return absl::OkStatus();
    }
    if (ended_[next]) continue;
    current_ = next;
    current_buffers_ = gates_[next]->buffers_taken();
  }
}

void UnionInputGate::NotifyWhenAvailable(AvailabilityCallback callback) {
  {
    MutexLock lock(&shared_->mu);
    if (current_ < 0 && shared_->ready.empty() && ended_count_ < gates_.size()) {
      shared_->waiters.push_back(std::move(callback));
      return;
    }
  }
  std::move(callback)();
}

absl::Status UnionInputGate::WaitNext(InputItem* out, absl::Duration timeout) {
  return WaitNextOn(*this, out, timeout);
}

void UnionInputGate::Locate(uint32_t channel, uint32_t* gate, uint32_t* local) const {
  uint32_t g = 0;
  while (g + 1 < offsets_.size() && offsets_[g + 1] <= channel) ++g;
  *gate = g;
  *local = channel - offsets_[g];
}

void UnionInputGate::BlockChannel(uint32_t channel) {
  uint32_t g = 0, local = 0;
  Locate(channel, &g, &local);
  gates_[g]->BlockChannel(local);
}

void UnionInputGate::ResumeChannel(uint32_t channel) {
  uint32_t g = 0, local = 0;
  Locate(channel, &g, &local);
  gates_[g]->ResumeChannel(local);
}

}  // namespace sluice
