#include "tools/peer_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/cli.h"

namespace sluice::tools {
namespace {

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)),
                        ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerProcess>> PeerProcess::Start(const std::string& transport,
                                                                absl::Duration timeout) {
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  const std::string level = CurrentLogLevelName();
  std::vector<std::string> args = {"sluice",   "--log-level", level,
                                   "net-peer", "--transport", transport};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const pid_t pid = fork();
  if (pid < 0) {
    const int err = errno;
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", std::strerror(err)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    dup2(pipe_fds[1], STDOUT_FILENO);     // dup2 clears O_CLOEXEC on the copy
    execv("/proc/self/exe", argv.data());
    static constexpr char kMsg[] = "sluice: cannot exec /proc/self/exe for the net peer\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(pipe_fds[1]);
  std::unique_ptr<PeerProcess> p(new PeerProcess(pid, pipe_fds[0]));
  if (absl::Status s = p->ReadPort(timeout); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("net peer (", transport, ", pid ", pid, "): ", s.message()));
  }
  return p;
}

absl::Status PeerProcess::ReadPort(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string line;
  while (line.find('\n') == std::string::npos) {
    const int64_t ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{stdout_fd_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(ms));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("did not report its port within ", absl::FormatDuration(timeout)));
    }
    char buf[128];
    ssize_t n = read(stdout_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // It exited before listening; its own error went to stderr.
      absl::Status exited = Wait(absl::Seconds(5));
      return absl::UnavailableError(absl::StrCat("exited before listening (",
                                                 exited.ok() ? "status 0" : exited.message(), ")"));
    }
    line.append(buf, static_cast<size_t>(n));
    if (line.size() > 256) break;
  }
  const std::string_view prefix = "PORT ";
  const size_t nl = line.find('\n');
  unsigned port = 0;
  if (line.compare(0, prefix.size(), prefix) == 0 && nl != std::string::npos) {
    const char* begin = line.data() + prefix.size();
    const char* end = line.data() + nl;
    auto [ptr, ec] = std::from_chars(begin, end, port);
    if (ec == std::errc() && ptr == end && port > 0 && port < 65536) {
      port_ = static_cast<uint16_t>(port);
      return absl::OkStatus();
    }
  }
  return absl::DataLossError(
      absl::StrCat("printed '", line.substr(0, nl), "' instead of 'PORT <n>'"));
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
      return absl::DeadlineExceededError(absl::StrFormat(
          "net peer pid %d did not exit within %s; killed", pid_, absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  reaped_ = true;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("net peer pid %d %s", pid_, DescribeExit(status)));
}

PeerProcess::~PeerProcess() {
  if (!reaped_) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  close(stdout_fd_);
}

}  // namespace sluice::tools
