// Factories of the built-in transports, for Transport::Create.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "net/transport.h"

namespace sluice::net::internal {

absl::StatusOr<std::unique_ptr<Transport>> CreateEpollTransport(const TransportOptions& options);
absl::StatusOr<std::unique_ptr<Transport>> CreateUringTransport(const TransportOptions& options);
absl::StatusOr<std::unique_ptr<Transport>> CreateMemoryTransport(const TransportOptions& options);

}  // namespace sluice::net::internal
