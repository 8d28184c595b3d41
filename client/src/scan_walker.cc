#include "scan_walker.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "scan_testing.h"

namespace bantay::client {
namespace {

Error ErrnoError(int err, const std::string& what) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Error(ErrorCode::kNotFound, what + ": no such file or directory");
    case EACCES:
    case EPERM:
      return Error(ErrorCode::kPermissionDenied, what + ": permission denied");
    case ELOOP:  // a loop of links: the path cannot be resolved
      return Error(ErrorCode::kIo,
                   what + ": too many levels of symbolic links");
    default:
      return Error(ErrorCode::kIo, what + ": " + std::strerror(err));
  }
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
}

std::string Join(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// A file or directory, by device and inode.
struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId&) const = default;
};

struct FileIdHash {
  size_t operator()(const FileId& id) const {
    return std::hash<uint64_t>()(static_cast<uint64_t>(id.ino) * 0x9e3779b97f4a7c15u ^
                                 static_cast<uint64_t>(id.dev));
  }
};

Error Changed(std::string_view what) {
  return Error(ErrorCode::kIo, "changed during the scan: " + std::string(what));
}

std::function<void(const std::string&)>& WalkOpenHook() {
  static std::function<void(const std::string&)> hook;
  return hook;
}

class Walker {
 public:
  Walker(const WalkOptions& options,
         const std::function<bool(WalkEntry&&)>& visit)
      : options_(options), visit_(visit) {}

