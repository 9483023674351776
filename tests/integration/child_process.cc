#include "tests/integration/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace sluice::integration {
namespace {

absl::Status ErrnoError(std::string_view what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(std::vector<std::string> argv) {
  if (argv.empty()) return absl::InvalidArgumentError("ChildProcess::Start needs a program");
  int in[2];
  int out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return ErrnoError("pipe2");
  if (pipe2(out, O_CLOEXEC) != 0) {
    const absl::Status error = ErrnoError("pipe2");
    close(in[0]);
    close(in[1]);
    return error;
  }
  // Built before the fork: the child may only make async-signal-safe calls until it execs,
  // because the test process has other threads (whose locks a forked copy could find held).
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  static constexpr char kExecFailed[] = "ChildProcess: exec failed\n";
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) {
    const absl::Status error = ErrnoError("fork");
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return error;
  }
  if (pid == 0) {
    // Dies with the test. The parent may have gone before the prctl: then exit at once.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(126);
    if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0) _exit(126);
    // Nothing else of the test's (its sockets, other children's pipes) stays open in the child:
    // a pipe end held here would keep another child's stdout from reaching EOF.
    close_range(3, ~0u, 0);
    execv(args[0], args.data());
    (void)!write(STDERR_FILENO, kExecFailed, sizeof(kExecFailed) - 1);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->pid_ = pid;
  child->program_ = argv[0];
  child->stdout_fd_ = out[0];
  {
    MutexLock lock(&child->mu_);
    child->stdin_fd_ = in[1];
  }
  child->reader_ = std::thread([c = child.get()] { c->ReadStdout(); });
  return child;
}

ChildProcess::~ChildProcess() {
  {
    MutexLock lock(&mu_);
    if (!ReapLocked(false)) {
      kill(pid_, SIGKILL);
      ReapLocked(true);
    }
    if (stdin_fd_ >= 0) close(stdin_fd_);
    stdin_fd_ = -1;
  }
  // The child is gone, so its end of the pipe is closed and the reader sees EOF.
  if (reader_.joinable()) reader_.join();
  close(stdout_fd_);
}

void ChildProcess::ReadStdout() {
  std::string partial;
  char buf[4096];
  while (true) {
    const ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buf, static_cast<size_t>(n));
    std::vector<std::string> complete;
    for (size_t nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
      complete.push_back(partial.substr(0, nl));
      partial.erase(0, nl + 1);
    }
    if (!complete.empty()) {
      MutexLock lock(&mu_);
      for (std::string& line : complete) lines_.push_back(std::move(line));
    }
  }
  MutexLock lock(&mu_);
  if (!partial.empty()) lines_.push_back(std::move(partial));
  stdout_eof_ = true;
}

absl::StatusOr<std::string> ChildProcess::WaitForLine(std::string_view prefix,
                                                      absl::Duration timeout) {
  MutexLock lock(&mu_);
  std::optional<std::string> found;
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& line : lines_) {
      if (line.starts_with(prefix)) {
        found = line;
        return true;
      }
    }
    return stdout_eof_;
  };
  mu_.AwaitWithTimeout(ready, timeout);
  if (found.has_value()) return *std::move(found);
  return absl::DeadlineExceededError(absl::StrFormat(
      "%s (pid %d) printed no line starting with '%s' %s; it printed [%s] and %s (its stderr "
      "is in the test's)",
      program_, pid_, prefix,
      stdout_eof_ ? "before closing stdout" : "within " + absl::FormatDuration(timeout),
      absl::StrJoin(lines_, " | "), DescribeLocked()));
}

std::vector<std::string> ChildProcess::Lines() const {
  MutexLock lock(&mu_);
  return lines_;
}

bool ChildProcess::HasLine(std::string_view prefix) const {
  MutexLock lock(&mu_);
  for (const std::string& line : lines_) {
    if (line.starts_with(prefix)) return true;
  }
  return false;
}

bool ChildProcess::WaitForStdoutEof(absl::Duration timeout) {
  MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout([this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stdout_eof_; },
                              timeout);
}

void ChildProcess::CloseStdin() {
  MutexLock lock(&mu_);
  if (stdin_fd_ >= 0) close(stdin_fd_);
  stdin_fd_ = -1;
}

void ChildProcess::Signal(int signal) {
  MutexLock lock(&mu_);
  // Once reaped, the pid may belong to someone else.
  if (!ReapLocked(false)) kill(pid_, signal);
}

bool ChildProcess::Running() {
  MutexLock lock(&mu_);
  return !ReapLocked(false);
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      MutexLock lock(&mu_);
      if (ReapLocked(false)) return status_;
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "%s (pid %d) still runs after %s", program_, pid_, absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
}

std::string ChildProcess::DescribeStatus(int status) {
  if (WIFEXITED(status)) return absl::StrFormat("exited with %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrFormat("killed by signal %d (%s)", WTERMSIG(status),
                           strsignal(WTERMSIG(status)));
  }
  return absl::StrFormat("wait status %#x", status);
}

bool ChildProcess::ReapLocked(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  reaped_ = true;
  status_ = status;
  return true;
}

std::string ChildProcess::DescribeLocked() {
  return ReapLocked(false) ? DescribeStatus(status_) : std::string("is still running");
}

}  // namespace sluice::integration
