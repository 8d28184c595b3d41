#include "command_util.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <streambuf>
#include <thread>
#include <utility>

#include "bantay/client/file_reader.h"
#include "bantay/matcher/hash_list.h"
#include "bantay/matcher/snapshot.h"
#include "bantay/matcher/store_index.h"
#include "bantay/models/digest.h"

namespace bantay::client {
namespace {

bool IsApiKey(std::string_view key) {
  return key.size() == 64 && std::all_of(key.begin(), key.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                  (c >= 'A' && c <= 'F');
         });
}

}  // namespace

bool ParseInt(std::string_view s, int* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string RepeatedOption(const std::vector<std::string>& args,
                           std::initializer_list<std::string_view> single,
                           std::initializer_list<std::string_view> repeated) {
  auto has = [](const auto& names, std::string_view a) {
    return std::find(names.begin(), names.end(), a) != names.end();
  };
  std::vector<std::string_view> seen;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (has(repeated, a)) {
      ++i;  // its value
    } else if (has(single, a)) {
      if (has(seen, a)) return a + " is given twice; it takes one value";
      seen.push_back(a);
      ++i;
    }
  }
  return "";
}

bool FlushOutput(std::ostream& out, std::ostream& err,
                 std::string_view command) {
  out.flush();
  if (out) return true;
  err << "bantay " << command << ": cannot write standard output\n";
  return false;
}

std::string Trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

bool NeedsApostrophe(std::string_view s) {
  return !s.empty() && std::string_view("=+-@\t\r'").find(s.front()) != std::string_view::npos;
}

std::string CsvField(const std::string& field) {
  std::string s;
  s.reserve(field.size() + 1);
  if (NeedsApostrophe(field)) s += '\'';
  s += field;
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + '"';
}

namespace {

// An index with nothing to match gives a clean-looking result: a false
// negative, so it is refused.
Error EmptyIndex(const std::string& index_path, bool active) {
  return Error(ErrorCode::kInvalidArgument,
               "the index " + index_path + " has no " +
                   (active ? "active " : "") +
                   "entries; matching against it would find nothing");
}

// The identity of a store's or a snapshot's version.
void PutVersion(const std::array<uint8_t, 16>& store_id,
                const matcher::VersionRecord& version,
                boost::json::object* identity) {
  (*identity)["store_id"] = models::ToHex(store_id);
  (*identity)["version"] = version.version;
  (*identity)["root"] = models::ToHex(version.root);
  (*identity)["active"] = version.active_count;
}

}  // namespace

InspectingBuf::InspectingBuf(std::streambuf* source, Inspect inspect)
    : source_(source), inspect_(std::move(inspect)), buffer_(size_t{1} << 16) {}

void InspectingBuf::Drain() {
  while (underflow() != traits_type::eof()) {
  }
}

InspectingBuf::int_type InspectingBuf::underflow() {
  size_t n = 0;
  if (!ended_) {
    // sgetn of a whole buffer would wait on a FIFO until it is full; the
    // first byte is waited for, then what came with it is taken.
    std::streamsize got = 0;
    if (source_->sgetc() != traits_type::eof()) {
      std::streamsize want = static_cast<std::streamsize>(buffer_.size());
      const std::streamsize ready = source_->in_avail();
      if (ready > 0 && ready < want) want = ready;
      got = source_->sgetn(buffer_.data(), want);
    }
    const size_t read = got > 0 ? static_cast<size_t>(got) : 0;
    n = read > 0 ? inspect_({buffer_.data(), read}) : 0;
    ended_ = n < read || read == 0;
  }
  setg(buffer_.data(), buffer_.data(), buffer_.data() + n);
  return n == 0 ? traits_type::eof() : traits_type::to_int_type(buffer_[0]);
}

std::streamsize InspectingBuf::showmanyc() {
  return ended_ ? -1 : source_->in_avail();
}

LineLimitBuf::LineLimitBuf(std::streambuf* source, size_t max_line)
    : InspectingBuf(source,
                    [this](std::span<const char> bytes) {
                      return Inspect(bytes);
                    }),
      max_line_(max_line) {}

size_t LineLimitBuf::Inspect(std::span<const char> bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] == '\n') {
      ++line_;
      length_ = 0;
    } else if (++length_ > max_line_) {
      over_long_line_ = line_;
      return i;
    }
  }
  return bytes.size();
}

std::string StoreUrlWithoutPassword(const std::string& url) {
  if (!url.starts_with("postgres")) return url;
  std::string out = url.substr(0, url.find('?'));
  const size_t authority = out.find("://");
  if (authority == std::string::npos) return out;
  const size_t at = out.find('@', authority);
  if (at == std::string::npos || at > out.find('/', authority + 3)) return out;
  const size_t colon = out.find(':', authority + 3);
  if (colon != std::string::npos && colon < at) out.erase(colon, at - colon);
  return out;
}

