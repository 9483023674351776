// Other programs the benchmarks run as child processes (sockperf, iperf3, redis-benchmark, a
// Redis server), and finding them on PATH. Header-only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "tools/peer_process.h"
#include "tools/raw_socket.h"

namespace sluice::tools {

inline  // The full path of `program` on $PATH, if it is there.
    std::optional<std::string>
    FindOnPath(absl::string_view program) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", program);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

// CPU time (user + system, every thread) that process `pid` has used so far, from
// /proc/PID/stat, in clock ticks (10 ms on Linux); nullopt when it cannot be read.
inline std::optional<absl::Duration> ProcessCpuTime(pid_t pid) {
  const int fd = open(absl::StrCat("/proc/", pid, "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // "pid (comm) state ..." where comm may hold spaces: fields count from after the last ')'.
  const char* rest = std::strrchr(buf, ')');
  if (rest == nullptr) return std::nullopt;
  std::vector<absl::string_view> fields = absl::StrSplit(absl::string_view(rest + 2), ' ');
  uint64_t user = 0;
  uint64_t system = 0;
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state (field 3).
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &user) ||
      !absl::SimpleAtoi(fields[12], &system)) {
    return std::nullopt;
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  if (ticks <= 0) return std::nullopt;
  return absl::Seconds(static_cast<double>(user + system) / static_cast<double>(ticks));
}

// A port on loopback that was free a moment ago. Another process could take it before the tool's
// server binds it; the server then fails to start, which is reported.
inline absl::StatusOr<uint16_t> FreeLoopbackPort() {
  SLUICE_ASSIGN_OR_RETURN(RawListener listener, RawListener::Listen());
  return listener.port();  // closed on return: nothing has connected, so no TIME_WAIT
}

// A program (sockperf, iperf3, redis-benchmark, a Redis server) run as a child process: stdin from
// /dev/null; stdout and stderr into an anonymous in-memory file, read back whole with Output(), so
// that a chatty tool never blocks on a full pipe nobody reads. The child dies with this process.
// Not thread-safe.
class ToolProcess {
 public:
  // Runs `path` with `args`. `name` says which it is in errors ("sockperf server").
  static absl::StatusOr<std::unique_ptr<ToolProcess>> Start(std::string name,
                                                            const std::string& path,
                                                            const std::vector<std::string>& args) {
    return Start(std::move(name), path, path, args);
  }
  // The same, run as `argv0` (a multi-call binary picks what it is by its name).
  static absl::StatusOr<std::unique_ptr<ToolProcess>> Start(std::string name,
                                                            const std::string& path,
                                                            const std::string& argv0,
                                                            const std::vector<std::string>& args) {
    // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
    std::vector<std::string> argv_strings = {argv0};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();

    const int output = memfd_create("sluice-tool-output", MFD_CLOEXEC);
    if (output < 0) return absl::InternalError(absl::StrCat("memfd_create: ", strerror(errno)));
    const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
      const int err = errno;
      close(output);
      return absl::InternalError(absl::StrCat("open /dev/null: ", strerror(err)));
    }
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
      dup2(null, STDIN_FILENO);             // dup2 clears O_CLOEXEC on the copies
      dup2(output, STDOUT_FILENO);
      dup2(output, STDERR_FILENO);
      execv(path.c_str(), argv.data());
      static constexpr char kMsg[] = "sluice: cannot exec the tool\n";
      ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
      (void)ignored;
      _exit(127);
    }
    const int fork_errno = errno;
    close(null);
    if (pid < 0) {
      close(output);
      return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(fork_errno)));
    }
    return std::unique_ptr<ToolProcess>(new ToolProcess(std::move(name), pid, output));
  }

  ~ToolProcess() {
    Kill();
    close(output_);
  }
  ToolProcess(const ToolProcess&) = delete;
  ToolProcess& operator=(const ToolProcess&) = delete;

  const std::string& name() const { return name_; }

  // Whether it has exited (and been reaped).
  bool Exited() {
    if (!reaped_ && wait4(pid_, &status_, WNOHANG, &usage_) == pid_) reaped_ = true;
    return reaped_;
  }

  // Waits up to `timeout` for it to exit; DeadlineExceeded (and still running) otherwise.
  absl::Status Wait(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!Exited()) {
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(name_, " did not finish within ", absl::FormatDuration(timeout)));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return absl::OkStatus();
  }

  // Ends it, if it still runs (servers are stopped this way: they have nothing left to say).
  void Kill() {
    if (reaped_) return;
    kill(pid_, SIGKILL);
    while (wait4(pid_, &status_, 0, &usage_) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }

  pid_t pid() const { return pid_; }
  // CPU time (user + system) it used, once it has exited; nullopt before.
  std::optional<absl::Duration> cpu_time() const {
    if (!reaped_) return std::nullopt;
    return absl::DurationFromTimeval(usage_.ru_utime) + absl::DurationFromTimeval(usage_.ru_stime);
  }

  // "exited with status 0", or "running".
  std::string DescribeExit() { return Exited() ? DescribeWaitStatus(status_) : "running"; }
  bool ExitedWithZero() { return Exited() && WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

  // Everything it printed so far, stdout and stderr interleaved (its first 4 MiB).
  std::string Output() const {
    struct stat st;
    if (fstat(output_, &st) != 0) return "";
    std::string out(std::min<size_t>(static_cast<size_t>(st.st_size), size_t{4} << 20), '\0');
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n =
          pread(output_, out.data() + done, out.size() - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    out.resize(done);
    return out;
  }

 private:
  ToolProcess(std::string name, pid_t pid, int output)
      : name_(std::move(name)), pid_(pid), output_(output) {}

  const std::string name_;
  const pid_t pid_;
  const int output_;
  int status_ = 0;
  rusage usage_{};
  bool reaped_ = false;
};

}  // namespace sluice::tools
