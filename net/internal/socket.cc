#include "net/internal/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "base/status.h"
#include "net/schemas/handshake_generated.h"

namespace sluice::net::internal {

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ECONNRESET:
    case ECONNREFUSED:
    case EPIPE:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ECONNABORTED:
      return absl::UnavailableError(msg);
    case ETIMEDOUT:
      return absl::DeadlineExceededError(msg);
    case EADDRINUSE:
    case EACCES:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

namespace {

absl::StatusOr<sockaddr_in> Resolve(const std::string& host, uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  const std::string h = host.empty() || host == "localhost" ? "127.0.0.1" : host;
  if (inet_pton(AF_INET, h.c_str(), &addr.sin_addr) == 1) return addr;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(h.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cannot resolve host '%s': %s", host, gai_strerror(rc)));
  }
  addr.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return addr;
}

int64_t RemainingMillis(absl::Time deadline) {
  return std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
}

// Waits for `events` on fd until the deadline.
absl::Status WaitFd(int fd, short events, absl::Time deadline, const std::string& what) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(RemainingMillis(deadline)));
    if (rc > 0) return absl::OkStatus();
    if (rc == 0) return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
    if (errno != EINTR) return ErrnoStatus(errno, what);
  }
}

absl::Status WriteAll(int fd, const char* p, size_t n, absl::Time deadline,
                      const std::string& peer) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      SLUICE_RETURN_IF_ERROR(WaitFd(fd, POLLOUT, deadline, "handshake with " + peer));
      continue;
    }
    return ErrnoStatus(errno, "handshake send to " + peer);
  }
  return absl::OkStatus();
}

absl::Status ReadExact(int fd, char* p, size_t n, absl::Time deadline, const std::string& peer) {
  while (n > 0) {
    SLUICE_RETURN_IF_ERROR(WaitFd(fd, POLLIN, deadline, "handshake with " + peer));
    ssize_t r = recv(fd, p, n, 0);
    if (r > 0) {
      p += r;
      n -= static_cast<size_t>(r);
      continue;
    }
    if (r == 0) {
      return absl::UnavailableError(
          absl::StrCat("connection closed by ", peer, " during the handshake"));
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    return ErrnoStatus(errno, "handshake receive from " + peer);
  }
  return absl::OkStatus();
}

Buffer FinishBuilder(flatbuffers::FlatBufferBuilder& fbb) {
  return Buffer::CopyOf(
      std::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize()));
}

// FlatBuffers reads its scalars in place, so a table must start at an aligned address; a payload
// sliced out of a receive segment may start anywhere. Aligned payloads are shared, others copied.
Buffer AlignedForFlatBuffers(const Buffer& payload) {
  if (!payload.valid()) return Buffer();
  if ((reinterpret_cast<uintptr_t>(payload.read_ptr()) & 7) == 0) return payload.ReadableSlice();
  return Buffer::CopyOf(payload.readable());
}

}  // namespace

absl::StatusOr<int> OpenListenSocket(const std::string& host, uint16_t port, bool reuse_port) {
  SLUICE_ASSIGN_OR_RETURN(sockaddr_in addr, Resolve(host, port));
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, "setsockopt SO_REUSEPORT");
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, absl::StrFormat("bind %s:%d", host, port));
  }
  if (listen(fd, 4096) != 0) {
    int err = errno;
    close(fd);
    return ErrnoStatus(err, absl::StrFormat("listen %s:%d", host, port));
  }
  return fd;
}

uint16_t LocalPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

std::string PeerAddress(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "?";
  char ip[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip));
  return absl::StrFormat("%s:%d", ip, ntohs(addr.sin_port));
}

absl::Status PrepareStreamSocket(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "fcntl O_NONBLOCK");
  }
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return ErrnoStatus(errno, "setsockopt TCP_NODELAY");
  }
  return absl::OkStatus();
}

Buffer EncodeWholeFrame(FrameHeader header, const Buffer& payload) {
  header.length = static_cast<uint32_t>(payload.valid() ? payload.readable_bytes() : 0);
  Buffer out = Buffer::AllocateUnpooled(kFrameHeaderSize + header.length);
  EncodeFrameHeader(header, out.write_ptr());
  out.Commit(kFrameHeaderSize);
  if (header.length > 0) out.Append(payload.readable());
  return out;
}

