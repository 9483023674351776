// PeerProcess: the server side of a net benchmark in a second, real process. It re-executes this
// binary (/proc/self/exe) as `sluice net-peer --transport T`, which prints "PORT <n>" on its
// stdout once it listens, serves one connection and exits. The child dies with its parent
// (PR_SET_PDEATHSIG), so no peer outlives a crashed benchmark. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::tools {

class PeerProcess {
 public:
  // Starts the peer and waits (up to `timeout`) until it listens.
  static absl::StatusOr<std::unique_ptr<PeerProcess>> Start(const std::string& transport,
                                                            absl::Duration timeout);
  ~PeerProcess();  // kills the peer if it is still running

  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Waits for the peer to exit, killing it after `timeout`. OK when it exited with status 0.
  absl::Status Wait(absl::Duration timeout);

 private:
  PeerProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  absl::Status ReadPort(absl::Duration timeout);

  pid_t pid_;
  int stdout_fd_;
  uint16_t port_ = 0;
  bool reaped_ = false;
};

}  // namespace sluice::tools
