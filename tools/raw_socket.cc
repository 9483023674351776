#include "tools/raw_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::tools {
namespace {

absl::Status Errno(int err, absl::string_view what) {
  const std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (err == EAGAIN || err == EWOULDBLOCK || err == ETIMEDOUT) {
    return absl::DeadlineExceededError(msg);
  }
  if (err == ECONNRESET || err == ECONNREFUSED || err == EPIPE) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

sockaddr_in Loopback(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

}  // namespace

RawSocket::RawSocket(RawSocket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

RawSocket& RawSocket::operator=(RawSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

RawSocket::~RawSocket() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<RawSocket> RawSocket::Connect(uint16_t port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration backoff = absl::Milliseconds(5);
  while (true) {
    RawSocket s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.fd() < 0) return Errno(errno, "socket");
    sockaddr_in addr = Loopback(port);
    if (connect(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      SetNoDelay(s.fd());
      return s;
    }
    const int err = errno;
    if (err != ECONNREFUSED || absl::Now() + backoff > deadline) {
      return Errno(err, absl::StrFormat("connect to 127.0.0.1:%d", port));
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(backoff));
    backoff = std::min(backoff * 2, absl::Milliseconds(200));
  }
}

absl::Status RawSocket::WriteAll(iovec* iov, int count) {
  while (count > 0) {
    // sendmsg rather than writev: a peer that has gone is an error here, not a SIGPIPE.
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, "send");
    }
    auto left = static_cast<size_t>(n);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return absl::OkStatus();
}

absl::Status RawSocket::WriteFrame(net::FrameHeader header, std::string_view payload) {
  char h[net::kFrameHeaderSize];
  header.length = static_cast<uint32_t>(payload.size());
  net::EncodeFrameHeader(header, h);
  iovec iov[2] = {{h, sizeof(h)}, {const_cast<char*>(payload.data()), payload.size()}};
  return WriteAll(iov, payload.empty() ? 1 : 2);
}

absl::Status RawSocket::SetReceiveTimeout(absl::Duration timeout) {
  timeval tv = absl::ToTimeval(timeout);
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
    return Errno(errno, "setsockopt(SO_RCVTIMEO)");
  }
  return absl::OkStatus();
}

absl::StatusOr<RawListener> RawListener::Listen() {
  RawSocket s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.fd() < 0) return Errno(errno, "socket");
  int one = 1;
  setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = Loopback(0);
  if (bind(s.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Errno(errno, "bind 127.0.0.1:0");
  }
  if (listen(s.fd(), 4) != 0) return Errno(errno, "listen");
  socklen_t len = sizeof(addr);
  if (getsockname(s.fd(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno(errno, "getsockname");
  }
  return RawListener(std::move(s), ntohs(addr.sin_port));
}

absl::StatusOr<RawSocket> RawListener::Accept(absl::Duration timeout) {
  pollfd p{socket_.fd(), POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return Errno(errno, "poll");
  if (rc == 0) {
    return absl::DeadlineExceededError(absl::StrFormat("no connection on port %d within %s", port_,
                                                       absl::FormatDuration(timeout)));
  }
  RawSocket s(accept4(socket_.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  if (s.fd() < 0) return Errno(errno, "accept");
  SetNoDelay(s.fd());
  return s;
}

RawFrameReader::RawFrameReader(int fd, size_t buffer_size) : fd_(fd), buf_(buffer_size) {}

absl::StatusOr<bool> RawFrameReader::Fill() {
  while (true) {
    ssize_t n = recv(fd_, buf_.data() + end_, buf_.size() - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      bytes_received_ += static_cast<uint64_t>(n);
      return true;
    }
    if (n == 0) return false;
    if (errno != EINTR) return Errno(errno, "recv");
  }
}

absl::StatusOr<net::FrameHeader> RawFrameReader::ReadHeader() {
  if (end_ - begin_ < net::kFrameHeaderSize) {
    // Keep the header contiguous: move the few bytes of a split one to the front.
    const size_t have = end_ - begin_;
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, have);
      bytes_copied_ += have;
      begin_ = 0;
      end_ = have;
    }
    while (end_ < net::kFrameHeaderSize) {
      absl::StatusOr<bool> more = Fill();
      if (!more.ok()) return more.status();
      if (!*more) {
        if (end_ == 0) return absl::OutOfRangeError("end of stream");
        return absl::UnavailableError(
            absl::StrFormat("peer closed after %d bytes of a frame header", end_));
      }
    }
  }
  absl::StatusOr<net::FrameHeader> h =
      net::DecodeFrameHeader(buf_.data() + begin_, net::kDefaultMaxFrameSize);
  if (h.ok()) {
    begin_ += net::kFrameHeaderSize;
    ++frames_received_;
  }
  return h;
}

absl::Status RawFrameReader::ReadPayload(size_t n,
                                         absl::FunctionRef<void(const char*, size_t)> fn) {
  while (n > 0) {
    if (begin_ == end_) {
      begin_ = end_ = 0;
      absl::StatusOr<bool> more = Fill();
      if (!more.ok()) return more.status();
      if (!*more) return absl::UnavailableError("peer closed in the middle of a frame");
    }
    const size_t k = std::min(n, end_ - begin_);
    fn(buf_.data() + begin_, k);
    begin_ += k;
    n -= k;
  }
  return absl::OkStatus();
}

absl::Status RawFrameReader::ReadPayloadInto(size_t n, std::string* out) {
  out->clear();
  return ReadPayload(n, [out](const char* p, size_t k) { out->append(p, k); });
}

}  // namespace sluice::tools
