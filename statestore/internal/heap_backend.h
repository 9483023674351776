// The `heap` backend: every state's entries in hash maps in memory, one map per key group so
// that a key group's entries can be found (and, later, snapshotted or moved) without a scan.
#pragma once

#include <memory>

#include "statestore/keyed_state_backend.h"

namespace sluice::statestore_internal {

// REQUIRES: `options` checked by KeyedStateBackend::Create.
std::unique_ptr<KeyedStateBackend> NewHeapBackend(KeyedStateBackendOptions options);

}  // namespace sluice::statestore_internal
