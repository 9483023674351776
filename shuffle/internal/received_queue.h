// The buffers a consumer channel has received and not yet handed to its gate, in order, with
// priority events moved ahead of everything but earlier priority events. Shared by the local and
// network channels. Not thread-safe: the channel guards it with its own lock.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

#include "base/buffer.h"
#include "shuffle/input_channel.h"
#include "shuffle/result_partition.h"

namespace sluice::internal {

class ReceivedQueue {
 public:
  bool empty() const { return items_.empty(); }
  bool has_priority() const { return priority_events_ > 0; }

  void Push(Buffer buffer, DataType type) {
    if (type == DataType::kPriorityEvent) {
      items_.insert(items_.begin() + priority_events_, Item{std::move(buffer), type});
      ++priority_events_;
    } else {
      items_.push_back(Item{std::move(buffer), type});
    }
  }

  // The front item; with `priority_only`, only a priority event.
  std::optional<ReceivedBuffer> Pop(bool priority_only) {
    if (items_.empty() || (priority_only && priority_events_ == 0)) return std::nullopt;
    Item item = std::move(items_.front());
    items_.pop_front();
    if (item.type == DataType::kPriorityEvent) --priority_events_;
    ReceivedBuffer out;
    out.buffer = std::move(item.buffer);
    out.type = item.type;
    out.more_available = !items_.empty();
    return out;
  }

  // Moves every item out (to be released outside the channel's lock).
  ReceivedQueue TakeAll() { return std::exchange(*this, ReceivedQueue()); }

 private:
  struct Item {
    Buffer buffer;
    DataType type;
  };
  std::deque<Item> items_;
  uint32_t priority_events_ = 0;  // at the front of items_
};

}  // namespace sluice::internal
