#include "scan_walker.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>
#include <utility>

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

class Walker {
 public:
  Walker(const WalkOptions& options,
         const std::function<bool(WalkEntry&&)>& visit)
      : options_(options), visit_(visit) {}

  // Returns false when the walk was stopped.
  bool Root(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      // A dangling link named on the command line is still a link.
      struct stat lst;
      if (lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
        return Entry(path, lst, /*followed=*/false);
      }
      return Emit(ErrorEntry(path, ErrnoError(errno, "stat")));
    }
    struct stat lst;
    const bool link = lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode);
    if (!S_ISDIR(st.st_mode) && link) {
      WalkEntry e = NotDirectory(path, st);
      e.link_target = ReadLink(path);
      e.through_link = true;
      if (const std::string* first = FileGivenBefore(e, st, /*via_link=*/true)) {
        return Emit(Duplicate(path, *first, /*directory=*/false));
      }
      return Emit(std::move(e));
    }
    return Entry(path, st, link);
  }

 private:
  // One entry whose stat (of the link itself, unless it is followed) is st;
  // `followed`: st is of a link's target.
  bool Entry(const std::string& path, const struct stat& st, bool followed) {
    if (S_ISLNK(st.st_mode)) {
      if (options_.follow_symlinks) {
        struct stat target;
        if (stat(path.c_str(), &target) != 0) {
          return Emit(ErrorEntry(path, ErrnoError(errno, "follow link")));
        }
        return Entry(path, target, /*followed=*/true);
      }
      WalkEntry e;
      e.kind = WalkEntry::Kind::kSymlink;
      e.path = path;
      e.mtime_ns = MtimeNs(st);
      e.link_target = ReadLink(path);
      return Emit(std::move(e));
    }
    if (S_ISDIR(st.st_mode)) {
      return Directory(path, {st.st_dev, st.st_ino}, followed);
    }
    WalkEntry e = NotDirectory(path, st);
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

  // A regular file or a special one (FIFO, socket, device) whose stat is st.
  static WalkEntry NotDirectory(const std::string& path,
                                const struct stat& st) {
    WalkEntry e;
    e.path = path;
    e.mtime_ns = MtimeNs(st);
    if (S_ISREG(st.st_mode)) {
      e.kind = WalkEntry::Kind::kFile;
      e.size = st.st_size;
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
    std::vector<Child> children;
    if (Status read = ReadDirectory(path, &children); !read.ok()) {
      return Emit(ErrorEntry(path, read.error()));
    }
    ancestors_.push_back(id);
    links_on_path_ += followed ? 1 : 0;
    bool go_on = true;
    for (const Child& child : children) {
      const std::string child_path = Join(path, child.name);
      go_on = child.stat_errno != 0
                  ? Emit(ErrorEntry(child_path,
                                    ErrnoError(child.stat_errno, "stat")))
                  : Entry(child_path, child.st, /*followed=*/false);
      if (!go_on) break;
    }
    links_on_path_ -= followed ? 1 : 0;
    ancestors_.pop_back();
    return go_on;
  }

  // The entries of a directory with their lstat, sorted by name. The
  // directory is closed before any child is visited, so that a deep tree
  // holds one descriptor at a time.
  struct Child {
    std::string name;
    struct stat st;
    int stat_errno;
  };

  static Status ReadDirectory(const std::string& path,
                              std::vector<Child>* children) {
    int fd = open(path.c_str(),
                  O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM) {
      fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
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
    std::sort(names.begin(), names.end());
    Status result;
    if (read_errno != 0) {
      result = ErrnoError(read_errno, "read directory");
    } else {
      for (std::string& name : names) {
        Child child{std::move(name), {}, 0};
        if (fstatat(dirfd(dir), child.name.c_str(), &child.st,
                    AT_SYMLINK_NOFOLLOW) != 0) {
          // Vanished since it was listed: not an entry any more.
          if (errno == ENOENT) continue;
          child.stat_errno = errno;
        }
        children->push_back(std::move(child));
      }
    }
    closedir(dir);
    return result;
  }

  static std::string ReadLink(const std::string& path) {
    std::string target(4096, '\0');
    const ssize_t n = readlink(path.c_str(), target.data(), target.size());
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

void WalkTrees(const std::vector<std::string>& roots, const WalkOptions& options,
               const std::function<bool(WalkEntry&&)>& visit) {
  Walker walker(options, visit);
  for (const std::string& root : roots) {
    if (!walker.Root(root)) return;
  }
}

}  // namespace bantay::client
