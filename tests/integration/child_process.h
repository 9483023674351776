// A child process for multi-process tests: stdin and stdout are pipes to the test, stderr is the
// test's own (so the child's logs land in the test log). The child is killed with SIGKILL when
// the thread that started it exits (PR_SET_PDEATHSIG), and by the destructor if still running,
// so that no peer outlives its test. Thread-safe, but Start and the destructor belong to one
// thread (the one whose exit kills the child).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/sync.h"

namespace sluice::integration {

class ChildProcess {
 public:
  // Runs argv[0] (a path) with `argv`. Fails when the pipes or the fork fail; an exec failure
  // shows as exit code 127 with the reason on stderr.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(std::vector<std::string> argv);
  ~ChildProcess();

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // The first stdout line that starts with `prefix`, waiting up to `timeout` for it. The error
  // says what the child printed, and whether it has exited.
  absl::StatusOr<std::string> WaitForLine(std::string_view prefix, absl::Duration timeout);
  // Every complete stdout line so far.
  std::vector<std::string> Lines() const;
  bool HasLine(std::string_view prefix) const;
  // Waits up to `timeout` for stdout to reach EOF (the child exited or closed it).
  bool WaitForStdoutEof(absl::Duration timeout);

  // EOF on the child's stdin. Idempotent.
  void CloseStdin();
  void Signal(int signal);
  // Whether the child has not exited yet (reaps it when it has).
  bool Running();
  // Waits up to `timeout` for the child to exit; its wait status (see WIFEXITED), or
  // DeadlineExceeded.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  // "exited with 3", "killed by signal 9".
  static std::string DescribeStatus(int status);

 private:
  ChildProcess() = default;
  void ReadStdout();
  bool ReapLocked(bool block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  pid_t pid_ = -1;
  std::string program_;
  int stdout_fd_ = -1;  // read by reader_ only
  std::thread reader_;

  mutable Mutex mu_;
  int stdin_fd_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  bool stdout_eof_ ABSL_GUARDED_BY(mu_) = false;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  int status_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace sluice::integration
