// The `sluice` command line: `sluice [--log-level LEVEL] <command> [options]`.
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "tools/bench_peers.h"
#include "tools/cli.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

struct Command {
  std::string_view name;
  std::string_view summary;  // empty: hidden from --help
  int (*run)(Args args);
};

constexpr Command kCommands[] = {
    {"demo", "Move data over each transport (two processes) and through the shuffle; print speeds",
     RunDemo},
    {"bench", "Run a benchmark ('sluice bench net', 'sluice bench shuffle')", RunBench},
    {"query", "Read a running job's keyed state ('sluice query get STATE KEY --addr HOST:PORT')",
     RunQuery},
    {"state-server", "Serve a generated, changing keyed state to queries", RunStateServer},
    {"version", "Print the version and build", RunVersion},
    {"net-peer", "", RunNetPeer},
    {"shuffle-peer", "", RunShufflePeer},
    {"zmq-peer", "", RunZmqPeer},
};

const Command* FindCommand(std::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string GlobalHelp() {
  std::string out =
      "Usage: sluice [--log-level LEVEL] <command> [options]\n\n"
      "Sluice is a runtime for stateful stream processing. This tool runs its parts.\n\n"
      "Commands:\n";
  for (const Command& c : kCommands) {
    if (c.summary.empty()) continue;
    absl::StrAppend(&out, "  ", std::string(c.name), std::string(14 - c.name.size(), ' '),
                    std::string(c.summary), "\n");
  }
  out +=
      "  help          Show this help, or a command's ('sluice help demo')\n\n"
      "Global options:\n"
      "  --log-level LEVEL  trace, debug, info, warn, error, critical or off (default: info, or\n"
      "                     SLUICE_LOG_LEVEL from the environment); logs go to stderr\n"
      "  --help             Show this help and exit\n\n"
      "Run 'sluice <command> --help' for the options of a command.\n";
  return out;
}

int Main(int argc, char** argv) {
  InitLogging();
  const std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  for (; i < args.size() && args[i].size() > 1 && args[i][0] == '-'; ++i) {
    std::string_view arg = args[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(GlobalHelp().c_str(), stdout);
      return kExitOk;
    }
    if (arg == "--version") return RunVersion({});
    if (arg == "--log-level" || arg.starts_with("--log-level=")) {
      std::string_view value;
      if (arg == "--log-level") {
        if (i + 1 >= args.size()) {
          return ReportUsageError("sluice",
                                  absl::InvalidArgumentError("option --log-level needs a value"));
        }
        value = args[++i];
      } else {
        value = arg.substr(arg.find('=') + 1);
      }
      if (absl::Status s = SetLogLevel(value); !s.ok()) {
        return ReportUsageError("sluice", absl::InvalidArgumentError(absl::StrCat(
                                              "bad value for --log-level: ", s.message())));
      }
      continue;
    }
    return ReportUsageError("sluice", absl::InvalidArgumentError(
                                          absl::StrCat("unknown option '", std::string(arg), "'")));
  }
  if (i == args.size()) {
    std::fputs(GlobalHelp().c_str(), stderr);
    return kExitUsage;
  }
  const std::string& name = args[i];
  const Args rest = Args(args).subspan(i + 1);
  if (name == "help") {
    if (rest.empty()) {
      std::fputs(GlobalHelp().c_str(), stdout);
      return kExitOk;
    }
    const Command* c = FindCommand(rest[0]);
    if (c == nullptr) {
      return ReportUsageError(
          "sluice", absl::InvalidArgumentError(absl::StrCat("unknown command '", rest[0], "'")));
    }
    const std::string help[] = {"--help"};
    return c->run(Args(help, 1));
  }
  const Command* c = FindCommand(name);
  if (c == nullptr) {
    return ReportUsageError(
        "sluice", absl::InvalidArgumentError(absl::StrCat("unknown command '", name, "'")));
  }
  return c->run(rest);
}

}  // namespace

int ReportUsageError(const std::string& command, const absl::Status& error) {
  absl::FPrintF(stderr, "sluice: %s\nRun '%s --help' for usage.\n", error.message(), command);
  return kExitUsage;
}

std::optional<int> ParseOrExit(OptionParser& parser, Args args) {
  absl::StatusOr<OptionParser::Outcome> outcome = parser.Parse(args);
  if (!outcome.ok()) return ReportUsageError(parser.command(), outcome.status());
  if (*outcome == OptionParser::Outcome::kHelpShown) return kExitOk;
  return std::nullopt;
}

int RunVersion(Args args) {
  OptionParser parser("sluice version", "Prints the version of sluice and how it was built.");
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;
  absl::PrintF("sluice %s\n", SLUICE_VERSION);
  absl::PrintF("built with gcc %s, %s build\n", __VERSION__, SLUICE_BUILDTYPE);
  return kExitOk;
}

}  // namespace sluice::tools

int main(int argc, char** argv) { return sluice::tools::Main(argc, argv); }
