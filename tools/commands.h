// The subcommands of the `sluice` command line. Each takes the arguments after its name and
// returns the process exit code (kExitOk, kExitFailure, or kExitUsage for a bad command line).
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "tools/cli.h"

namespace sluice::tools {

using Args = absl::Span<const std::string>;

int RunDemo(Args args);
int RunBench(Args args);
int RunVersion(Args args);
// Hidden: the server side of `demo` and `bench net`, started by them in a second process.
int RunNetPeer(Args args);
// Hidden: the sender of a two-process `bench shuffle` (and of `demo`), started by it.
int RunShufflePeer(Args args);
// A keyed state filled, updated, checkpointed and served to queries (statestore/).
int RunStateServer(Args args);
// Queries of keyed state: get, mget, scan, states.
int RunQuery(Args args);

// Prints "sluice: <message>" and where to find help; returns kExitUsage.
int ReportUsageError(const std::string& command, const absl::Status& error);
// Parses `args` for `parser`. Returns the exit code when the command should stop here (help
// shown: kExitOk; bad command line: kExitUsage, reported), nothing when it should run.
std::optional<int> ParseOrExit(OptionParser& parser, Args args);

}  // namespace sluice::tools
