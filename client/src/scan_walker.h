// The directory walk of `bantay scan`: every entry under the given roots, in
// a fixed order (depth first, names in byte order), so that two scans of the
// same tree list the same entries in the same order — which is what lets an
// interrupted scan be resumed into the same report.
//
// Evidence is not touched: directories are opened read-only with O_NOATIME
// where the kernel allows it (the owner or root), entries are examined with
// lstat-style calls, FIFOs and devices are never opened, and symbolic links
// are reported rather than followed unless following is asked for; when it
// is, a link back into a directory being walked is reported as a loop, and
// a file or directory that a link leads to is given once (see kDuplicate).
//
// What the walk examined is what is read: a directory is checked to be the
// one examined (device and inode) when it is opened, and a file is opened
// relative to its directory while the walk holds that open
// (OpenWalkEntry), and checked too. Something put in the place of either
// since (another file, a symbolic link to elsewhere) is an error entry or
// an error of OpenWalkEntry, "changed during the scan", never read.
#ifndef BANTAY_CLIENT_SCAN_WALKER_H_
#define BANTAY_CLIENT_SCAN_WALKER_H_

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::client {

// An open descriptor (or none, -1), closed with its owner.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

struct WalkEntry {
  enum class Kind {
    kFile,      // a regular file: to be scanned
    kSymlink,   // a symbolic link that is not followed
    kSpecial,   // FIFO, socket, device: never opened
    kError,     // an entry that could not be examined or a directory that
                // could not be read, or a loop
    kDuplicate,  // with links followed: a file or directory given already
                 // under another path (duplicate_of), the same by device
                 // and inode, and a symbolic link led to one of the two;
                 // not to be scanned again (nor a directory's entries)
  };
  Kind kind = Kind::kFile;
  std::string path;
  int64_t size = 0;         // kFile: from the walk's stat
  int64_t mtime_ns = 0;     // kFile, kSymlink, kSpecial
  // kSymlink; kFile and kSpecial when reached through a symbolic link
  // named as a root (followed, as find -H does)
  std::string link_target;
  // kFile, kSpecial: reached through a symbolic link at its own name (one
  // named as a root, or any with follow_symlinks): followed when opened.
  bool through_link = false;
  // kFile: what OpenWalkEntry opens, during the visit only: `name` relative
  // to the walk's descriptor of its directory (AT_FDCWD and the path for a
  // root), and the device and inode the walk examined there.
  int dir_fd = AT_FDCWD;
  std::string name;
  dev_t dev = 0;
  ino_t ino = 0;
  Error error{ErrorCode::kInternal, ""};  // kError
  std::string duplicate_of;          // kDuplicate: the path it was given as
  bool duplicate_directory = false;  // kDuplicate: a directory (else a file)
};

struct WalkOptions {
  bool follow_symlinks = false;
};

// Calls visit for each entry in order, on the calling thread. Roots named on
// the command line are followed even when they are links (the user named
// them), to a file as to a directory; a file reached so has the link's
// target in link_target. The walk stops early when visit returns false.
// With follow_symlinks, files and directories are given once over all the
// roots (kDuplicate for the others), which takes memory for every file.
void WalkTrees(const std::vector<std::string>& roots, const WalkOptions& options,
               const std::function<bool(WalkEntry&&)>& visit);

// Opens the file of a kFile entry for reading, while it is being visited
// (the walk's descriptor of its directory is open only then): relative to
// that directory, read-only, without blocking (on a FIFO put in its place),
// without updating its access time where the kernel allows it (the file's
// owner or root), without following a symbolic link at its name unless the
// walk followed one there (through_link); then checks that it is the file
// the walk examined (device and inode). Errors: kNotFound ("open: no such
// file"), kPermissionDenied ("open: permission denied"), kIo (another
// errno; and "changed during the scan: ..." for another file or a link in
// its place).
Result<Fd> OpenWalkEntry(const WalkEntry& entry);

// A root whose entries the walk of another root gives already: one that
// resolves (links followed) to the same path as an earlier root, or to a
// path inside another root that the walk of that root gets down to (it can
// list each directory on the way). Walked as well, its entries would be
// given twice. (Entries are not compared: two hard links are two entries.)
struct CoveredRoot {
  size_t root = 0;       // its index in the roots
  size_t by = 0;         // the root that covers it, itself not covered
  bool same = false;     // resolves to the same path as `by` (else: inside)
  std::string resolved;  // the root, resolved
};

// Whether `inner` is `outer` or a path under it, compared by components
// (both resolved, or both as given).
bool IsWithin(const std::filesystem::path& inner,
              const std::filesystem::path& outer);

// The covered roots, in order. A root that cannot be resolved (missing,
// unreadable) is neither covered nor covering: its walk reports it. A root
// under a directory that the covering walk cannot read is not covered: it
// is walked itself (else what is under it would never be scanned).
std::vector<CoveredRoot> CoveredRoots(const std::vector<std::string>& roots);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_SCAN_WALKER_H_