  // Returns false when the walk was stopped.
  bool Root(const std::string& path) {
    dir_fd_ = AT_FDCWD;
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      const int err = errno;
      // A dangling link named on the command line is still a link.
      struct stat lst;
      if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
        if (options_.follow_symlinks) {
          return Emit(ErrorEntry(path, ErrnoError(err, "follow link")));
        }
        return Entry(path, path, lst, /*followed=*/false);
      }
      return Emit(ErrorEntry(path, ErrnoError(err, "stat")));
    }
    struct stat lst;
    const bool link = lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
    if (!S_ISDIR(st.st_mode) && link) {
      WalkEntry e = NotDirectory(path, path, st, /*followed=*/true);
      e.link_target = ReadLink(AT_FDCWD, path);
      if (const std::string* first = FileGivenBefore(e, st, /*via_link=*/true)) {
        return Emit(Duplicate(path, *first, /*directory=*/false));
      }
      return Emit(std::move(e));
    }
    return Entry(path, path, st, link);
  }

 private:
  // One entry that is not a directory, `name` in the directory dir_fd_
  // (open), whose stat is st: of the link itself, unless `followed` (st is
  // then of its target).
  bool Entry(const std::string& path, const std::string& name,
             const struct stat& st, bool followed) {
    if (S_ISDIR(st.st_mode)) {
      return Directory(path, {st.st_dev, st.st_ino}, followed);
    }
    if (S_ISLNK(st.st_mode)) {
      WalkEntry e;
      e.kind = WalkEntry::Kind::kSymlink;
      e.path = path;
      e.mtime_ns = MtimeNs(st);
      e.link_target = ReadLink(dir_fd_, name);
      return Emit(std::move(e));
    }
    WalkEntry e = NotDirectory(path, name, st, followed);
    if (const std::string* first =
            FileGivenBefore(e, st, followed || links_on_path_ > 0)) {
      return Emit(Duplicate(path, *first, /*directory=*/false));
    }
    return Emit(std::move(e));
  }

  // With links followed: the path under which the walk gave the file `e`
  // (of stat st) already, when a link leads to it now or led to it then
  // (the same file under a second name only through the link); null
  // otherwise, and the file is remembered. Hard links reached without a
  // symbolic link are entries of their own, as they are without following.
  const std::string* FileGivenBefore(const WalkEntry& e, const struct stat& st,
                                     bool via_link) {
    if (!options_.follow_symlinks || e.kind != WalkEntry::Kind::kFile) {
      return nullptr;
    }
    const auto [given, first] =
        files_.try_emplace({st.st_dev, st.st_ino}, Given{e.path, via_link});
    if (first || (!via_link && !given->second.via_link)) return nullptr;
    return &given->second.path;
  }

  static WalkEntry Duplicate(const std::string& path, const std::string& first,
                             bool directory) {
    WalkEntry e;
    e.kind = WalkEntry::Kind::kDuplicate;
    e.path = path;
    e.duplicate_of = first;
    e.duplicate_directory = directory;
    return e;
  }

  // A regular file or a special one (FIFO, socket, device) whose stat is
  // st, `name` in the directory dir_fd_; `followed`: through a link.
  WalkEntry NotDirectory(const std::string& path, const std::string& name,
                         const struct stat& st, bool followed) const {
    WalkEntry e;
    e.path = path;
    e.mtime_ns = MtimeNs(st);
    e.through_link = followed;
    if (S_ISREG(st.st_mode)) {
      e.kind = WalkEntry::Kind::kFile;
      e.size = st.st_size;
      e.dir_fd = dir_fd_;
      e.name = name;
      e.dev = st.st_dev;
      e.ino = st.st_ino;
    } else {
      e.kind = WalkEntry::Kind::kSpecial;
    }
    return e;
  }

  // `followed`: reached through a symbolic link.
  bool Directory(const std::string& path, FileId id, bool followed) {
    if (std::find(ancestors_.begin(), ancestors_.end(), id) !=
        ancestors_.end()) {
      return Emit(ErrorEntry(
          path, Error(ErrorCode::kInvalidArgument,
                      "symbolic link loop: leads back into a directory "
                      "being scanned")));
    }
    // With links followed, a directory is walked once, under the first
    // path that reaches it (it was walked already, or is being walked: a
    // loop, reported above).
    if (options_.follow_symlinks) {
      const auto [walked, first] = directories_.try_emplace(id, path);
      if (!first) {
        return Emit(Duplicate(path, walked->second, /*directory=*/true));
      }
    }
    Result<Fd> opened = OpenDirectory(path, id);
    if (!opened.ok()) return Emit(ErrorEntry(path, opened.error()));
    Fd dir = std::move(*opened);
    std::vector<Child> children;
    if (Status read = ReadDirectory(dir.get(), &children); !read.ok()) {
      return Emit(ErrorEntry(path, read.error()));
    }
    ancestors_.push_back(id);
    links_on_path_ += followed ? 1 : 0;
    bool go_on = true;
    for (const Child& child : children) {
      const std::string child_path = Join(path, child.name);
      if (child.stat_errno != 0) {
        go_on = Emit(ErrorEntry(child_path, ErrnoError(child.stat_errno, "stat")));
        if (!go_on) break;
        continue;
      }
      // A subdirectory closed this one (a deep tree holds one descriptor
      // at a time): it is opened again, and checked, for an entry after
      // that is not a directory (a file's open, a link's text or target).
      if (dir.get() < 0 && !S_ISDIR(child.st.st_mode)) {
        Result<Fd> again = OpenDirectory(path, id);
        if (!again.ok()) {
          go_on = Emit(ErrorEntry(child_path, again.error()));
          if (!go_on) break;
          continue;
        }
        dir = std::move(*again);
      }
      struct stat st = child.st;
      bool link_followed = false;
      if (S_ISLNK(st.st_mode) && options_.follow_symlinks) {
        if (fstatat(dir.get(), child.name.c_str(), &st, 0) != 0) {
          go_on = Emit(ErrorEntry(child_path, ErrnoError(errno, "follow link")));
          if (!go_on) break;
          continue;
        }
        link_followed = true;
      }
      if (S_ISDIR(st.st_mode)) dir = Fd();
      dir_fd_ = dir.get();
      go_on = Entry(child_path, child.name, st, link_followed);
      if (!go_on) break;
    }
    links_on_path_ -= followed ? 1 : 0;
    ancestors_.pop_back();
    return go_on;
  }

  // The directory at `path`, checked to be the one the walk examined
  // there: one put in its place since (a link to elsewhere, another
  // directory) is not walked.
  static Result<Fd> OpenDirectory(const std::string& path, FileId id) {
    int fd = open(path.c_str(),
                  O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) {
      fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) return ErrnoError(errno, "open directory");
    Fd dir(fd);
    struct stat st;
    if (fstat(dir.get(), &st) != 0) return ErrnoError(errno, "stat");
    if (st.st_dev != id.dev || st.st_ino != id.ino) {
      return Changed(
          "another directory is in its place since the walk examined it "
          "(device and inode differ); not walked");
    }
    return dir;
  }

  // The entries of a directory with their lstat, sorted by name.
  struct Child {
    std::string name;
    struct stat st;
    int stat_errno;
  };

  static Status ReadDirectory(int dir_fd, std::vector<Child>* children) {
    // The listing has a descriptor of its own, closed after it.
    const int fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return ErrnoError(errno, "open directory");
    DIR* dir = fdopendir(fd);
    if (dir == nullptr) {
      const int err = errno;
      close(fd);
      return ErrnoError(err, "open directory");
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* d = readdir(dir)) {
      const std::string_view name = d->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
      errno = 0;
    }
    const int read_errno = errno;
    closedir(dir);
    std::sort(names.begin(), names.end());
    if (read_errno != 0) return ErrnoError(read_errno, "read directory");
    for (std::string& name : names) {
      Child child{std::move(name), {}, 0};
      if (fstatat(dir_fd, child.name.c_str(), &child.st,
                  AT_SYMLINK_NOFOLLOW) != 0) {
        // Vanished since it was listed: not an entry any more.
        if (errno == ENOENT) continue;
        child.stat_errno = errno;
      }
      children->push_back(std::move(child));
    }
    return {};
  }

  static std::string ReadLink(int dir_fd, const std::string& name) {
    std::string target(4096, '\0');
    const ssize_t n =
        readlinkat(dir_fd, name.c_str(), target.data(), target.size());
    if (n < 0) return "";
    target.resize(static_cast<size_t>(n));
    return target;
  }

  static WalkEntry ErrorEntry(const std::string& path, Error error) {
    WalkEntry e;
    e.kind = WalkEntry::Kind::kError;
    e.path = path;
    e.error = std::move(error);
    return e;
  }

  bool Emit(WalkEntry&& e) { return visit_(std::move(e)); }

  // A file given, with links followed: under which path, and whether a
  // symbolic link led to it.
  struct Given {
    std::string path;
    bool via_link;
  };

  const WalkOptions& options_;
  const std::function<bool(WalkEntry&&)>& visit_;
  std::vector<FileId> ancestors_;
  // The directory of the entries given now (AT_FDCWD for a root's).
  int dir_fd_ = AT_FDCWD;
  // How many of the directories being walked were reached through a link.
  int links_on_path_ = 0;
  // With links followed: the directories walked and the files given, by
  // device and inode (a scan keeps them all: about 100 bytes a file).
  std::unordered_map<FileId, std::string, FileIdHash> directories_;
  std::unordered_map<FileId, Given, FileIdHash> files_;
};

}  // namespace

