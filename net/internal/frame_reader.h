// FrameReader: turns received bytes into frames for one connection, shared by every socket
// transport. Bytes land in pool segments; a frame lying inside one segment is handed out as a
// slice of it (no copy). A large frame whose payload would not fit in the current segment is
// read straight into a buffer of its own ("directed" reads: the header, then exactly the payload),
// and the reader stays in that mode while large frames keep coming, also across a few small
// frames between them (each then costs a receive of its own rather than a copy of the next
// large frame). Only a small frame straddling
// two segments, or the part of a large one already received, is copied; the bytes are counted
// in TransportStats::bytes_copied. Not thread-safe: the connection's I/O thread owns it.
#pragma once

#include <cstddef>
#include <functional>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "base/buffer.h"
#include "base/buffer_pool.h"
#include "net/frame.h"
#include "net/transport.h"

namespace sluice::net::internal {

class FrameReader {
 public:
  using Sink = absl::FunctionRef<void(const FrameHeader&, Buffer)>;

  FrameReader(LocalBufferPool* pool, size_t max_frame_size, TransportStats* stats);

  // Where the next receive should write: `data[0, len)`, len > 0.
  struct Target {
    char* data = nullptr;
    size_t len = 0;
  };
  // Prepares the next target, taking a segment from the pool when needed. Returns false when
  // the pool has none: the caller waits with pool()->NotifyWhenAvailable and retries.
  bool PrepareTarget(Target* target);
  // Up to two places for one scatter receive: while a large frame is read directly, the rest of
  // its payload and then room for the next frame's header, so that a stream of large frames costs
  // one receive per frame. Returns how many targets were filled in; 0 when the pool has none.
  int PrepareTargets(Target targets[2]);
  // `n` bytes were written at the last prepared target(s), in order.
  absl::Status OnReceived(size_t n, Sink sink);

  // True when the next receive may land anywhere, so a transport with a provided-buffer ring
  // may use it; false while a directed read (header or payload of a large frame) is in progress.
  bool accepts_any_segment() const { return mode_ == Mode::kGeneric; }
  // A whole segment from a provided-buffer ring holding `n` received bytes at offset 0.
  // REQUIRES: accepts_any_segment().
  absl::Status OnSegment(Buffer segment, size_t n, Sink sink);

  // True when no part of a frame is pending: an end of stream here is an orderly close.
  bool at_frame_boundary() const;
  // Bytes of the frame in progress that have arrived so far, and that frame's full size, for
  // "peer closed mid-frame" errors.
  size_t partial_bytes() const;

  // Drops every buffer held (connection closing).
  void Reset();

  LocalBufferPool* pool() const { return pool_; }
  // Asked first for the buffer of a directly read payload (ConnectionHandler::ReceiveBuffer);
  // null = always the pool. Set by the connection while it has a handler.
  void set_buffer_source(ConnectionHandler* source) { buffer_source_ = source; }

  // Payloads at least this large that do not fit the current segment are read directly.
  size_t direct_threshold() const { return direct_threshold_; }

 private:
  enum class Mode { kGeneric, kHeader, kPayload };

  absl::Status ParseGeneric(Sink sink);
  absl::Status BeginPayload(const FrameHeader& header, Sink sink);
  absl::Status CompleteHeader(Sink sink);
  void FinishPayload(Sink sink);
  // Picks the mode for the next frame after a large or small one.
  void AfterFrame(bool large);
  // Moves an unparsed tail of rx_ into a fresh segment. False when the pool has none.
  bool MoveTail();
  bool AllocatePayload();

  LocalBufferPool* const pool_;
  const size_t max_frame_size_;
  const size_t direct_threshold_;
  TransportStats* const stats_;
  ConnectionHandler* buffer_source_ = nullptr;

  Mode mode_ = Mode::kGeneric;
  Buffer rx_;  // generic mode: segment being filled; readable = received but not yet parsed
  char header_[kFrameHeaderSize];
  size_t header_have_ = 0;
  FrameHeader current_;  // directed payload mode: header of the frame being read
  Buffer partial_;       // received bytes of that payload not yet copied into payload_
  Buffer payload_;       // directed payload mode: destination, writer index = bytes received
  bool large_mode_ = false;
  int small_streak_ = 0;      // small frames in a row while in large mode
  bool spill_armed_ = false;  // the last prepare offered header_ after the payload
};

}  // namespace sluice::net::internal
