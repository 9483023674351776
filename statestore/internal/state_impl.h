// The five kinds of state, written once over a StateTable (state_table.h) and the backend's
// current key. Encodings, shared by every backend and by snapshots:
//  - with a TTL, a value starts with its expiry time: 8 bytes, little-endian, milliseconds;
//  - a list is its elements one after the other, each [4-byte little-endian length][expiry if
//    TTL][bytes], so that an add is an append.
// Not thread-safe: the backend's task thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "statestore/internal/state_table.h"
#include "statestore/state.h"

namespace sluice::statestore_internal {

// What every handle of one backend reads: the current key, its key group and namespace, and the
// clock for TTL.
struct KeyContext {
  std::string key;
  uint32_t key_group = 0;
  std::string ns;
  bool key_set = false;
  std::function<int64_t()> now_ms;
};

std::unique_ptr<ValueState> NewValueState(const StateDescriptor& d, StateTable* table,
                                          const KeyContext* context);
std::unique_ptr<ListState> NewListState(const StateDescriptor& d, StateTable* table,
                                        const KeyContext* context);
std::unique_ptr<MapState> NewMapState(const StateDescriptor& d, StateTable* table,
                                      const KeyContext* context);
std::unique_ptr<ReducingState> NewReducingState(const StateDescriptor& d, StateTable* table,
                                                const KeyContext* context);
std::unique_ptr<AggregatingState> NewAggregatingState(const StateDescriptor& d, StateTable* table,
                                                      const KeyContext* context);

}  // namespace sluice::statestore_internal
