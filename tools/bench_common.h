// Helpers every `sluice bench` command shares: JSON text, the host description that goes with
// every report, and writing a report without leaving half of it behind. Thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

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

// A fresh directory under the temporary directory ("sluice-bench-<name>-XXXXXX"), removed with
// everything in it when this goes.
class TempDir {
 public:
  static absl::StatusOr<std::unique_ptr<TempDir>> Create(const std::string& name);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Key indices uniform in [0, count): splitmix64 from `seed`, mapped to the range by a multiply
// (Lemire), which costs a few nanoseconds where a division would cost tens.
class KeyPicker {
 public:
  explicit KeyPicker(uint64_t count, uint64_t seed = 0x5eed) : count_(count), state_(seed) {}
  uint64_t Next() {
    __extension__ using Wide = unsigned __int128;
    uint64_t z = (state_ += 0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
    z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
    z ^= z >> 31;
    return static_cast<uint64_t>((static_cast<Wide>(z) * count_) >> 64);
  }

 private:
  uint64_t count_;
  uint64_t state_;
};

// Writes through a temporary file, so a failed run never leaves half a report.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace sluice::tools
