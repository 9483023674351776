// Command-line parsing for the `sluice` tool: the options of one (sub)command, their help text,
// and errors that name the offending argument. Hand-written because the tool has subcommands,
// each with its own options, which absl flags does not model. Not thread-safe; used at start.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sluice::tools {

// Exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and something failed
inline constexpr int kExitUsage = 2;    // bad command line: nothing was run

class OptionParser {
 public:
  // `command` is how the user typed it ("sluice demo"); `summary` is the help's first paragraph.
  OptionParser(std::string command, std::string summary);

  // An option that takes a value: `set` parses and stores it, returning InvalidArgument (its
  // message says what was expected) for a bad value. `default_text` appears in --help.
  using Setter = std::function<absl::Status(std::string_view value)>;
  void AddOption(std::string name, std::string value_name, std::string help,
                 std::string default_text, Setter set);
  // An option without a value.
  void AddFlag(std::string name, std::string help, bool* out);

  void AddString(std::string name, std::string value_name, std::string help, std::string* out);
  // One of `choices`.
  void AddChoice(std::string name, std::vector<std::string> choices, std::string help,
                 std::string* out);
  // A whole number in [min, max].
  void AddCount(std::string name, std::string value_name, std::string help, uint64_t min,
                uint64_t max, uint64_t* out);
  // A byte count with an optional binary suffix (32K, 32KiB, 256M, 1GiB), in [min, max].
  void AddBytes(std::string name, std::string help, uint64_t min, uint64_t max, uint64_t* out);
  // Seconds as a decimal number, optionally followed by "s", in [min, max].
  void AddSeconds(std::string name, std::string help, double min, double max, double* out);

  // Accepts positional arguments into `out` (otherwise any is an error).
  void AllowPositional(std::string usage_name, std::vector<std::string>* out);

  enum class Outcome { kRun, kHelpShown };
  // Parses `args` (everything after the command name). --help / -h prints the help to stdout.
  // Errors (unknown option, missing or bad value, stray argument) are InvalidArgument and name
  // the argument; the caller prints them and exits with kExitUsage.
  absl::StatusOr<Outcome> Parse(absl::Span<const std::string> args);

  std::string Help() const;
  const std::string& command() const { return command_; }

 private:
  struct Option {
    std::string name;
    std::string value_name;  // empty: a flag
    std::string help;
    std::string default_text;
    Setter set;
    bool* flag = nullptr;
  };
  const Option* Find(std::string_view name) const;

  std::string command_;
  std::string summary_;
  std::vector<Option> options_;
  std::string positional_name_;
  std::vector<std::string>* positional_ = nullptr;
};

// Value parsers shared by the options above; errors say what was expected.
absl::StatusOr<uint64_t> ParseCount(std::string_view text);
absl::StatusOr<uint64_t> ParseBytes(std::string_view text);
absl::StatusOr<double> ParseSeconds(std::string_view text);

// The value given to option `name` in `args` ("--name value" or "--name=value"), the last one
// when repeated; nothing when absent. For commands whose options depend on one of them (a mode).
std::optional<std::string> FindOptionValue(absl::Span<const std::string> args,
                                           std::string_view name);

// "256 MiB", "32 KiB", "100 B".
std::string FormatBytes(uint64_t bytes);

// The current log level under the name SetLogLevel accepts, for passing to child processes.
std::string CurrentLogLevelName();

// Adds --log-level, which every command accepts (it calls SetLogLevel).
void AddLogLevelOption(OptionParser& parser);

// A text table with a header row: the first column left-aligned, the others right-aligned.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> cells);
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace sluice::tools
