// `bantay match`: matching PDQ hashes offline against a hash-list file,
// store or snapshot (with the same index the server uses), or hashes and
// images against a bantay-server.
#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/client/file_reader.h"
#include "bantay/client/http_client.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/hash_list.h"
#include "bantay/matcher/import_formats.h"
#include "bantay/matcher/snapshot.h"
#include "bantay/matcher/store_index.h"
#include "bantay/models/image_probe.h"
#include "bantay/models/pdq.h"
#include "bantay/models/text.h"
#include "command_util.h"
#include "store_options.h"
#include "video_match_command.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using matcher::Match;

constexpr std::string_view kMatchUsage =
    R"(Usage: bantay match --index (LIST | STORE-URL | SNAPSHOT) [--radius R]
                    [--dihedral] [--threads N] (--pdq HEX | --pdq-file FILE)
       bantay match --server URL [--api-key-file FILE] [--ca FILE]
                    [--client-cert FILE --client-key FILE] [--radius R]
                    [--dihedral] (--pdq HEX | --pdq-file FILE | IMAGE...)
       bantay match (--video FILE | --video-hashes FILE) --vpdq REF...
                    (whole videos, vPDQ: see bantay match --video --help)

With --index, matches PDQ hashes exactly (every entry within the radius, none
missed) against
  - a hash list: a file of one entry a line, `[TYPE] VALUE [REFERENCE]`
    (ThreatExchange/HMA local_file style: `pdq <hex>` or bare hex, which
    must set 128 of its 256 bits as PDQ hashes do, else the list is refused:
    write `sha256 <hex>` for digests; REFERENCE defaults to <file>:<line>;
    the list is named after the file);
  - a store (sqlite:PATH or postgresql://...), opened with --key;
  - a snapshot file from `bantay index export`, opened with --key and
    verified against --public-key before use.
Disabled entries and lists do not match. Each query prints one JSON line, in
input order:
  {"query":"<hex>","matches":[{"list":"...","category":"...","ref":"...",
   "distance":d,"variant":"original"}]}
with matches sorted by distance, then reference. A bad --pdq gives
{"query":"...","error":"..."} and the run goes on.

A --pdq-file holds lines of the hash-list format above (what bantay index
import reads): `[TYPE] HASH [REFERENCE]`, TYPE pdq (when absent), md5 or
sha256 (matched exactly); blank lines and lines starting with # give no
output. Each other line gives one output line that starts with its line
number, then the hash (in lower case), its type and its reference when the
line gives one:
  {"line":3,"query":"<hex>","signal":"pdq","ref":"case-9","matches":[...]}
A bad line gives {"line":N,"query":"<the line>","error":"line N: ..."}
and the run goes on. The file is read, matched and printed a batch of lines
at a time (the lines of a FIFO or a terminal as they come), and nothing of
a line is kept once it is printed: a list of any length, or a stream that
never ends, is answered in bounded memory. A line over 65536 bytes ends the
run (exit status 2): the lines before it are answered, none after.

With --server, asks a bantay-server (POST /v1/match) over one kept-alive
HTTPS connection whose certificate is verified (against --ca when given, else
the system's trust store). Images are sent as they are, with their type told
from their content; hashes as {"pdq":"<hex>"} (or "md5", "sha256"). Each
query prints one JSON line, in input order: the server's answer after the
query (and, for a --pdq-file, after "line", "signal" and "ref" as above),
  {"query":"<hex>","match":false,"matches":[],...}  or
  {"path":"<file>","match":true,"matches":[...],...},
an error answer as
  {"query"|"path":...,"status":N,"error":{"code":"...","message":"..."}},
and a hash or file that could not be sent as
  {"query"|"path":...,"error":{"code":"...","message":"..."}}.
The API key is read from a file, never given on the command line.

Options:
  --index WHAT      the hash list, store or snapshot
  --key FILE        the data key of a store or snapshot (env BANTAY_DATA_KEY_FILE
                    or BANTAY_DATA_KEY)
  --public-key FILE the trusted public key a snapshot must be signed with
                    (env BANTAY_PUBLIC_KEY_FILE)
  --threads N       match on N threads (default 1); output order is kept
  --server URL      the server, https://HOST[:PORT] (http:// only for a server
                    that allows plain HTTP)
  --api-key-file FILE  the API key, 64 hex digits (env BANTAY_API_KEY_FILE, or
                    BANTAY_API_KEY with the key itself)
  --ca FILE         PEM certificates to trust for the server (env BANTAY_CA_FILE)
  --client-cert FILE, --client-key FILE
                    a client certificate and its key (PEM), for servers that
                    require mutual TLS (env BANTAY_CLIENT_CERT_FILE,
                    BANTAY_CLIENT_KEY_FILE)
  --radius R        match distance, 0..64 (default 31, the PDQ threshold; the
                    server takes it from lab keys only)
  --dihedral        also match the 8 rotations and flips of each query; from a
                    hash alone they are approximated (see bantay hash
                    --dihedral for the exact ones from an image)
  --pdq HEX         one query
  --pdq-file FILE   one query a line, as above; - for standard input
  IMAGE...          image files (--server only; after -- when a name starts
                    with -)
  -h, --help        this text

Exit status: 0 every query valid (--index) or answered 200 (--server); 1 some
query line was bad or got an error answer; 2 usage error, an unreadable or
invalid index, a --pdq-file that cannot be read to its end (a line over
65536 bytes, a read error), or a server that cannot be reached.
)";

