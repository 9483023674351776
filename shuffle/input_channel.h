// InputChannel: the consumer's end of one subpartition, as one channel of an InputGate. The
// `local` service reads the producer's queue in the same process; the `net` service receives
// over a connection. Both keep their credit in a ChannelCredit and borrow floating credit from
// their gate, so flow control behaves the same whichever service runs.
//
// Threads: Poll and OnBufferConsumed are called by the gate's consuming thread; Release by the
// gate (any thread once, before the gate goes away). Implementations notify their gate from
// whichever thread delivers data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "base/buffer.h"
#include "shuffle/credit.h"
#include "shuffle/result_partition.h"

namespace sluice {

struct ReceivedBuffer {
  Buffer buffer;
  DataType type = DataType::kData;
  bool more_available = false;  // another Poll would return something now
};

struct ChannelStats {
  uint32_t credit = 0;  // buffers the producer may still send
  uint32_t exclusive = 0;
  uint32_t floating = 0;  // floating credits the channel holds
  uint32_t held = 0;      // buffers received and not yet consumed
  uint32_t backlog = 0;   // as last reported by the producer
  uint64_t buffers_received = 0;
};

inline ChannelStats MakeChannelStats(const ChannelCredit& credit, uint64_t buffers_received) {
  ChannelStats s;
  s.credit = credit.available();
  s.exclusive = credit.exclusive();
  s.floating = credit.floating();
  s.held = credit.held();
  s.backlog = credit.backlog();
  s.buffers_received = buffers_received;
  return s;
}

// What a channel needs from its gate.
class ChannelOwner {
 public:
  virtual ~ChannelOwner() = default;
  // The channel has something to poll (`priority`: a priority event is at its front), or failed.
  virtual void NotifyChannelNonEmpty(uint32_t channel, bool priority) = 0;
  virtual FloatingCredits& floating_credits() = 0;
  virtual uint32_t exclusive_credits_per_channel() const = 0;
};

class InputChannel {
 public:
  virtual ~InputChannel() = default;

  // Starts consuming: asks for the subpartition with the initial (exclusive) credit. The
  // producer may not exist yet; the channel then keeps asking until a deadline, and a failure
  // to find it arrives through Poll.
  virtual absl::Status Request() = 0;
  // The next buffer, or nullopt. With `priority_only`, only a priority event at the front.
  // An error means the channel failed; the message names the producer's cause.
  virtual absl::StatusOr<std::optional<ReceivedBuffer>> Poll(bool priority_only) = 0;
  // The consumer is done with a data buffer this channel returned: its credit comes back.
  virtual void OnBufferConsumed() = 0;
  // Stops consuming and gives back every buffer and credit. Idempotent; no notification
  // reaches the gate after it returns.
  virtual void Release() = 0;
  virtual ChannelStats stats() const = 0;
  // For messages: which partition and subpartition this channel reads.
  virtual std::string description() const = 0;
};

}  // namespace sluice