absl::StatusOr<int> ConnectAndHandshake(const ConnectOptions& options,
                                        const TransportOptions& transport,
                                        std::string* server_name) {
  SLUICE_ASSIGN_OR_RETURN(sockaddr_in addr, Resolve(options.host, options.port));
  const std::string peer = absl::StrFormat("%s:%d", options.host, options.port);
  const absl::Time deadline = absl::Now() + options.timeout;
  absl::Duration backoff = options.initial_backoff;
  absl::Status last;
  int attempts = 0;
  while (true) {
    ++attempts;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return ErrnoStatus(errno, "socket");
    // Closes the attempt's socket on every early return. (Not absl::Cleanup: gcc 12 reports a
    // bogus maybe-uninitialized capture in it at -O2.)
    struct FdCloser {
      int fd;
      ~FdCloser() {
        if (fd >= 0) close(fd);
      }
    } close_fd{fd};
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    if (rc != 0 && errno == EINPROGRESS) {
      last = WaitFd(fd, POLLOUT, deadline, "connect to " + peer);
      if (last.ok()) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        last = err == 0 ? absl::OkStatus() : ErrnoStatus(err, "connect to " + peer);
      }
    } else if (rc != 0) {
      last = ErrnoStatus(errno, "connect to " + peer);
    } else {
      last = absl::OkStatus();
    }
    if (last.ok()) {
      SLUICE_RETURN_IF_ERROR(PrepareStreamSocket(fd));
      // Handshake: Hello out, then exactly one frame back (HelloAck or Error). Read exactly,
      // so frames the server sends right after its ack stay in the socket for the I/O loop.
      FrameHeader hello;
      hello.type = static_cast<uint8_t>(FrameType::kHello);
      Buffer frame = EncodeWholeFrame(hello, BuildHello(transport));
      SLUICE_RETURN_IF_ERROR(
          WriteAll(fd, frame.read_ptr(), frame.readable_bytes(), deadline, peer));
      char raw[kFrameHeaderSize];
      SLUICE_RETURN_IF_ERROR(ReadExact(fd, raw, sizeof(raw), deadline, peer));
      SLUICE_ASSIGN_OR_RETURN(FrameHeader h, DecodeFrameHeader(raw, 64 * 1024));
      Buffer payload = Buffer::AllocateUnpooled(h.length);
      SLUICE_RETURN_IF_ERROR(ReadExact(fd, payload.write_ptr(), h.length, deadline, peer));
      payload.Commit(h.length);
      if (h.type == static_cast<uint8_t>(FrameType::kError)) {
        return StatusFromErrorFrame(payload, peer);
      }
      if (h.type != static_cast<uint8_t>(FrameType::kHelloAck)) {
        return absl::DataLossError(
            absl::StrFormat("handshake with %s: expected hello-ack, got frame type %s", peer,
                            FrameTypeName(h.type)));
      }
      SLUICE_ASSIGN_OR_RETURN(std::string name, ParseHelloAck(payload, peer));
      if (server_name != nullptr) *server_name = std::move(name);
      close_fd.fd = -1;
      return fd;
    }
    // Only a refused or reset attempt is worth retrying: the server may not be up yet.
    if (!absl::IsUnavailable(last) || absl::Now() + backoff >= deadline) break;
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(backoff));
    backoff = std::min(backoff * 2, options.max_backoff);
  }
  return absl::Status(
      last.code(),
      absl::StrFormat("%s (after %d attempt%s within %s)", last.message(), attempts,
                      attempts == 1 ? "" : "s", absl::FormatDuration(options.timeout)));
}

Buffer BuildHello(const TransportOptions& options) {
  flatbuffers::FlatBufferBuilder fbb(128);
  auto token = fbb.CreateString(options.token);
  auto name = fbb.CreateString(options.name);
  fbb.Finish(fb::CreateHello(fbb, kFrameVersion, token, name));
  return FinishBuilder(fbb);
}