bool IsWithin(const std::filesystem::path& inner,
              const std::filesystem::path& outer) {
  return std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end())
             .first == outer.end();
}

namespace {

// Whether a walk of `outer` (resolved) gets down to `inner` (resolved,
// inside it): it must list every directory on the way, from `outer` to
// the one that holds `inner`, and examine the next entry in each, as
// ReadDirectory does. One it cannot read (mode -wx, a lab account without
// the rights) keeps what is under it from that walk.
bool WalkReaches(const std::filesystem::path& outer,
                 const std::filesystem::path& inner) {
  std::filesystem::path dir = outer;
  for (const std::filesystem::path& name : inner.lexically_relative(outer)) {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) {
      fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) return false;
    struct stat st;
    const bool examined =
        fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
    close(fd);
    if (!examined) return false;
    dir /= name;
  }
  return true;
}

}  // namespace

std::vector<CoveredRoot> CoveredRoots(const std::vector<std::string>& roots) {
  namespace fs = std::filesystem;
  std::vector<std::optional<fs::path>> resolved(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) {
    std::error_code ec;
    fs::path path = fs::canonical(roots[i], ec);
    if (!ec) resolved[i] = std::move(path);
  }
  // Whether the walk of root j gives the entries of root i: a resolved path
  // has no links, so the walk of an enclosing directory reaches it through
  // real directories, whether links are followed or not, unless one of
  // them cannot be read; root i is then walked itself. (Checked once per
  // pair: covering stays transitive, a walk that reaches j and i from
  // there reaches i.)
  std::vector<std::vector<int>> memo(roots.size(),
                                     std::vector<int>(roots.size(), -1));
  auto covers = [&](size_t j, size_t i) {
    if (i == j || !resolved[i] || !resolved[j]) return false;
    if (*resolved[i] == *resolved[j]) return j < i;
    if (!IsWithin(*resolved[i], *resolved[j])) return false;
    if (memo[j][i] < 0) memo[j][i] = WalkReaches(*resolved[j], *resolved[i]);
    return memo[j][i] == 1;
  };
  std::vector<bool> covered(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) {
    for (size_t j = 0; j < roots.size() && !covered[i]; ++j) {
      covered[i] = covers(j, i);
    }
  }
  // Covering is transitive, so some root that is not covered covers each
  // covered one.
  std::vector<CoveredRoot> out;
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!covered[i]) continue;
    size_t by = 0;
    while (covered[by] || !covers(by, i)) ++by;
    out.push_back(
        {i, by, *resolved[i] == *resolved[by], resolved[i]->string()});
  }
  return out;
}

