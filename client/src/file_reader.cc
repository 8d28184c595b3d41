#include "bantay/client/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace bantay::client {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Error ErrnoError(int err, const std::string& what) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Error(ErrorCode::kNotFound, what + ": no such file");
    case EACCES:
    case EPERM:
      return Error(ErrorCode::kPermissionDenied, what + ": permission denied");
    case EISDIR:
      return Error(ErrorCode::kInvalidArgument, what + ": is a directory");
    default:
      return Error(ErrorCode::kIo, what + ": " + std::strerror(err));
  }
}

// O_NOATIME is allowed only to the file's owner (or root); others open
// without it. O_NONBLOCK: a FIFO that takes the place of a file between the
// caller's check and the open does not block it (reads of regular files
// ignore the flag).
Result<int> OpenReadOnly(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME | O_NONBLOCK);
  if (fd < 0 && errno == EPERM) {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  }
  if (fd < 0) return ErrnoError(errno, "open");
  return fd;
}

// Reads [0, n) or up to the end of the file.
Result<size_t> ReadAll(int fd, uint8_t* data, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t got =
        pread(fd, data + done, n - done, static_cast<off_t>(done));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "read");
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path,
                                           int64_t max_bytes) {
  Result<int> opened = OpenReadOnly(path);
  if (!opened.ok()) return opened.error();
  Fd fd(*opened);
  return ReadWholeOpenFile(fd.get(), max_bytes);
}

Result<std::vector<uint8_t>> ReadWholeOpenFile(int fd, int64_t max_bytes) {
  struct stat st;
  if (fstat(fd, &st) != 0) return ErrnoError(errno, "stat");
  if (S_ISDIR(st.st_mode)) return ErrnoError(EISDIR, "open");
  if (!S_ISREG(st.st_mode)) {
    return Error(ErrorCode::kInvalidArgument, "not a regular file");
  }
  if (st.st_size > max_bytes) {
    return Error(ErrorCode::kTooLarge,
                 "file is " + std::to_string(st.st_size) +
                     " bytes, over the limit of " + std::to_string(max_bytes));
  }
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  Result<size_t> got = ReadAll(fd, data.data(), data.size());
  if (!got.ok()) return got.error();
  // A file that shrank while being read is taken as it now is.
  data.resize(*got);
  return data;
}

Result<std::vector<uint8_t>> ReadFileHead(const std::string& path, size_t n) {
  Result<int> opened = OpenReadOnly(path);
  if (!opened.ok()) return opened.error();
  Fd fd(*opened);
  return ReadOpenFileHead(fd.get(), n);
}

Result<std::vector<uint8_t>> ReadOpenFileHead(int fd, size_t n) {
  std::vector<uint8_t> data(n);
  Result<size_t> got = ReadAll(fd, data.data(), n);
  if (!got.ok()) return got.error();
  data.resize(*got);
  return data;
}

}  // namespace bantay::client
