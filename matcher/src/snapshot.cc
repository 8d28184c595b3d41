#include "bantay/matcher/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "bantay/matcher/merkle.h"

namespace bantay::matcher {
namespace {

constexpr std::string_view kSignatureDomain = "BANTAY-SNAPSHOT-1";
constexpr size_t kMaxHeader = 4096;

class Writer {
 public:
  explicit Writer(std::vector<uint8_t>* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(v); }
  void U32(uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out_->push_back(static_cast<uint8_t>(v >> s));
  }
  void U64(uint64_t v) {
    for (int s = 56; s >= 0; s -= 8) out_->push_back(static_cast<uint8_t>(v >> s));
  }
  void Bytes(std::span<const uint8_t> b) { out_->insert(out_->end(), b.begin(), b.end()); }
  void Field(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_->insert(out_->end(), s.begin(), s.end());
  }

 private:
  std::vector<uint8_t>* out_;
};

// Reads fields from a byte range; after the first overrun every read
// fails and ok() is false.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == in_.size(); }
  uint8_t U8() { return Take(1) ? in_[pos_ - 1] : 0; }
  uint32_t U32() {
    if (!Take(4)) return 0;
    uint32_t v = 0;
    for (size_t i = pos_ - 4; i < pos_; ++i) v = (v << 8) | in_[i];
    return v;
  }
  uint64_t U64() {
    if (!Take(8)) return 0;
    uint64_t v = 0;
    for (size_t i = pos_ - 8; i < pos_; ++i) v = (v << 8) | in_[i];
    return v;
  }
  template <size_t N>
  void Array(std::array<uint8_t, N>* out) {
    if (Take(N)) std::memcpy(out->data(), in_.data() + pos_ - N, N);
  }
  std::string Field() {
    const uint32_t n = U32();
    if (!Take(n)) return {};
    return std::string(reinterpret_cast<const char*>(in_.data() + pos_ - n), n);
  }

