// PeerProcess: the other side of a benchmark in a second, real process. It re-executes this
// binary (/proc/self/exe) with a hidden subcommand (`sluice net-peer ...`, `sluice shuffle-peer
// ...`) and talks to it in lines: what the peer prints on its stdout, what the parent writes to
// its stdin (a pipe; the peer reads end of file when the parent closes it or dies). Its stderr is
// the parent's. The child dies with its parent (PR_SET_PDEATHSIG), so no peer outlives a crashed
// benchmark. Not thread-safe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sluice::tools {

class PeerProcess {
 public:
  // Starts `sluice --log-level <this process's level> <args...>`. `name` says which peer it is
  // in errors ("shuffle peer (epoll)").
  static absl::StatusOr<std::unique_ptr<PeerProcess>> Spawn(std::string name,
                                                            const std::vector<std::string>& args);
  // Starts `sluice net-peer --transport T` and waits (up to `timeout`) until it prints
  // "PORT <n>", i.e. listens on port().
  static absl::StatusOr<std::unique_ptr<PeerProcess>> StartNetPeer(const std::string& transport,
                                                                   absl::Duration timeout);
  ~PeerProcess();  // kills the peer if it is still running

  PeerProcess(const PeerProcess&) = delete;
  PeerProcess& operator=(const PeerProcess&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }  // StartNetPeer's; 0 otherwise

  // The next line the peer printed, without its newline. DeadlineExceeded when no whole line
  // came within `timeout` (a part that came is kept for the next call); Unavailable when the
  // peer closed its stdout (it exited).
  absl::StatusOr<std::string> ReadLine(absl::Duration timeout);
  // The peer's first line, "<tag> <value>" (how every peer reports where it listens): the value.
  // Unavailable with its exit status when the peer exited before printing it, DeadlineExceeded
  // after `timeout`, DataLoss quoting another line; errors start with the peer's name.
  absl::StatusOr<std::string> ReadTagged(std::string_view tag, absl::Duration timeout);
  // Writes `line` and a newline to the peer's stdin. Unavailable when the peer has gone (this
  // process gets no SIGPIPE for it).
  absl::Status WriteLine(std::string_view line);
  // The peer reads end of file on its stdin. Idempotent.
  void CloseStdin();

  // Waits for the peer to exit, killing it after `timeout`. OK when it exited with status 0.
  absl::Status Wait(absl::Duration timeout);

 private:
  PeerProcess(std::string name, pid_t pid, int stdin_fd, int stdout_fd)
      : name_(std::move(name)), pid_(pid), stdin_fd_(stdin_fd), stdout_fd_(stdout_fd) {}

  const std::string name_;
  const pid_t pid_;
  int stdin_fd_;
  const int stdout_fd_;
  std::string pending_;  // what was read of stdout after the last whole line
  uint16_t port_ = 0;
  bool reaped_ = false;
};

// How a child ended, from its wait status: "exited with status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

// The peer's side of the line protocol: prints `line` and a newline on stdout, flushed at once,
// since the parent is waiting for it.
void PrintToParent(std::string_view line);

// The peer's side: returns when the parent closes the peer's stdin (it has what it needs, or
// it went away).
void AwaitParentClose();

// The port of a peer's "host:port" address; DataLoss quoting the address when it has none.
absl::StatusOr<uint16_t> PortOfAddress(const std::string& address);

}  // namespace sluice::tools
