// Socket plumbing shared by the socket transports: listening and connecting sockets, the
// connection handshake, and errno -> Status with the peer named. Functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/buffer.h"
#include "net/frame.h"
#include "net/transport.h"

namespace sluice::net::internal {

// A Status for a failed system call: "<what> <peer>: <strerror>", with a code that tells a
// reset or refusal (Unavailable) from a timeout (DeadlineExceeded) and the rest (Internal).
absl::Status ErrnoStatus(int err, const std::string& what);

// A non-blocking listening socket bound to host:port (port 0 = any free port). With
// `reuse_port`, SO_REUSEPORT: several sockets of this user may listen on one port and the kernel
// spreads new connections between them.
absl::StatusOr<int> OpenListenSocket(const std::string& host, uint16_t port,
                                     bool reuse_port = false);
uint16_t LocalPort(int fd);
std::string PeerAddress(int fd);

// Sets O_NONBLOCK and TCP_NODELAY (frames are already batched by their senders).
absl::Status PrepareStreamSocket(int fd);

// Connects with retry and backoff until options.timeout, then runs the client side of the
// handshake. Returns a non-blocking socket ready to hand to an I/O loop, and the server's name.
absl::StatusOr<int> ConnectAndHandshake(const ConnectOptions& options,
                                        const TransportOptions& transport,
                                        std::string* server_name);

// Handshake payloads (FlatBuffers; every one verified before it is read).
Buffer BuildHello(const TransportOptions& options);
Buffer BuildHelloAck(const TransportOptions& options);
Buffer BuildError(const absl::Status& cause);
// Checks a Hello against the server's options: version, then token. On success sets the
// client's name. Errors are what the server sends back (Unauthorized, FailedPrecondition, ...).
absl::Status CheckHello(const Buffer& payload, const TransportOptions& options,
                        std::string* client_name);
// Checks the server's HelloAck and returns the server's name.
absl::StatusOr<std::string> ParseHelloAck(const Buffer& payload, const std::string& peer);
// The Status an error frame carries ("refused by <peer>: <message>").
absl::Status StatusFromErrorFrame(const Buffer& payload, const std::string& peer);

// A whole frame (header + payload) in one unpooled buffer, for the blocking handshake path.
Buffer EncodeWholeFrame(FrameHeader header, const Buffer& payload);

}  // namespace sluice::net::internal