 private:
  bool Take(size_t n) {
    if (!ok_ || in_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

std::vector<uint8_t> SignedMessage(std::span<const uint8_t> header,
                                   std::span<const uint8_t> payload) {
  Sha256Hasher h;
  h.Update(payload);
  const Digest32 payload_digest = h.Finish();
  // Sized once and filled with memcpy: GCC 12 reports false overflows for
  // vector::insert of a string_view range here.
  std::vector<uint8_t> m(kSignatureDomain.size() + header.size() + payload_digest.size());
  std::memcpy(m.data(), kSignatureDomain.data(), kSignatureDomain.size());
  std::memcpy(m.data() + kSignatureDomain.size(), header.data(), header.size());
  std::memcpy(m.data() + kSignatureDomain.size() + header.size(), payload_digest.data(),
              payload_digest.size());
  return m;
}

Error Corrupt(const std::string& path, const std::string& what) {
  return Error(ErrorCode::kCorruptData, "snapshot " + path + ": " + what);
}

}  // namespace

Result<uint64_t> ExportSnapshot(Store& store, const DataKey& key, const SigningKey& signer,
                                const std::string& path) {
  struct stat existing;
  if (::lstat(path.c_str(), &existing) == 0) {
    return Error(ErrorCode::kInvalidArgument, path + " already exists");
  }
  // The payload, read in one transaction with the version it belongs to.
  std::vector<uint8_t> plain;
  Writer body(&plain);
  std::vector<ListInfo> lists;
  uint64_t version = 0;
  std::vector<uint8_t> entries_bytes;
  Writer entries(&entries_bytes);
  uint64_t count = 0;
  Status s = store.ForEachEntry(
      [&](StoredEntry&& e) {
        entries.U64(e.id);
        entries.U8(static_cast<uint8_t>(e.type));
        entries.U8(static_cast<uint8_t>(e.status));
        entries.Bytes(e.value);
        entries.Bytes(e.salt);
        entries.Field(e.list);
        entries.Field(e.category);
        entries.Field(e.reference);
        entries.Field(e.source);
        entries.Field(e.added_by);
        entries.U64(static_cast<uint64_t>(e.added_at));
        entries.U64(e.added_version);
        Wipe(e.value);
        ++count;
      },
      &version, &lists);
  if (!s.ok()) return s.error();
  Result<VersionRecord> record = store.Root(version);
  if (!record.ok()) return record.error();
  if (record->public_key != signer.public_key()) {
    return Error(ErrorCode::kPermissionDenied,
                 "the signing key given is not the key that signed version " +
                     std::to_string(version));
  }
  body.U64(lists.size());
  for (const ListInfo& l : lists) {
    body.Field(l.name);
    body.U8(l.enabled ? 1 : 0);
    body.Field(l.description);
  }
  body.U64(count);
  body.Bytes(entries_bytes);
  Wipe(entries_bytes);

  std::vector<uint8_t> header;
  Writer h(&header);
  h.Bytes(store.store_id());
  h.U64(record->version);
  h.U64(static_cast<uint64_t>(record->created_at));
  h.Bytes(record->root);
  h.U64(record->active_count);
  h.Bytes(record->audit_digest);
  h.U8(record->state_digest ? 1 : 0);
  if (record->state_digest) h.Bytes(*record->state_digest);
  h.Bytes(record->signature);
  h.Bytes(record->public_key);
  h.Field(key.id);
  h.U64(plain.size() + Aead::kTagSize);

  std::vector<uint8_t> sealed;
  Aead aead(key);
  aead.Seal(plain, header, &sealed);  // nonce || ciphertext || tag
  Wipe(plain);
  const std::vector<uint8_t> signed_part = SignedMessage(header, sealed);
  const Signature signature = signer.Sign(signed_part);

  // Written under a temporary name in the same directory, then renamed into
  // place: a process killed meanwhile leaves no `path` (at most the
  // temporary file), so that the export can be run again.
  std::string temp = path + ".partial-XXXXXX";
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) {
    return Error(ErrorCode::kIo, "cannot create " + temp + ": " + std::strerror(errno));
  }
  std::vector<uint8_t> file(kSnapshotMagic.begin(), kSnapshotMagic.end());
  Writer f(&file);
  f.U32(static_cast<uint32_t>(header.size()));
  f.Bytes(header);
  f.Bytes(sealed);
  f.Bytes(signature);
  size_t written = 0;
  while (written < file.size()) {
    const ssize_t n = ::write(fd, file.data() + written, file.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(temp.c_str());
      return Error(ErrorCode::kIo, "cannot write " + temp + ": " + why);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(temp.c_str());
    return Error(ErrorCode::kIo, "cannot write " + temp);
  }
  // Never over an existing file, also one created since the check above.
  int renamed = ::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
  if (renamed != 0 && (errno == EINVAL || errno == ENOSYS)) {
    // A file system without RENAME_NOREPLACE: link() refuses an existing
    // name too.
    renamed = ::link(temp.c_str(), path.c_str());
    if (renamed == 0) ::unlink(temp.c_str());
  }
  if (renamed != 0) {
    const int e = errno;
    ::unlink(temp.c_str());
    if (e == EEXIST) return Error(ErrorCode::kInvalidArgument, path + " already exists");
    return Error(ErrorCode::kIo, "cannot create " + path + ": " + std::strerror(e));
  }
  // The rename itself made durable.
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return record->version;
}

bool IsSnapshotFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic(kSnapshotMagic.size(), '\0');
  return in.read(magic.data(), static_cast<std::streamsize>(magic.size())) &&
         (magic == kSnapshotMagic || magic == kSnapshotMagicV1);
}

Result<SnapshotContents> ReadSnapshot(const std::string& path, const DataKey& key,
                                      const PublicKey& trusted_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                 "cannot open " + path + ": " + std::strerror(errno));
  }
  // Only regular files (a device such as /dev/zero would be read forever).
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error(ErrorCode::kUnsupportedFormat, path + " is not a regular file");
  }
  std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  static_assert(kSnapshotMagic.size() == kSnapshotMagicV1.size());
  if (file.size() < kSnapshotMagic.size()) {
    return Error(ErrorCode::kUnsupportedFormat, path + " is not a Bantay snapshot");
  }
  const std::string_view magic(reinterpret_cast<const char*>(file.data()), kSnapshotMagic.size());
  if (magic != kSnapshotMagic && magic != kSnapshotMagicV1) {
    return Error(ErrorCode::kUnsupportedFormat, path + " is not a Bantay snapshot");
  }
  const bool v1 = magic == kSnapshotMagicV1;
  Reader top(std::span<const uint8_t>(file).subspan(kSnapshotMagic.size()));
  const uint32_t header_size = top.U32();
  if (!top.ok() || header_size > kMaxHeader) return Corrupt(path, "bad header");
  const size_t header_at = kSnapshotMagic.size() + 4;
  if (file.size() < header_at + header_size) return Corrupt(path, "truncated header");
  const std::span<const uint8_t> header(file.data() + header_at, header_size);
  // A header that does not parse was modified, unless the file's signature
  // verifies over it as it is (a header this reader does not know).
  auto bad_header = [&] {
    const size_t payload_at = header_at + header_size;
    if (file.size() >= payload_at + 64) {
      Signature signature{};
      std::memcpy(signature.data(), file.data() + file.size() - 64, 64);
      const std::span<const uint8_t> rest(file.data() + payload_at,
                                          file.size() - payload_at - 64);
      if (!VerifySignature(trusted_key, SignedMessage(header, rest), signature)) {
        return Corrupt(path, "the signature does not verify (the file was modified)");
      }
    }
    return Corrupt(path, "bad header");
  };

  SnapshotContents out;
  Reader h(header);
  h.Array(&out.store_id);
  out.version.version = h.U64();
  out.version.created_at = static_cast<int64_t>(h.U64());
  h.Array(&out.version.root);
  out.version.active_count = h.U64();
  h.Array(&out.version.audit_digest);
  if (!v1) {
    const uint8_t has_state = h.U8();
    if (has_state > 1) return bad_header();
    if (has_state == 1) {
      Digest32 state{};
      h.Array(&state);
      out.version.state_digest = state;
    }
  }
  h.Array(&out.version.signature);
  h.Array(&out.version.public_key);
  const std::string key_id = h.Field();
  const uint64_t payload_size = h.U64();
  if (!h.ok() || !h.done()) return bad_header();
  const size_t payload_at = header_at + header_size;
  // Compared by subtraction: a sum with a forged payload size could wrap
  // around and let the reads below run past the file.
  constexpr size_t kFixed = Aead::kNonceSize + 64;  // nonce and signature
  if (payload_size < Aead::kTagSize || file.size() < payload_at + kFixed ||
      payload_size != file.size() - payload_at - kFixed) {
    return Corrupt(path, "truncated or padded (its size does not match its header)");
  }
  const std::span<const uint8_t> sealed(file.data() + payload_at,
                                        Aead::kNonceSize + payload_size);
  Signature signature{};
  std::memcpy(signature.data(), file.data() + file.size() - 64, 64);

  const std::vector<uint8_t> signed_part = SignedMessage(header, sealed);
  if (!VerifySignature(trusted_key, signed_part, signature)) {
    // Another signer only when the file verifies under the key it names;
    // otherwise it was modified (a flipped bit in that key included).
    if (out.version.public_key != trusted_key &&
        VerifySignature(out.version.public_key, signed_part, signature)) {
      return Error(ErrorCode::kPermissionDenied,
                   "snapshot " + path + " is signed by another key than the trusted public key");
    }
    return Corrupt(path, "the signature does not verify (the file was modified)");
  }
  if (out.version.public_key != trusted_key) {
    return Corrupt(path, "the signer's public key in the header is not the trusted key");
  }
  if (key_id != key.id) {
    return Error(ErrorCode::kPermissionDenied, "snapshot " + path + " is encrypted with key " +
                                                   key_id + ", not with the key given (" +
                                                   key.id + ")");
  }
  std::vector<uint8_t> plain(sealed.size() - Aead::kOverhead);
  Aead aead(key);
  if (!aead.Open(sealed, header, plain).ok()) {
    return Corrupt(path, "the authentication tag does not verify (modified, or wrong key)");
  }
  if (!VerifySignature(trusted_key, VersionSigningMessage(out.store_id, out.version),
                       out.version.signature)) {
    return Corrupt(path, "the signature of version " + std::to_string(out.version.version) +
                             " does not verify");
  }

  Reader b(plain);
  const uint64_t list_count = b.U64();
  std::map<std::string, size_t> list_at;
  for (uint64_t i = 0; i < list_count && b.ok(); ++i) {
    ListInfo l;
    l.name = b.Field();
    l.enabled = b.U8() != 0;
    l.description = b.Field();
    list_at[l.name] = out.lists.size();
    out.lists.push_back(std::move(l));
  }
  const uint64_t entry_count = b.U64();
  if (!b.ok() || entry_count > plain.size() / 64) {
    Wipe(plain);
    return Corrupt(path, "bad contents");
  }
  out.entries.reserve(entry_count);
  std::vector<Digest32> active;
  StateDigester state;
  for (uint64_t i = 0; i < entry_count && b.ok(); ++i) {
    StoredEntry e;
    e.id = b.U64();
    const uint8_t type = b.U8();
    const uint8_t status = b.U8();
    b.Array(&e.value);
    b.Array(&e.salt);
    e.list = b.Field();
    e.category = b.Field();
    e.reference = b.Field();
    e.source = b.Field();
    e.added_by = b.Field();
    e.added_at = static_cast<int64_t>(b.U64());
    e.added_version = b.U64();
    auto list = list_at.find(e.list);
    if (type > 2 || status > 1 || list == list_at.end() || (!out.entries.empty() && out.entries.back().id >= e.id)) {
      Wipe(plain);
      return Corrupt(path, "bad entry " + std::to_string(i + 1));
    }
    e.type = static_cast<SignalType>(type);
    e.status = static_cast<EntryStatus>(status);
    ListInfo& l = out.lists[list->second];
    const Digest32 leaf = EntryLeafHash(e);
    state.AddEntry(e.id, leaf, e.status == EntryStatus::kActive, e.list);
    if (e.status == EntryStatus::kActive) {
      ++l.active;
      if (l.enabled) active.push_back(leaf);
    } else {
      ++l.disabled;
    }
    out.entries.push_back(std::move(e));
  }
  const bool complete = b.ok() && b.done();
  Wipe(plain);
  if (!complete) return Corrupt(path, "bad contents");
  if (active.size() != out.version.active_count || MerkleRoot(active) != out.version.root) {
    return Corrupt(path, "its entries do not give the signed root of version " +
                             std::to_string(out.version.version));
  }
  if (out.version.state_digest) {
    std::vector<std::pair<std::string, bool>> lists;
    for (const ListInfo& l : out.lists) lists.emplace_back(l.name, l.enabled);
    Result<Digest32> digest = state.Finish(std::move(lists));
    if (!digest.ok() || *digest != *out.version.state_digest) {
      return Corrupt(path, "its entries and lists do not give the signed state of version " +
                               std::to_string(out.version.version));
    }
  }
  return out;
}

}  // namespace bantay::matcher