Status LoadIndex(const std::string& index_path, const StoreOptions& keys,
                 matcher::HashIndex* index, boost::json::object* identity) {
  boost::json::object unused;
  if (identity == nullptr) identity = &unused;
  identity->clear();
  if (IsStoreUrl(index_path)) {
    Result<matcher::DataKey> key = keys.DataKey();
    if (!key.ok()) return key.error();
    matcher::StoreKeys store_keys;
    store_keys.data_keys.push_back(*key);
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(index_path, std::move(store_keys));
    if (!store.ok()) return store.error();
    Result<uint64_t> version = matcher::LoadIndexFromStore(**store, index);
    if (!version.ok()) return version.error();
    // The count of the version loaded (entries active, lists enabled).
    Result<matcher::VersionRecord> record = (*store)->Root(*version);
    if (!record.ok()) return record.error();
    if (record->active_count == 0) return EmptyIndex(index_path, true);
    *identity = {{"kind", "store"}};
    PutVersion((*store)->store_id(), *record, identity);
    return {};
  }
  if (matcher::IsSnapshotFile(index_path)) {
    Result<matcher::DataKey> key = keys.DataKey();
    if (!key.ok()) return key.error();
    Result<std::optional<matcher::PublicKey>> trusted =
        keys.PublicKey(/*required=*/true);
    if (!trusted.ok()) return trusted.error();
    Result<matcher::SnapshotContents> snap =
        matcher::ReadSnapshot(index_path, *key, **trusted);
    if (!snap.ok()) return snap.error();
    // Signed with the snapshot and checked by ReadSnapshot.
    if (snap->version.active_count == 0) return EmptyIndex(index_path, true);
    *identity = {{"kind", "snapshot"}};
    PutVersion(snap->store_id, snap->version, identity);
    return matcher::LoadIndexFromEntries(std::move(snap->entries), snap->lists,
                                         snap->version.version, index);
  }
  std::ifstream index_file(index_path);
  if (!index_file)
    return Error(ErrorCode::kNotFound, "cannot read index " + index_path);
  const std::string source =
      std::filesystem::path(index_path).filename().string();
  // The digest is of the very bytes parsed (the file may change meanwhile).
  models::DigestStream digest;
  InspectingBuf digesting(index_file.rdbuf(), [&](std::span<const char> bytes) {
    digest.Update({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
    return bytes.size();
  });
  std::istream parsed(&digesting);
  matcher::ParsedHashList list = matcher::ParseHashList(parsed, source, source);
  digesting.Drain();
  *identity = {{"kind", "list"},
               {"sha256", models::ToHex(digest.Finish().sha256)}};
  if (!list.errors.empty()) {
    // One line per bad line; the caller prefixes the first.
    std::string message;
    for (const auto& e : list.errors) {
      message += index_path + ":" + std::to_string(e.line) + ": " + e.message +
                 "\nbantay match: ";
    }
    return Error(ErrorCode::kInvalidArgument,
                 message + "the index has " +
                     std::to_string(list.errors.size()) +
                     " bad line(s); nothing matched");
  }
  if (list.entries.empty()) return EmptyIndex(index_path, false);
  return index->Add(std::move(list.entries));
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

Result<std::string> ReadApiKey(std::string path) {
  if (path.empty()) path = Env("BANTAY_API_KEY_FILE");
  if (!path.empty()) {
    Result<std::vector<uint8_t>> bytes =
        ReadWholeFile(path, /*max_bytes=*/4096);
    if (!bytes.ok()) {
      return Error(bytes.error().code(), "cannot read the API key file " +
                                             path + " (" +
                                             bytes.error().message() + ")");
    }
    std::string key = Trim(std::string(bytes->begin(), bytes->end()));
    std::fill(bytes->begin(), bytes->end(), 0);
    if (!IsApiKey(key)) {
      return Error(
          ErrorCode::kInvalidArgument,
          "the API key file " + path + " does not hold a key of 64 hex digits");
    }
    return key;
  }
  std::string key = Trim(Env("BANTAY_API_KEY"));
  if (!key.empty()) {
    if (!IsApiKey(key)) {
      return Error(ErrorCode::kInvalidArgument,
                   "BANTAY_API_KEY is not a key of 64 hex digits");
    }
    return key;
  }
  return Error(
      ErrorCode::kInvalidArgument,
      "no API key: give --api-key-file FILE (or set BANTAY_API_KEY_FILE or "
      "BANTAY_API_KEY)");
}

Result<HttpResponse> SendWhileBusy(
    const std::function<Result<HttpResponse>()>& send) {
  for (int attempt = 0;; ++attempt) {
    Result<HttpResponse> response = send();
    if (!response.ok() ||
        (response->status != 429 && response->status != 503) || attempt >= 30) {
      return response;
    }
    int wait_s = 1;
    ParseInt(response->Header("Retry-After"), &wait_s);
    std::this_thread::sleep_for(
        std::chrono::seconds(std::clamp(wait_s, 1, 10)));
  }
}

std::string_view ImageContentType(models::ImageFormat format) {
  switch (format) {
    case models::ImageFormat::kJpeg:
      return "image/jpeg";
    case models::ImageFormat::kPng:
      return "image/png";
    case models::ImageFormat::kWebp:
      return "image/webp";
    case models::ImageFormat::kBmp:
      return "image/bmp";
    case models::ImageFormat::kTiff:
      return "image/tiff";
    case models::ImageFormat::kUnknown:
      break;
  }
  // Sent anyway: the server is the one that says what it takes (415).
  return "application/octet-stream";
}

boost::json::object ErrorObject(std::string_view code,
                                std::string_view message) {
  return boost::json::object{{"code", code}, {"message", message}};
}

bool ParseInt64(std::string_view s, int64_t* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size();
}

void ClientFilesFromEnvironment(ClientOptions* options) {
  if (options->ca_file.empty()) options->ca_file = Env("BANTAY_CA_FILE");
  if (options->client_cert_file.empty()) {
    options->client_cert_file = Env("BANTAY_CLIENT_CERT_FILE");
  }
  if (options->client_key_file.empty()) {
    options->client_key_file = Env("BANTAY_CLIENT_KEY_FILE");
  }
}

namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void OnStopSignal(int sig) { g_stop_signal.store(sig); }

}  // namespace

StopSignals::StopSignals() {
  g_stop_signal.store(0);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = OnStopSignal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

int StopSignalReceived() { return g_stop_signal.load(); }

}  // namespace bantay::client
