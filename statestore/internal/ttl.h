// TTL expiry at RocksDB compaction: a compaction filter that drops the entries of a state with a
// TTL whose time has passed, so that expired state leaves the disk even when nobody reads it
// again (reads already hide it: state_impl.cc). It reads expiry times as state_impl.h stores them:
// an 8-byte little-endian expiry (processing-time milliseconds) in front of each value, and a
// list as elements one after the other, each [4-byte little-endian length][expiry][bytes], the
// length counting the bytes only. Stateless apart from the clock: thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rocksdb/compaction_filter.h"
#include "statestore/state.h"

namespace sluice::statestore_internal {

enum class TtlVerdict { kKeep, kRemove, kRewrite };

// What compaction does with `stored`, the bytes of one entry of a state of `kind` that has a TTL,
// at processing time `now_ms`:
//  - value, map (each user key is its own entry), reducing and aggregating state: kRemove when
//    the expiry is at or before `now_ms` (reads treat it as gone then too), else kKeep;
//  - list state: kKeep when no element has expired, kRemove when all have, else kRewrite with
//    the live elements in `*rewritten`, in their order and with their own expiry times.
// Bytes that do not parse (shorter than an expiry; a list element cut short) are kept: compaction
// never destroys what it cannot read, and the read path reports the damage.
// REQUIRES: the state has a TTL (without one, values carry no expiry).
TtlVerdict FilterExpired(StateKind kind, std::string_view stored, int64_t now_ms,
                         std::string* rewritten);

// What a snapshot keeps of `stored`, an entry of a state with TTL `ttl_ms` (0: none): nothing
// when it has expired, the live list elements when some have, or `stored` itself (`*scratch`
// holds rewritten bytes).
std::optional<std::string_view> SnapshotValue(StateKind kind, int64_t ttl_ms,
                                              std::string_view stored, int64_t now_ms,
                                              std::string* scratch);

// The compaction filters of the column family of one state of `kind` that has a TTL: each
// compaction reads `now_ms` once when it starts and filters values with FilterExpired (the filter
// is called "sluice.ttl"). List appends (merge operands) hold elements in the list's format and
// are filtered the same way, so an expired element goes at the first compaction that meets it.
// `now_ms` runs on RocksDB's compaction threads: it must be thread-safe.
std::shared_ptr<rocksdb::CompactionFilterFactory> NewTtlCompactionFilterFactory(
    StateKind kind, std::function<int64_t()> now_ms);

}  // namespace sluice::statestore_internal
