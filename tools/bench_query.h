// `sluice bench query`: GET rate and latency (p50, p99) of keyed-state queries at 1 and 50
// concurrent clients, over the native query protocol (statestore/query_protocol.h) and over the
// RESP gateway, against a `sluice state-server` in a second process, beside a Redis server that
// holds the same keys and values, all on loopback in one run. A run blocks until it is done.
#pragma once

#include "tools/commands.h"

namespace sluice::tools {

int RunBenchQuery(Args args);

}  // namespace sluice::tools