struct OutputLine {
  std::string text;
  bool bad = false;
};

// One query: from --pdq, or one hash line of a --pdq-file.
struct Query {
  int64_t line = 0;  // 1-based line number in the --pdq-file; 0 for --pdq
  // The hash in lower case; for --pdq and bad lines, the text as given.
  std::string query;
  matcher::SignalType type = matcher::SignalType::kPdq;
  std::array<uint8_t, 32> value{};  // as matcher::IndexEntry::value
  std::string reference;            // as given on the line; "" when none
  std::string error;                // the line is bad when not empty
};

Query PdqQuery(const std::string& hex) {
  Query q;
  q.query = hex;
  if (Result<models::Hash256> hash = models::Hash256::FromHex(hex); hash.ok()) {
    q.value = hash->bytes();
  } else {
    q.error = hash.error().message();
  }
  return q;
}

// The members of an output line that say which query it answers:
// "line" (for a --pdq-file), "query", and for a valid line its "signal"
// and the "ref" it gives.
json::object QueryObject(const Query& q) {
  json::object o;
  if (q.line > 0) o["line"] = q.line;
  o["query"] = q.query;
  if (q.line > 0 && q.error.empty()) {
    o["signal"] = matcher::SignalTypeName(q.type);
    if (!q.reference.empty()) o["ref"] = q.reference;
  }
  return o;
}

// One output line for one query.
OutputLine MatchLine(const matcher::IndexSnapshot& snap, const Query& query,
                     int radius, bool dihedral) {
  json::object o = QueryObject(query);
  if (!query.error.empty()) {
    o["error"] = query.error;
    return {json::serialize(o), true};
  }
  std::vector<Match> matches;
  if (query.type != matcher::SignalType::kPdq) {
    snap.MatchExact(query.type, query.value.data(), &matches);
  } else if (dihedral) {
    snap.MatchPdqDihedral(
        models::DihedralFromHash(models::Hash256(query.value)), radius,
        &matches);
  } else {
    snap.MatchPdq(models::Hash256(query.value), radius, &matches);
  }
  std::sort(matches.begin(), matches.end(), [](const Match& a, const Match& b) {
    return a.distance != b.distance ? a.distance < b.distance
                                    : a.reference < b.reference;
  });
  json::array list;
  for (const Match& m : matches) {
    list.push_back(json::object{{"list", m.list},
                                {"category", m.category},
                                {"ref", m.reference},
                                {"distance", m.distance},
                                {"variant", models::DihedralName(m.variant)}});
  }
  o["matches"] = std::move(list);
  return {json::serialize(o), false};
}

