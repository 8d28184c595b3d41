// Pieces shared by the `bantay` commands: number and text parsing, the
// environment, loading an index for offline matching, the API key and the
// server connection options, and error objects in the JSON output.
#ifndef BANTAY_CLIENT_COMMAND_UTIL_H_
#define BANTAY_CLIENT_COMMAND_UTIL_H_

#include <signal.h>

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <ostream>
#include <span>
#include <streambuf>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/client/http_client.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/models/image_probe.h"
#include "bantay/models/status.h"
#include "store_options.h"

namespace bantay::client {

// Whole-string decimal integers.
bool ParseInt(std::string_view s, int* value);
bool ParseInt64(std::string_view s, int64_t* value);

// The usage message for the first option of `single` given more than once
// in args ("--index is given twice; it takes one value"), or "" when there
// is none. `single` and `repeated` are all the options of a command that
// take a value: those of `single` once at most (given twice, the second
// would silently replace the first, and an examiner would believe both were
// used), those of `repeated` as often as wanted (each value is used). Reads
// args as the commands do: an option's value is the next argument, and "--"
// ends the options. Every command checks its arguments with it first.
std::string RepeatedOption(
    const std::vector<std::string>& args,
    std::initializer_list<std::string_view> single,
    std::initializer_list<std::string_view> repeated = {});

// Without leading and trailing blanks (space, tab, CR, LF).
std::string Trim(const std::string& s);

// A CSV cell a spreadsheet would run as a formula (OWASP, "CSV Injection")
// starts with one of = + - @ TAB CR; a file name or link target on seized
// media is chosen by whoever made it. Such a cell gets a leading
// apostrophe, and so does one that starts with an apostrophe, so that
// reading it back (taking one apostrophe off when NeedsApostrophe holds for
// the rest) is unambiguous.
bool NeedsApostrophe(std::string_view s);
// RFC 4180: a field holding a comma, quote or line break is quoted;
// neutralised first (NeedsApostrophe).
std::string CsvField(const std::string& field);

// Flushes the command's standard output. False, with "bantay COMMAND: cannot
// write standard output" on err, when a write to it failed (a full disk,
// /dev/full): what the command printed is lost, so it must not exit 0.
bool FlushOutput(std::ostream& out, std::ostream& err,
                 std::string_view command);

// The variable's value, or "" when unset.
std::string Env(const char* name);

// Loads a hash-list file, a store (sqlite:PATH or postgresql://...) or a
// signed snapshot (verified against the trusted public key before use) into
// an empty index. Errors carry a message for the user; an index without an
// active entry (an empty list, a store or snapshot whose entries are all
// removed or disabled) is kInvalidArgument: matching against it would give
// a clean result that means nothing.
//
// When `identity` is given, it is set to what identifies the index loaded
// (for a scan report's provenance): "kind" list, store or snapshot; for a
// list, the "sha256" of the bytes parsed; for a store or a snapshot, the
// "store_id", the "version" loaded, its signed Merkle "root" and its
// "active" entry count.
Status LoadIndex(const std::string& index_path, const StoreOptions& keys,
                 matcher::HashIndex* index,
                 boost::json::object* identity = nullptr);

// A stream buffer that reads another one in chunks and shows each chunk to
// `inspect`, which returns how many of its bytes to pass on: fewer ends the
// stream after them (and `inspect` is not called again). For what must see
// every byte read: a digest of the bytes parsed, a limit on lines. A chunk
// is what the source holds or can give without waiting (up to 64 KiB), so
// that lines from a FIFO or a terminal are passed on as they come; what
// the source can give without waiting, in_avail() tells.
class InspectingBuf : public std::streambuf {
 public:
  using Inspect = std::function<size_t(std::span<const char>)>;
  InspectingBuf(std::streambuf* source, Inspect inspect);
  // Reads (and shows) the rest of the source, to its end or until `inspect`
  // ends the stream.
  void Drain();

 protected:
  int_type underflow() override;
  std::streamsize showmanyc() override;

 private:
  std::streambuf* source_;
  Inspect inspect_;
  std::vector<char> buffer_;
  bool ended_ = false;
};

// The longest line of a line-based input a command reads whole (a hash list
// for `bantay index import`, a --pdq-file for `bantay match`), without its
// line break: a record is at most about 900 bytes (a value, and three texts
// of 256).
inline constexpr size_t kMaxInputLine = 64 * 1024;

// Passes another stream buffer on up to its first line longer than
// `max_line` bytes (without the line break), and ends the stream there,
// `max_line` bytes into that line: what reads lines whole (std::getline)
// from input that may have no line break at all (/dev/zero through a pipe,
// a damaged file) then never holds more than that of a line.
class LineLimitBuf : public InspectingBuf {
 public:
  explicit LineLimitBuf(std::streambuf* source,
                        size_t max_line = kMaxInputLine);
  // The number (from 1) of the line over the limit, once the stream has
  // ended at it; else 0.
  int64_t over_long_line() const { return over_long_line_; }

 private:
  size_t Inspect(std::span<const char> bytes);

  size_t max_line_;
  int64_t line_ = 1;
  size_t length_ = 0;
  int64_t over_long_line_ = 0;
};

// A store URL without the password it may carry (a PostgreSQL URL's
// user:password@ and its query, which may hold password=...).
std::string StoreUrlWithoutPassword(const std::string& url);

// The API key from the file (else BANTAY_API_KEY_FILE, else BANTAY_API_KEY):
// 64 hex digits. The key is never part of a message.
Result<std::string> ReadApiKey(std::string path);

// Fills the CA and client-certificate files that were not given from
// BANTAY_CA_FILE, BANTAY_CLIENT_CERT_FILE and BANTAY_CLIENT_KEY_FILE.
void ClientFilesFromEnvironment(ClientOptions* options);

// Calls `send` (one request) again while the server answers 429 or 503
// (busy, rate-limited), waiting the Retry-After seconds between tries (1 to
// 10; 1 without the header), at most 30 times; returns the first other
// answer or error, or the last busy answer. Shared by bantay scan and
// bantay match, which send to the same server.
Result<HttpResponse> SendWhileBusy(
    const std::function<Result<HttpResponse>()>& send);

// The Content-Type the server expects for an image of that format.
std::string_view ImageContentType(models::ImageFormat format);

// {"code": code, "message": message}
boost::json::object ErrorObject(std::string_view code,
                                std::string_view message);

// SIGINT and SIGTERM ask a long command (scan, stream) to stop: while a
// StopSignals lives, either one sets StopSignalReceived(); a second one
// kills the process (the handlers reset themselves). The handlers before it
// come back when it is destroyed.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_;
  struct sigaction old_term_;
};

// The signal that asked to stop, or 0.
int StopSignalReceived();

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_COMMAND_UTIL_H_
