// `sluice bench state`: value-state read-modify-write throughput of the keyed state backends
// (statestore/keyed_state_backend.h), `rocksdb` and `heap`, against raw RocksDB doing the same
// reads and writes with the same options (the baseline `raw-rocksdb`). One thread; a run blocks
// until it is done.
#pragma once

#include "tools/commands.h"

namespace sluice::tools {

int RunBenchState(Args args);

}  // namespace sluice::tools
