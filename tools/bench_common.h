// Helpers every `sluice bench` command shares: JSON text, the host description that goes with
// every report, and writing a report without leaving half of it behind. Thread-compatible.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sluice::tools {

// `s` as a JSON string literal, quotes included.
std::string JsonString(std::string_view s);

// The first "model name" of /proc/cpuinfo, or "unknown".
std::string CpuModel();

// What a figure needs to be read: where it was measured.
struct HostInfo {
  std::string hostname;
  std::string kernel;  // uname release
  unsigned cpus = 0;   // online CPUs the process may use
  std::string cpu_model;
};
HostInfo DescribeHost();
// The fields of `host` as JSON members, without braces: `"hostname": ..., "cpus": ...`.
std::string HostJsonFields(const HostInfo& host);

// Writes through a temporary file, so a failed run never leaves half a report.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace sluice::tools
