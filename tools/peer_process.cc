#include "tools/peer_process.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status.h"
#include "tools/cli.h"

namespace sluice::tools {
std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)),
                        ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

namespace {

void ClosePipe(int fds[2]) {
  close(fds[0]);
  close(fds[1]);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::Spawn(
    std::string name, const std::vector<std::string>& args) {
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<std::string> argv_strings = {"sluice", "--log-level", CurrentLogLevelName()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();

  // Both ends close on exec in this process, so that a later peer does not inherit them.
  int to_child[2];
  int from_child[2];
  if (pipe2(to_child, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  if (pipe2(from_child, O_CLOEXEC) != 0) {
    const int err = errno;
    ClosePipe(to_child);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(err)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    ClosePipe(to_child);
    ClosePipe(from_child);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    dup2(to_child[0], STDIN_FILENO);      // dup2 clears O_CLOEXEC on the copies
    dup2(from_child[1], STDOUT_FILENO);
    execv("/proc/self/exe", argv.data());
    static constexpr char kMsg[] = "sluice: cannot exec /proc/self/exe for a peer process\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  return std::unique_ptr<PeerProcess>(
      new PeerProcess(std::move(name), pid, to_child[1], from_child[0]));
}

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::StartNetPeer(const std::string& transport,
                                                                       absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<PeerProcess>> spawned =
      Spawn(absl::StrCat("net peer (", transport, ")"), {"net-peer", "--transport", transport});
  if (!spawned.ok()) return spawned.status();
  std::unique_ptr<PeerProcess> p = *std::move(spawned);
  SLUICE_ASSIGN_OR_RETURN(const std::string text, p->ReadTagged("PORT", timeout));
  unsigned port = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, port);
  if (ec != std::errc() || ptr != end || port == 0 || port > 65535) {
    return absl::DataLossError(absl::StrCat(p->name(), ", pid ", p->pid(), ": printed 'PORT ",
                                            text.substr(0, 200), "', not a port"));
  }
  p->port_ = static_cast<uint16_t>(port);
  return p;
}

absl::StatusOr<std::string> PeerProcess::ReadTagged(std::string_view tag, absl::Duration timeout) {
  const std::string who = absl::StrCat(name_, ", pid ", pid_);
  absl::StatusOr<std::string> line = ReadLine(timeout);
  if (absl::IsDeadlineExceeded(line.status())) {
    return absl::DeadlineExceededError(absl::StrCat(
        who, ": printed no '", std::string(tag), "' line within ", absl::FormatDuration(timeout)));
  }
  if (!line.ok()) {
    // It exited first; its own error went to stderr.
    const absl::Status exited = Wait(absl::Seconds(5));
    return absl::UnavailableError(absl::StrCat(who, ": exited before it printed '",
                                               std::string(tag), "' (",
                                               exited.ok() ? "status 0" : exited.message(), ")"));
  }
  const std::string prefix = absl::StrCat(std::string(tag), " ");
  if (line->size() <= prefix.size() || line->compare(0, prefix.size(), prefix) != 0) {
    return absl::DataLossError(absl::StrCat(who, ": printed '", line->substr(0, 200),
                                            "' instead of '", std::string(tag), " <...>'"));
  }
  return line->substr(prefix.size());
}

absl::StatusOr<std::string> PeerProcess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t nl;
  while ((nl = pending_.find('\n')) == std::string::npos) {
    if (pending_.size() > 4096) {
      return absl::DataLossError(absl::StrCat(name_, " printed a line longer than 4 KiB"));
    }
    const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{stdout_fd_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(ms, 1 << 30)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (rc == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat(name_, " printed no line within ", absl::FormatDuration(timeout)));
    }
    char buf[512];
    ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("read: ", std::strerror(errno)));
    if (n == 0) return absl::UnavailableError(absl::StrCat(name_, " closed its output"));
    pending_.append(buf, static_cast<size_t>(n));
  }
  std::string line = pending_.substr(0, nl);
  pending_.erase(0, nl + 1);
  return line;
}

absl::Status PeerProcess::WriteLine(std::string_view line) {
  if (stdin_fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat(name_, ": its input is closed"));
  }
  std::string text(line);
  text.push_back('\n');
  // Writing to a peer that has exited raises SIGPIPE, which would kill this process. Blocked in
  // this thread, the signal stays pending instead, and is taken back below.
  sigset_t pipe_only;
  sigset_t old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  absl::Status status;
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(stdin_fd_, text.data() + done, text.size() - done);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    const int err = errno;
    if (err == EPIPE) {
      const timespec no_wait{};
      sigtimedwait(&pipe_only, nullptr, &no_wait);
      status = absl::UnavailableError(absl::StrCat(name_, " has exited"));
    } else {
      status = absl::InternalError(absl::StrCat("write to ", name_, ": ", std::strerror(err)));
    }
    break;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return status;
}

void PeerProcess::CloseStdin() {
  if (stdin_fd_ >= 0) close(stdin_fd_);
  stdin_fd_ = -1;
}

absl::Status PeerProcess::Wait(absl::Duration timeout) {
  if (reaped_) return absl::OkStatus();
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (r < 0 && errno != EINTR) {
      reaped_ = true;
      return absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      reaped_ = true;
      return absl::DeadlineExceededError(
          absl::StrFormat("%s (pid %d) did not exit within %s; killed", name_, pid_,
                          absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  reaped_ = true;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrFormat("%s (pid %d) %s", name_, pid_, DescribeWaitStatus(status)));
}

PeerProcess::~PeerProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  CloseStdin();
  close(stdout_fd_);
}

void PrintToParent(std::string_view line) {
  absl::PrintF("%s\n", std::string(line));
  std::fflush(stdout);
}

void AwaitParentClose() {
  char line[64];
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
  }
}

absl::StatusOr<uint16_t> PortOfAddress(const std::string& address) {
  uint32_t port = 0;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port == 0 || port > 65535) {
    return absl::DataLossError(absl::StrCat("the peer's address '", address, "' has no port"));
  }
  return static_cast<uint16_t>(port);
}

}  // namespace sluice::tools
