#include "tools/bench_common.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace sluice::tools {

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", c);
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

HostInfo DescribeHost() {
  utsname u{};
  uname(&u);
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  HostInfo info;
  info.hostname = host;
  info.kernel = u.release;
  info.cpus = std::thread::hardware_concurrency();
  info.cpu_model = CpuModel();
  return info;
}

std::string HostJsonFields(const HostInfo& host) {
  return absl::StrFormat("\"hostname\": %s, \"kernel\": %s, \"cpus\": %d, \"cpu_model\": %s",
                         JsonString(host.hostname), JsonString(host.kernel), host.cpus,
                         JsonString(host.cpu_model));
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::InternalError(absl::StrCat("cannot write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TempDir>> TempDir::Create(const std::string& name) {
  std::error_code ec;
  std::string pattern =
      (std::filesystem::temp_directory_path(ec) / absl::StrCat("sluice-bench-", name)).string() +
      "-XXXXXX";
  if (ec) return absl::UnavailableError(absl::StrCat("no temporary directory: ", ec.message()));
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot create a directory like ", pattern, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<TempDir>(new TempDir(std::move(pattern)));
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) absl::FPrintF(stderr, "sluice bench: cannot remove %s: %s\n", path_, ec.message());
}

}  // namespace sluice::tools