// The queries of a --pdq-file (or, for "-", standard input), read a batch
// at a time and forgotten once answered, so that a list of any length, or
// a FIFO that never ends, is answered in bounded memory. The lines are those
// of a hash list (`bantay index import`'s local_file format, parsed by the
// same code): `[TYPE] HASH [REFERENCE]`, TYPE pdq (when absent), md5 or
// sha256; blank lines and '#' comments give no query. A bad line gives a
// query with its error, and the run goes on.
class QueryReader {
 public:
  QueryReader() = default;
  QueryReader(const QueryReader&) = delete;
  QueryReader& operator=(const QueryReader&) = delete;

  Status Open(const std::string& path) {
    path_ = path == "-" ? "standard input" : path;
    std::istream* in = &std::cin;
    if (path != "-") {
      file_.open(path, std::ios::binary);
      if (!file_) return Error(ErrorCode::kNotFound, "cannot read " + path);
      in = &file_;
    }
    limited_.emplace(in->rdbuf());
    lines_.emplace(&*limited_);
    return {};
  }

  // The queries of the next lines: kBatchLines lines at most, fewer when
  // the input has no more ready (a FIFO, a terminal), so that the lines it
  // gave are answered before the next are waited for. False at the end of
  // the input. Errors: kTooLarge for a line over kMaxInputLine bytes,
  // kIo for a failed read; the lines before it are in the earlier batches.
  Result<bool> Next(std::vector<Query>* batch) {
    batch->clear();
    std::vector<std::string> lines;
    size_t bytes = 0;
    for (std::string line; lines.size() < kBatchLines && bytes < kBatchBytes &&
                           std::getline(*lines_, line);) {
      if (lines_->eof() && limited_->over_long_line() > 0) break;  // cut off
      bytes += line.size();
      lines.push_back(std::move(line));
      if (lines_->rdbuf()->in_avail() <= 0) break;
    }
    if (limited_->over_long_line() > 0 && lines.empty()) {
      return Error(ErrorCode::kTooLarge,
                   path_ + ":" + std::to_string(limited_->over_long_line()) +
                       ": a line longer than " +
                       std::to_string(kMaxInputLine) +
                       " bytes (no hash line is near that); the lines before "
                       "it are answered, none after");
    }
    if (lines_->bad()) {
      return Error(ErrorCode::kIo, "reading " + path_ + " failed");
    }
    if (lines.empty()) return false;
    const int64_t first = first_line_;
    first_line_ += static_cast<int64_t>(lines.size());
    if (Status parsed = Parse(lines, first, batch); !parsed.ok()) {
      return parsed.error();
    }
    return true;
  }

 private:
  // Lines of text (1 MiB at most) parsed and answered at a time.
  static constexpr size_t kBatchLines = 4096;
  static constexpr size_t kBatchBytes = size_t{1} << 20;

  // The queries of `lines`, the first of which is line `first` of the file.
  static Status Parse(const std::vector<std::string>& lines, int64_t first,
                      std::vector<Query>* queries) {
    // After the first batch a blank line comes first: the parser takes a
    // byte order mark off its first line only, which must be the file's.
    const int skipped = first == 1 ? 0 : 1;
    std::string text(static_cast<size_t>(skipped), '\n');
    for (const std::string& line : lines) {
      text += line;
      text += '\n';
    }
    matcher::ImportOptions options;
    options.default_list = "query";
    // Queries of a --pdq-file: bare values are PDQ hashes, taken as given
    // (the bit-count check is for lists, where a mistyped digest would be
    // stored; a query that is not a real PDQ hash only matches nothing).
    options.bare_type = matcher::SignalType::kPdq;
    // A reference the line does not give defaults to "<source_name>:<line>";
    // with a blank in the name no given reference (one token, blanks split
    // tokens) can equal it, so a default is told from a given one.
    options.source_name = " ";
    std::istringstream in(text);
    Result<matcher::ParsedImport> parsed = matcher::ParseImport(in, options);
    if (!parsed.ok()) return parsed.error();
    auto number = [&](int parsed_line) {
      return first + parsed_line - 1 - skipped;
    };
    // Records and errors are each in line order; merged, they are the
    // non-blank, non-comment lines in file order.
    auto record = parsed->records.begin();
    auto bad = parsed->errors.begin();
    while (record != parsed->records.end() || bad != parsed->errors.end()) {
      Query q;
      if (bad == parsed->errors.end() ||
          (record != parsed->records.end() && record->line < bad->line)) {
        q.line = number(record->line);
        q.type = record->type;
        q.value = record->value;
        q.query = models::Hash256(q.value).ToHex();
        if (q.type == matcher::SignalType::kMd5) q.query.resize(32);
        if (record->reference !=
            options.source_name + ":" + std::to_string(record->line)) {
          q.reference = std::move(record->reference);
        }
        ++record;
      } else {
        q.line = number(bad->line);
        q.query = models::PrintableText(
            Trim(lines[static_cast<size_t>(bad->line - 1 - skipped)]));
        q.error = "line " + std::to_string(q.line) + ": " + bad->message;
        ++bad;
      }
      queries->push_back(std::move(q));
    }
    return {};
  }