Result<Fd> OpenWalkEntry(const WalkEntry& entry) {
  if (WalkOpenHook()) WalkOpenHook()(entry.path);
  const int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK |
                    (entry.through_link ? 0 : O_NOFOLLOW);
  int fd = openat(entry.dir_fd, entry.name.c_str(), flags | O_NOATIME);
  if (fd < 0 && errno == EPERM) {
    fd = openat(entry.dir_fd, entry.name.c_str(), flags);
  }
  if (fd < 0) {
    switch (errno) {
      case ELOOP:  // O_NOFOLLOW met a link where the walk saw a file
        if (entry.through_link) break;
        return Changed(
            "a symbolic link is in its place since the walk examined it; "
            "not followed");
      case ENOENT:
        return Error(ErrorCode::kNotFound, "open: no such file");
      case EACCES:
      case EPERM:
        return Error(ErrorCode::kPermissionDenied, "open: permission denied");
    }
    return Error(ErrorCode::kIo, std::string("open: ") + std::strerror(errno));
  }
  Fd file(fd);
  struct stat st;
  if (fstat(file.get(), &st) != 0) return ErrnoError(errno, "stat");
  if (st.st_dev != entry.dev || st.st_ino != entry.ino) {
    return Changed(
        "another file is in its place since the walk examined it (device "
        "and inode differ); not read");
  }
  return file;
}

void SetWalkOpenHookForTesting(std::function<void(const std::string&)> hook) {
  WalkOpenHook() = std::move(hook);
}

void WalkTrees(const std::vector<std::string>& roots, const WalkOptions& options,
               const std::function<bool(WalkEntry&&)>& visit) {
  Walker walker(options, visit);
  for (const std::string& root : roots) {
    if (!walker.Root(root)) return;
  }
}

}  // namespace bantay::client
