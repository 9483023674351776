// `sluice net-peer`: the server side of `sluice demo` and `sluice bench net`, started by them
// in a second process. Hidden from `sluice --help`.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/logging.h"
#include "tools/bench_net.h"
#include "tools/commands.h"

namespace sluice::tools {
namespace {

// Writes "<port>\n" to `path` through a temporary file, so a reader never sees half of it.
absl::Status WritePortFile(const std::string& path, uint16_t port) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("cannot write port file ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

int RunNetPeer(Args args) {
  std::string transport = "auto";
  std::string port_file;
  double accept_timeout = 30;
  OptionParser parser(
      "sluice net-peer",
      "Serves one client of 'sluice demo' or 'sluice bench net': a sink for its stream, an echo\n"
      "for its pings and a report of the transport's counters. Listens on 127.0.0.1 on a free\n"
      "port and prints 'PORT <n>' on stdout (or writes <n> to --port-file), then exits when the\n"
      "client closes.");
  // Not "memory": its peers live in one process.
  parser.AddChoice("--transport", {"auto", "uring", "epoll", std::string(kRawTcp)},
                   "Transport to serve with", &transport);
  parser.AddString("--port-file", "FILE", "Write the port here instead of to stdout", &port_file);
  parser.AddSeconds("--accept-timeout", "Give up when no client connects within this time", 0.1,
                    3600, &accept_timeout);
  AddLogLevelOption(parser);
  if (std::optional<int> stop = ParseOrExit(parser, args)) return *stop;

  absl::Status s = ServePeer(
      transport,
      [&](uint16_t port) {
        if (!port_file.empty()) {
          if (absl::Status w = WritePortFile(port_file, port); !w.ok()) {
            // Nobody can find this peer: do not wait for a client.
            absl::FPrintF(stderr, "sluice net-peer: %s\n", w.message());
            std::_Exit(kExitFailure);
          }
        } else {
          absl::PrintF("PORT %u\n", static_cast<unsigned>(port));
          std::fflush(stdout);
        }
      },
      absl::Seconds(accept_timeout));
  if (!s.ok()) {
    absl::FPrintF(stderr, "sluice net-peer (%s): %s\n", transport.c_str(), s.message());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace sluice::tools