Buffer BuildHelloAck(const TransportOptions& options) {
  flatbuffers::FlatBufferBuilder fbb(64);
  auto name = fbb.CreateString(options.name);
  fbb.Finish(fb::CreateHelloAck(fbb, kFrameVersion, name));
  return FinishBuilder(fbb);
}

Buffer BuildError(const absl::Status& cause) {
  fb::ErrorCode code = fb::ErrorCode::Unknown;
  switch (cause.code()) {
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      code = fb::ErrorCode::Unauthorized;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = fb::ErrorCode::UnsupportedVersion;
      break;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kInvalidArgument:
      code = fb::ErrorCode::Malformed;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = fb::ErrorCode::TooLarge;
      break;
    case absl::StatusCode::kDeadlineExceeded:
      code = fb::ErrorCode::Timeout;
      break;
    default:
      break;
  }
  flatbuffers::FlatBufferBuilder fbb(128);
  auto msg = fbb.CreateString(std::string(cause.message()));
  fbb.Finish(fb::CreateError(fbb, code, msg));
  return FinishBuilder(fbb);
}

absl::Status CheckHello(const Buffer& received, const TransportOptions& options,
                        std::string* client_name) {
  const Buffer payload = AlignedForFlatBuffers(received);
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(payload.read_ptr()),
                                 payload.readable_bytes());
  if (payload.readable_bytes() == 0 || !verifier.VerifyBuffer<fb::Hello>(nullptr)) {
    return absl::DataLossError("malformed hello: it failed FlatBuffers verification");
  }
  auto* hello = flatbuffers::GetRoot<fb::Hello>(payload.read_ptr());
  if (hello->protocol_version() != kFrameVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("unsupported protocol version %d (this server speaks %d)",
                        hello->protocol_version(), kFrameVersion));
  }
  const std::string token = hello->token() ? hello->token()->str() : std::string();
  if (!options.token.empty() && token != options.token) {
    return absl::UnauthenticatedError(
        token.empty() ? "this server requires a token and none was given" : "wrong token");
  }
  if (client_name != nullptr) {
    *client_name = hello->client_name() ? hello->client_name()->str() : std::string();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseHelloAck(const Buffer& received, const std::string& peer) {
  const Buffer payload = AlignedForFlatBuffers(received);
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(payload.read_ptr()),
                                 payload.readable_bytes());
  if (payload.readable_bytes() == 0 || !verifier.VerifyBuffer<fb::HelloAck>(nullptr)) {
    return absl::DataLossError(absl::StrCat("handshake with ", peer, ": malformed hello-ack"));
  }
  auto* ack = flatbuffers::GetRoot<fb::HelloAck>(payload.read_ptr());
  if (ack->protocol_version() != kFrameVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("handshake with %s: server speaks protocol version %d, this build %d", peer,
                        ack->protocol_version(), kFrameVersion));
  }
  return ack->server_name() ? ack->server_name()->str() : std::string();
}

absl::Status StatusFromErrorFrame(const Buffer& received, const std::string& peer) {
  const Buffer payload = AlignedForFlatBuffers(received);
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(payload.read_ptr()),
                                 payload.readable_bytes());
  if (payload.readable_bytes() == 0 || !verifier.VerifyBuffer<fb::Error>(nullptr)) {
    return absl::DataLossError(absl::StrCat(peer, " sent a malformed error frame"));
  }
  auto* err = flatbuffers::GetRoot<fb::Error>(payload.read_ptr());
  const std::string msg =
      absl::StrCat("refused by ", peer, ": ", err->message() ? err->message()->str() : "");
  switch (err->code()) {
    case fb::ErrorCode::Unauthorized:
      return absl::UnauthenticatedError(msg);
    case fb::ErrorCode::UnsupportedVersion:
      return absl::FailedPreconditionError(msg);
    case fb::ErrorCode::Malformed:
    case fb::ErrorCode::ProtocolViolation:
      return absl::DataLossError(msg);
    case fb::ErrorCode::TooLarge:
      return absl::ResourceExhaustedError(msg);
    case fb::ErrorCode::Timeout:
      return absl::DeadlineExceededError(msg);
    default:
      return absl::UnknownError(msg);
  }
}

}  // namespace sluice::net::internal
