// A blocking TCP client over loopback for tests of byte-stream servers. Every wait is bounded by
// a timeout, so that a server that never answers fails the test instead of hanging it. Not
// thread-safe: one thread drives one client.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sluice::testing_util {

class LoopbackClient {
 public:
  // Connects to 127.0.0.1:port; connected() tells whether it worked. A positive `receive_buffer`
  // shrinks the socket's receive buffer first (a client that reads slowly fills up sooner).
  explicit LoopbackClient(uint16_t port, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Reset();
  }
  LoopbackClient(LoopbackClient&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)),
        closed_(other.closed_),
        buffer_(std::move(other.buffer_)) {}
  LoopbackClient& operator=(LoopbackClient&&) = delete;
  ~LoopbackClient() { Reset(); }

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Received and not consumed yet.
  std::string& buffer() { return buffer_; }

  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t w = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(w));
    }
    return true;
  }

  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  void Close() { Reset(); }

  // Waits for at least one more byte until `deadline`. Returns false on end of stream, reset or
  // timeout (closed() tells which).
  bool ReadMore(absl::Time deadline) {
    while (fd_ >= 0 && !closed_) {
      const int64_t left = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
      pollfd p{fd_, POLLIN, 0};
      const int rc = poll(&p, 1, static_cast<int>(left));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) return false;
      char chunk[64 * 1024];
      const ssize_t r = recv(fd_, chunk, sizeof(chunk), 0);
      if (r > 0) {
        buffer_.append(chunk, static_cast<size_t>(r));
        return true;
      }
      if (r < 0 && errno == EINTR) continue;
      closed_ = true;  // end of stream or reset
    }
    return false;
  }

  // Consumes and returns exactly `n` bytes; fewer when the stream ended or time ran out.
  std::string Read(size_t n, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (buffer_.size() < n && ReadMore(deadline)) {
    }
    std::string out = buffer_.substr(0, std::min(n, buffer_.size()));
    buffer_.erase(0, out.size());
    return out;
  }

  // Consumes and returns everything up to and including `delimiter` ("" when it never came).
  std::string ReadUntil(std::string_view delimiter, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    size_t at;
    while ((at = buffer_.find(delimiter)) == std::string::npos) {
      if (!ReadMore(deadline)) return "";
    }
    std::string out = buffer_.substr(0, at + delimiter.size());
    buffer_.erase(0, out.size());
    return out;
  }

  // Reads (into buffer()) until the server closes; false when it is still open at the timeout.
  bool WaitClosed(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!closed_ && absl::Now() < deadline) ReadMore(deadline);
    return closed_;
  }
  bool closed() const { return closed_; }

 private:
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  bool closed_ = false;
  std::string buffer_;
};

}  // namespace sluice::testing_util
