#include "statestore/checkpoint_storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/checksum.h"
#include "base/status.h"

namespace sluice {
namespace {

absl::Status Errno(int err, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(message);
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(message);
  return absl::UnavailableError(message);
}

// Writes all of `bytes` to `fd`.
absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(errno, absl::StrCat("write ", path));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// The whole content of `path`; NotFound when it is not there.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("open ", path));
  std::string out;
  char chunk[1 << 16];
  while (true) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return Errno(err, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    out.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

// Copies what remains of `in` to `out`, counting its size and CRC32C.
absl::Status CopyFile(int in, const std::string& in_path, int out, const std::string& out_path,
                      uint64_t* size, uint32_t* crc) {
  std::string chunk(1 << 20, '\0');
  while (true) {
    const ssize_t n = read(in, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(errno, absl::StrCat("read ", in_path));
    if (n == 0) return absl::OkStatus();
    const std::string_view part(chunk.data(), static_cast<size_t>(n));
    *size += part.size();
    *crc = Crc32c(*crc, part.data(), part.size());
    SLUICE_RETURN_IF_ERROR(WriteAll(out, part, out_path));
  }
}

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, absl::StrCat("open directory ", dir.string()));
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : Errno(err, absl::StrCat("fsync ", dir.string()));
}

class FilesystemCheckpointStorage final : public CheckpointStorage {
 public:
  explicit FilesystemCheckpointStorage(std::filesystem::path root) : root_(std::move(root)) {}

  absl::StatusOr<StateHandle> Write(const std::string& name, std::string_view bytes) override {
    return Store(name, [bytes](int fd, const std::string& tmp, uint64_t* size, uint32_t* crc) {
      *size = bytes.size();
      *crc = Crc32c(0, bytes.data(), bytes.size());
      return WriteAll(fd, bytes, tmp);
    });
  }

  absl::StatusOr<StateHandle> Upload(const std::string& name, const std::string& path) override {
    const int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return Errno(errno, absl::StrCat("open ", path));
    absl::StatusOr<StateHandle> handle =
        Store(name, [in, &path](int fd, const std::string& tmp, uint64_t* size, uint32_t* crc) {
          return CopyFile(in, path, fd, tmp, size, crc);
        });
    close(in);
    return handle;
  }

  absl::StatusOr<std::string> Read(const StateHandle& handle) override {
    SLUICE_ASSIGN_OR_RETURN(const std::filesystem::path path, PathOf(handle.name));
    SLUICE_ASSIGN_OR_RETURN(std::string bytes, ReadWhole(handle.name));
    if (bytes.size() != handle.size) {
      return absl::DataLossError(absl::StrFormat("checkpoint file %s has %d bytes, expected %d",
                                                 path.string(), bytes.size(), handle.size));
    }
    const uint32_t crc = Crc32c(0, bytes.data(), bytes.size());
    if (crc != handle.crc32c) {
      return absl::DataLossError(
          absl::StrFormat("checkpoint file %s is damaged: CRC32C 0x%08x, expected 0x%08x",
                          path.string(), crc, handle.crc32c));
    }
    return bytes;
  }

  absl::StatusOr<std::string> ReadWhole(const std::string& name) override {
    SLUICE_ASSIGN_OR_RETURN(const std::filesystem::path path, PathOf(name));
    absl::StatusOr<std::string> read = ReadWholeFile(path.string());
    if (!read.ok()) {
      return absl::Status(read.status().code(),
                          absl::StrCat("checkpoint file: ", read.status().message()));
    }
    return read;
  }

  bool Exists(const std::string& name) override {
    absl::StatusOr<std::filesystem::path> path = PathOf(name);
    std::error_code ec;
    return path.ok() && std::filesystem::exists(*path, ec);
  }

  absl::Status DeleteDirectory(const std::string& name) override {
    SLUICE_ASSIGN_OR_RETURN(const std::filesystem::path path, PathOf(name));
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec)
      return absl::UnavailableError(absl::StrCat("delete ", path.string(), ": ", ec.message()));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(const std::string& name) override {
    std::filesystem::path dir = root_;
    if (!name.empty()) {
      SLUICE_ASSIGN_OR_RETURN(dir, PathOf(name));
    }
    std::vector<std::string> out;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir, ec);
    if (ec == std::errc::no_such_file_or_directory) return out;
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      std::string entry = it->path().filename().string();
      if (entry.find(".tmp.") == std::string::npos) out.push_back(std::move(entry));
    }
    if (ec) return absl::UnavailableError(absl::StrCat("list ", dir.string(), ": ", ec.message()));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::Status Delete(const std::string& name) override {
    SLUICE_ASSIGN_OR_RETURN(const std::filesystem::path path, PathOf(name));
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Errno(errno, absl::StrCat("delete ", path.string()));
    }
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::filesystem::path> PathOf(const std::string& name) const {
    if (!IsStorageName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint file name '", name, "' must be a relative path without '.' or '..'"));
    }
    return root_ / name;
  }

  // Writes through a temporary file: `fill(fd, tmp, &size, &crc)` writes the content.
  template <typename Fill>
  absl::StatusOr<StateHandle> Store(const std::string& name, Fill fill) {
    SLUICE_ASSIGN_OR_RETURN(const std::filesystem::path path, PathOf(name));
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot create ", path.parent_path().string(), ": ", ec.message()));
    }
    const std::string tmp = absl::StrCat(path.string(), ".tmp.", getpid(), ".", next_.fetch_add(1));
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(errno, absl::StrCat("create ", tmp));
    StateHandle handle;
    handle.name = name;
    absl::Status s = fill(fd, tmp, &handle.size, &handle.crc32c);
    if (s.ok() && fsync(fd) != 0) s = Errno(errno, absl::StrCat("fsync ", tmp));
    if (close(fd) != 0 && s.ok()) s = Errno(errno, absl::StrCat("close ", tmp));
    if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
      s = Errno(errno, absl::StrCat("rename ", tmp, " to ", path.string()));
    }
    if (!s.ok()) {
      unlink(tmp.c_str());
      return s;
    }
    SLUICE_RETURN_IF_ERROR(SyncDirectory(path.parent_path()));
    return handle;
  }

  const std::filesystem::path root_;
  std::atomic<uint64_t> next_{0};
};

}  // namespace

bool IsStorageName(std::string_view name) {
  if (name.empty() || name.front() == '/') return false;
  for (absl::string_view part : absl::StrSplit(absl::string_view(name.data(), name.size()), '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<CheckpointStorage>> NewFilesystemCheckpointStorage(
    std::string root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec || !std::filesystem::is_directory(root, ec)) {
    return absl::UnavailableError(absl::StrCat("checkpoint storage ", root,
                                               " is not a usable directory",
                                               ec ? absl::StrCat(": ", ec.message()) : ""));
  }
  return std::make_unique<FilesystemCheckpointStorage>(std::filesystem::path(root));
}

}  // namespace sluice
