// Plain blocking TCP sockets on loopback for the raw-tcp baseline of the net benchmark: the
// simplest code that moves the same frames as the transports (blocking send/recv, TCP_NODELAY,
// payloads parsed in place in one receive buffer), to measure the transports against. A socket
// is used by one thread at a time.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/frame.h"

namespace sluice::tools {

class RawSocket {
 public:
  RawSocket() = default;
  explicit RawSocket(int fd) : fd_(fd) {}
  RawSocket(RawSocket&& other) noexcept;
  RawSocket& operator=(RawSocket&& other) noexcept;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket();

  // Connects to 127.0.0.1:port, retrying refused attempts until `timeout`.
  static absl::StatusOr<RawSocket> Connect(uint16_t port, absl::Duration timeout);

  int fd() const { return fd_; }
  // Writes every byte of `iov`, across partial writes (without SIGPIPE: a closed peer is
  // Unavailable).
  absl::Status WriteAll(iovec* iov, int count);
  // Writes one frame: `header` (its length set from the payload) and `payload`.
  absl::Status WriteFrame(net::FrameHeader header, std::string_view payload);
  // Gives up on a receive that waits longer than `timeout` (SO_RCVTIMEO).
  absl::Status SetReceiveTimeout(absl::Duration timeout);

 private:
  int fd_ = -1;
};

class RawListener {
 public:
  // Listens on 127.0.0.1 on a free port.
  static absl::StatusOr<RawListener> Listen();
  RawListener(RawListener&&) = default;
  RawListener& operator=(RawListener&&) = default;

  uint16_t port() const { return port_; }
  // Waits up to `timeout` for one connection.
  absl::StatusOr<RawSocket> Accept(absl::Duration timeout);

 private:
  RawListener(RawSocket socket, uint16_t port) : socket_(std::move(socket)), port_(port) {}
  RawSocket socket_;
  uint16_t port_ = 0;
};

// Reads frames from a blocking socket into one buffer and hands payloads out in place.
class RawFrameReader {
 public:
  explicit RawFrameReader(int fd, size_t buffer_size = 256 * 1024);

  // The next frame's header. Its payload must then be consumed with ReadPayload before the next
  // call. An end of stream at a frame boundary is OutOfRange.
  absl::StatusOr<net::FrameHeader> ReadHeader();
  // Consumes the `n` payload bytes of the current frame, calling `fn` on each contiguous piece.
  absl::Status ReadPayload(size_t n, absl::FunctionRef<void(const char*, size_t)> fn);
  // Reads the payload into `out` (small payloads only).
  absl::Status ReadPayloadInto(size_t n, std::string* out);

  // Bytes received, and bytes moved within the buffer to keep a split header contiguous.
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_copied() const { return bytes_copied_; }
  uint64_t frames_received() const { return frames_received_; }

 private:
  // Receives more bytes after end_. False at end of stream.
  absl::StatusOr<bool> Fill();

  int fd_;
  std::vector<char> buf_;
  size_t begin_ = 0;
  size_t end_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_copied_ = 0;
  uint64_t frames_received_ = 0;
};

}  // namespace sluice::tools