  std::string path_;
  std::ifstream file_;
  std::optional<LineLimitBuf> limited_;
  std::optional<std::istream> lines_;
  int64_t first_line_ = 1;
};

// The output line of one server answer: the query, then the answer's
// fields, or the status and the error.
OutputLine AnswerLine(json::object line, const HttpResponse& response) {
  boost::system::error_code ec;
  json::value answer = json::parse(response.body, ec);
  const json::object* fields = !ec ? answer.if_object() : nullptr;
  if (response.status == 200 && fields != nullptr) {
    for (const auto& field : *fields) line[field.key()] = field.value();
    return {json::serialize(line), false};
  }
  line["status"] = response.status;
  const json::value* error =
      fields != nullptr ? fields->if_contains("error") : nullptr;
  if (error != nullptr && error->is_object()) {
    line["error"] = *error;
  } else if (response.status == 200) {
    line["error"] =
        ErrorObject("bad_answer", "the server's answer is not a JSON object");
  } else {
    line["error"] = ErrorObject(
        "bad_answer", "HTTP status " + std::to_string(response.status) +
                          " without a Bantay error");
  }
  return {json::serialize(line), true};
}

struct ServerMatchOptions {
  ClientOptions client;
  std::string api_key_file;
  std::string target;  // /v1/match?...
};

// The queries, a batch at a time, to `answer`: the --pdq one when `reader`
// is null, else those of the --pdq-file. False when `answer` returned false
// (it says why on err) or the --pdq-file could not be read on (its message
// on err).
bool ForEachBatch(const std::string& pdq, QueryReader* reader,
                  std::ostream& err,
                  const std::function<bool(const std::vector<Query>&)>& answer) {
  if (reader == nullptr) return answer({PdqQuery(pdq)});
  std::vector<Query> batch;
  for (;;) {
    Result<bool> more = reader->Next(&batch);
    if (!more.ok()) {
      err << "bantay match: " << more.error().message() << "\n";
      return false;
    }
    if (!*more) return true;
    if (!answer(batch)) return false;
  }
}

