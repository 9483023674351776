#include "net/transport.h"

#include <liburing.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/logging.h"
#include "net/internal/transports.h"

namespace sluice::net {

absl::Status ProbeIoUring() {
  io_uring ring;
  int rc = io_uring_queue_init(4, &ring, 0);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat(
        "io_uring_setup refused: ", std::strerror(-rc),
        -rc == EPERM ? " (kernel.io_uring_disabled, or a seccomp profile forbids it)" : ""));
  }
  io_uring_queue_exit(&ring);
  return absl::OkStatus();
}

std::vector<std::string> Transport::Names() { return {"auto", "uring", "epoll", "memory"}; }

absl::StatusOr<std::unique_ptr<Transport>> Transport::Create(std::string_view name,
                                                             const TransportOptions& options) {
  if (options.pool == nullptr) {
    return absl::InvalidArgumentError("transport options need a buffer pool");
  }
  if (name == "epoll") return internal::CreateEpollTransport(options);
  if (name == "memory") return internal::CreateMemoryTransport(options);
  if (name == "uring") {
    if (absl::Status s = ProbeIoUring(); !s.ok()) return s;
    return internal::CreateUringTransport(options);
  }
  if (name == "auto") {
    absl::Status s = ProbeIoUring();
    if (s.ok()) return internal::CreateUringTransport(options);
    SLUICE_LOG_WARN("transport auto: {}; falling back to epoll", s.message());
    return internal::CreateEpollTransport(options);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown transport '", std::string(name),
                                                 "' (known: ", absl::StrJoin(Names(), ", "), ")"));
}

}  // namespace sluice::net
