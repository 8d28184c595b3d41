// `bantay match`: offline matching of PDQ hashes against a hash-list file,
// with the same index the server uses.
#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "bantay/client/cli.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/hash_list.h"
#include "bantay/matcher/snapshot.h"
#include "bantay/matcher/store_index.h"
#include "bantay/models/pdq.h"
#include "store_options.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using matcher::Match;

constexpr std::string_view kMatchUsage =
    R"(Usage: bantay match --index (LIST | STORE-URL | SNAPSHOT) [--radius R]
                    [--dihedral] [--threads N] (--pdq HEX | --pdq-file FILE)

Matches PDQ hashes exactly (every entry within the radius, none missed)
against
  - a hash list: a file of one entry a line, `[TYPE] VALUE [REFERENCE]`
    (ThreatExchange/HMA local_file style: `pdq <hex>` or bare hex; REFERENCE
    defaults to <file>:<line>; the list is named after the file);
  - a store (sqlite:PATH or postgresql://...), opened with --key;
  - a snapshot file from `bantay index export`, opened with --key and
    verified against --public-key before use.
Disabled entries and lists do not match. Each query prints one JSON line, in
input order:
  {"query":"<hex>","matches":[{"list":"...","category":"...","ref":"...",
   "distance":d,"variant":"original"}]}
with matches sorted by distance, then reference. A bad query line gives
{"query":"...","error":"..."} and the run goes on.

Options:
  --index WHAT      the hash list, store or snapshot (required)
  --key FILE        the data key of a store or snapshot (env BANTAY_DATA_KEY_FILE
                    or BANTAY_DATA_KEY)
  --public-key FILE the trusted public key a snapshot must be signed with
                    (env BANTAY_PUBLIC_KEY_FILE)
  --radius R        match distance, 0..64 (default 31, the PDQ threshold)
  --dihedral        also match the 8 rotations and flips of each query; from a
                    hash alone they are approximated (see bantay hash
                    --dihedral for the exact ones from an image)
  --threads N       match on N threads (default 1); output order is kept
  --pdq HEX         one query
  --pdq-file FILE   one query a line; - for standard input
  -h, --help        this text

Exit status: 0 every query valid, 1 some query line was bad, 2 usage error or
an unreadable or invalid index.
)";

bool ParseInt(std::string_view s, int* value) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *value);
  return ec == std::errc() && end == s.data() + s.size();
}

std::string Trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

struct OutputLine {
  std::string text;
  bool bad = false;
};

// One output line for one query line.
OutputLine MatchLine(const matcher::IndexSnapshot& snap, const std::string& query,
                     int radius, bool dihedral) {
  json::object o;
  o["query"] = query;
  Result<models::Hash256> hash = models::Hash256::FromHex(query);
  if (!hash.ok()) {
    o["error"] = hash.error().message();
    return {json::serialize(o), true};
  }
  std::vector<Match> matches;
  if (dihedral) {
    snap.MatchPdqDihedral(models::DihedralFromHash(*hash), radius, &matches);
  } else {
    snap.MatchPdq(*hash, radius, &matches);
  }
  std::sort(matches.begin(), matches.end(), [](const Match& a, const Match& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.reference < b.reference;
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

// Loads a hash-list file, a store or a snapshot into an empty index.
Status LoadIndex(const std::string& index_path, const StoreOptions& keys,
                 matcher::HashIndex* index) {
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
    return {};
  }
  if (matcher::IsSnapshotFile(index_path)) {
    Result<matcher::DataKey> key = keys.DataKey();
    if (!key.ok()) return key.error();
    Result<std::optional<matcher::PublicKey>> trusted = keys.PublicKey(/*required=*/true);
    if (!trusted.ok()) return trusted.error();
    Result<matcher::SnapshotContents> snap = matcher::ReadSnapshot(index_path, *key, **trusted);
    if (!snap.ok()) return snap.error();
    return matcher::LoadIndexFromEntries(std::move(snap->entries), snap->lists,
                                         snap->version.version, index);
  }
  std::ifstream index_file(index_path);
  if (!index_file) return Error(ErrorCode::kNotFound, "cannot read index " + index_path);
  const std::string source = std::filesystem::path(index_path).filename().string();
  matcher::ParsedHashList list = matcher::ParseHashList(index_file, source, source);
  if (!list.errors.empty()) {
    // One line per bad line; the caller prefixes the first.
    std::string message;
    for (const auto& e : list.errors) {
      message += index_path + ":" + std::to_string(e.line) + ": " + e.message +
                 "\nbantay match: ";
    }
    return Error(ErrorCode::kInvalidArgument,
                 message + "the index has " + std::to_string(list.errors.size()) +
                     " bad line(s); nothing matched");
  }
  return index->Add(std::move(list.entries));
}

}  // namespace

int RunMatchCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  std::string index_path, pdq, pdq_file;
  bool have_pdq = false, have_file = false, dihedral = false;
  int radius = models::kPdqMatchThreshold, threads = 1;
  StoreOptions keys;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--key" || a == "--public-key") {
      bool missing = false;
      keys.Parse(args, &i, &missing);
      if (missing) {
        err << "bantay match: " << a << " needs a value\n";
        return kExitUsage;
      }
      continue;
    }
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    std::string text;
    if (a == "-h" || a == "--help") {
      out << kMatchUsage;
      return kExitOk;
    } else if (a == "--index" && value(&index_path)) {
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
    } else if (a == "--threads" && value(&text)) {
      if (!ParseInt(text, &threads) || threads < 1 || threads > 256) {
        err << "bantay match: --threads must be an integer from 1 to 256\n";
        return kExitUsage;
      }
    } else {
      err << "bantay match: unknown or incomplete option '" << a << "'\n" << kMatchUsage;
      return kExitUsage;
    }
  }
  if (index_path.empty() || have_pdq == have_file) {
    err << "bantay match: give --index and exactly one of --pdq and --pdq-file\n"
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

  std::vector<std::string> queries;
  if (have_pdq) {
    queries.push_back(pdq);
  } else {
    std::ifstream file;
    std::istream* in = &std::cin;
    if (pdq_file != "-") {
      file.open(pdq_file);
      if (!file) {
        err << "bantay match: cannot read " << pdq_file << "\n";
        return kExitUsage;
      }
      in = &file;
    }
    for (std::string line; std::getline(*in, line);) {
      line = Trim(line);
      if (!line.empty()) queries.push_back(line);
    }
  }

  std::vector<OutputLine> lines(queries.size());
  auto work = [&](size_t first, size_t step) {
    for (size_t i = first; i < queries.size(); i += step) {
      lines[i] = MatchLine(*snap, queries[i], radius, dihedral);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t, threads);
  work(0, static_cast<size_t>(threads));
  for (auto& t : pool) t.join();
  bool any_bad = false;
  for (const OutputLine& line : lines) {
    any_bad |= line.bad;
    out << line.text << '\n';
  }
  out.flush();
  return any_bad ? kExitSomeFailed : kExitOk;
}

}  // namespace bantay::client