// Sends each query (the --pdq one or those of `reader`, as ForEachBatch) and
// each image file, prints each answer as soon as it comes. Transport
// failures end the run (exit 2): the server cannot be reached.
int MatchOnServer(ServerMatchOptions options,
                  const std::optional<std::string>& pdq, QueryReader* reader,
                  const std::vector<std::string>& paths, std::ostream& out,
                  std::ostream& err) {
  Result<std::string> key = ReadApiKey(options.api_key_file);
  if (!key.ok()) {
    err << "bantay match: " << key.error().message() << "\n";
    return kExitUsage;
  }
  options.client.api_key = std::move(*key);
  Result<std::unique_ptr<HttpClient>> client =
      HttpClient::Connect(std::move(options.client));
  if (!client.ok()) {
    err << "bantay match: " << client.error().message() << "\n";
    return kExitUsage;
  }
  bool any_bad = false;
  auto print = [&](const OutputLine& line) {
    any_bad |= line.bad;
    out << line.text << '\n';
  };
  auto failed = [&](const Error& error) {
    out.flush();
    err << "bantay match: " << error.message() << "\n";
    return kExitUsage;
  };
  std::optional<Error> unreachable;
  auto send = [&](const std::vector<Query>& queries) {
    for (const Query& query : queries) {
      json::object line = QueryObject(query);
      if (!query.error.empty()) {
        line["error"] = ErrorObject(ErrorCodeName(ErrorCode::kInvalidArgument),
                                    query.error);
        print({json::serialize(line), true});
        continue;
      }
      const std::string body = json::serialize(
          json::object{{matcher::SignalTypeName(query.type), query.query}});
      Result<HttpResponse> response = SendWhileBusy([&] {
        return (*client)->Send("POST", options.target, "application/json",
                               body);
      });
      if (!response.ok()) {
        unreachable = response.error();
        return false;
      }
      print(AnswerLine(std::move(line), *response));
    }
    return FlushOutput(out, err, "match");
  };
  if ((pdq || reader != nullptr) &&
      !ForEachBatch(pdq.value_or(""), reader, err, send)) {
    if (unreachable) return failed(*unreachable);
    return kExitUsage;
  }
  for (const std::string& path : paths) {
    json::object line{{"path", path}};
    Result<std::vector<uint8_t>> bytes = ReadWholeFile(path);
    if (!bytes.ok()) {
      line["error"] = ErrorObject(ErrorCodeName(bytes.error().code()),
                                  bytes.error().message());
      print({json::serialize(line), true});
      continue;
    }
    Result<HttpResponse> response = SendWhileBusy([&] {
      return (*client)->Send(
          "POST", options.target,
          ImageContentType(models::DetectImageFormat(*bytes)), *bytes);
    });
    if (!response.ok()) return failed(response.error());
    print(AnswerLine(std::move(line), *response));
  }
  if (!FlushOutput(out, err, "match")) return kExitUsage;
  return any_bad ? kExitSomeFailed : kExitOk;
}

}  // namespace

int RunMatchCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  if (IsVideoMatch(args)) return RunVideoMatch(args, out, err);
  if (std::string repeated = RepeatedOption(
          args, {"--index", "--server", "--api-key-file", "--ca",
                 "--client-cert", "--client-key", "--key", "--public-key",
                 "--pdq", "--pdq-file", "--radius", "--threads"});
      !repeated.empty()) {
    err << "bantay match: " << repeated << "\n";
    return kExitUsage;
  }
  std::string index_path, pdq, pdq_file;
  bool have_pdq = false, have_file = false, dihedral = false,
       have_radius = false;
  int radius = models::kPdqMatchThreshold, threads = 1;
  StoreOptions keys;
  ServerMatchOptions server;
  std::vector<std::string> paths;
  // The first option given that belongs to the other mode, for the message.
  std::string index_only_option, server_only_option;
  bool options_ended = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended || (!a.starts_with("-") && !a.empty())) {
      paths.push_back(a);
      continue;
    }
    if (a == "--key" || a == "--public-key") {
      bool missing = false;
      keys.Parse(args, &i, &missing);
      if (missing) {
        err << "bantay match: " << a << " needs a value\n";
        return kExitUsage;
      }
      if (index_only_option.empty()) index_only_option = a;
      continue;
    }
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    auto server_value = [&](std::string* target) {
      if (!value(target)) return false;
      if (server_only_option.empty()) server_only_option = a;
      return true;
    };
    std::string text;
    if (a == "-h" || a == "--help") {
      out << kMatchUsage;
      return kExitOk;
    } else if (a == "--") {
      options_ended = true;
    } else if (a == "--index" && value(&index_path)) {
    } else if (a == "--server" && value(&server.client.url)) {
    } else if (a == "--api-key-file" && server_value(&server.api_key_file)) {
    } else if (a == "--ca" && server_value(&server.client.ca_file)) {
    } else if (a == "--client-cert" &&
               server_value(&server.client.client_cert_file)) {
    } else if (a == "--client-key" &&
               server_value(&server.client.client_key_file)) {
    } else if (a == "--pdq" && value(&pdq)) {
      have_pdq = true;
    } else if (a == "--pdq-file" && value(&pdq_file)) {
      have_file = true;
    } else if (a == "--dihedral") {
      dihedral = true;
    } else if (a == "--radius" && value(&text)) {
      if (!ParseInt(text, &radius) || radius < 0 || radius > 64) {
        err << "bantay match: --radius must be an integer from 0 to 64\n";
        return kExitUsage;
      }
      have_radius = true;
    } else if (a == "--threads" && value(&text)) {
      if (!ParseInt(text, &threads) || threads < 1 || threads > 256) {
        err << "bantay match: --threads must be an integer from 1 to 256\n";
        return kExitUsage;
      }
      if (index_only_option.empty()) index_only_option = a;
    } else {
      err << "bantay match: unknown or incomplete option '" << a << "'\n"
          << kMatchUsage;
      return kExitUsage;
    }
  }

  if (!server.client.url.empty()) {
    if (!index_path.empty()) {
      err << "bantay match: give either --index or --server, not both\n"
          << kMatchUsage;
      return kExitUsage;
    }
    if (!index_only_option.empty()) {
      err << "bantay match: " << index_only_option
          << " applies to --index only\n";
      return kExitUsage;
    }
    const int sources = int{have_pdq} + int{have_file} + int{!paths.empty()};
    if (sources != 1) {
      err << "bantay match: give --server and exactly one of --pdq, --pdq-file "
             "and image "
             "files\n"
          << kMatchUsage;
      return kExitUsage;
    }
    QueryReader reader;
    if (have_file) {
      if (Status opened = reader.Open(pdq_file); !opened.ok()) {
        err << "bantay match: " << opened.error().message() << "\n";
        return kExitUsage;
      }
    }
    ClientFilesFromEnvironment(&server.client);
    server.target = "/v1/match";
    std::string query_string;
    if (dihedral) query_string += "&dihedral=true";
    if (have_radius) query_string += "&radius=" + std::to_string(radius);
    if (!query_string.empty()) server.target += "?" + query_string.substr(1);
    return MatchOnServer(
        std::move(server),
        have_pdq ? std::optional<std::string>(pdq) : std::nullopt,
        have_file ? &reader : nullptr, paths, out, err);
  }
  if (!paths.empty()) {
    err << "bantay match: unknown or incomplete option '" << paths.front()
        << "'\n"
        << kMatchUsage;
    return kExitUsage;
  }
  if (!server_only_option.empty()) {
    err << "bantay match: " << server_only_option
        << " applies to --server only\n";
    return kExitUsage;
  }
  if (index_path.empty() || have_pdq == have_file) {
    err << "bantay match: give --index and exactly one of --pdq and "
           "--pdq-file\n"
        << kMatchUsage;
    return kExitUsage;
  }

  keys.FromEnvironment();
  matcher::HashIndex index;
  if (Status loaded = LoadIndex(index_path, keys, &index); !loaded.ok()) {
    err << "bantay match: " << loaded.error().message() << "\n";
    return kExitUsage;
  }
  index.MergeNow();
  index.WaitForMerge();
  const auto snap = index.Snapshot();

  QueryReader reader;
  if (have_file) {
    if (Status opened = reader.Open(pdq_file); !opened.ok()) {
      err << "bantay match: " << opened.error().message() << "\n";
      return kExitUsage;
    }
  }
  // Each batch is matched on the threads, then printed in input order.
  bool any_bad = false;
  std::vector<OutputLine> lines;
  auto answer = [&](const std::vector<Query>& queries) {
    lines.assign(queries.size(), OutputLine{});
    auto work = [&](size_t first, size_t step) {
      for (size_t i = first; i < queries.size(); i += step) {
        lines[i] = MatchLine(*snap, queries[i], radius, dihedral);
      }
    };
    const size_t n = std::min(static_cast<size_t>(threads), queries.size());
    std::vector<std::thread> pool;
    for (size_t t = 1; t < n; ++t) pool.emplace_back(work, t, n);
    work(0, n);
    for (auto& t : pool) t.join();
    for (const OutputLine& line : lines) {
      any_bad |= line.bad;
      out << line.text << '\n';
    }
    return FlushOutput(out, err, "match");
  };
  if (!ForEachBatch(pdq, have_file ? &reader : nullptr, err, answer)) {
    return kExitUsage;
  }
  return any_bad ? kExitSomeFailed : kExitOk;
}

}  // namespace bantay::client
