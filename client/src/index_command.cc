// `bantay index`: administration of the secure hash store.
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <ostream>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "bantay/client/cli.h"
#include "bantay/matcher/import_formats.h"
#include "bantay/matcher/merkle.h"
#include "bantay/matcher/snapshot.h"
#include "bantay/matcher/store.h"
#include "bantay/models/digest.h"
#include "command_util.h"
#include "store_options.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using matcher::Store;

constexpr std::string_view kIndexUsage =
    R"(Usage: bantay index SUBCOMMAND [OPTIONS]

Administers the secure hash store: lists (banks) of hashes, encrypted at
rest, every change a new signed version with an audit record.

Subcommands:
  keygen --out DIR            new keys: DIR/data.key (AES-256), DIR/signing.key
                              (Ed25519, PEM) and DIR/signing.pub; files are 0600
                              and never overwritten
  init                        create a store (version 1)
  import FILE... --list NAME  import hash lists (- for standard input)
         [--format local_file|csv|vpdq] [--type pdq|md5|sha256]
         [--category TEXT] [--min-quality N] [--skip-invalid]
                              all-or-nothing unless --skip-invalid; every
                              rejected line is reported as FILE:LINE: reason;
                              a local_file or csv line over 65536 bytes ends
                              the import (nothing imported); FILE is a file
                              or a FIFO, not a device or directory
  add --list NAME (--pdq HEX | --md5 HEX | --sha256 HEX)...
      [--category TEXT] [--reference TEXT]
  add --list NAME --description TEXT
                              create a list, or describe an existing one
  remove ID...                remove entries
  dedupe [--list NAME] [--dry-run] [--version N]
                              remove the later copies of a value a list holds
                              more than once, keeping the earliest of each
                              kind (status, category, reference); a group
                              that keeps more than one says what to check;
                              --version N: only if the store is still at
                              version N (the dry run's)
  disable (ID... | --list NAME), enable (ID... | --list NAME)
  list [--list NAME [--after ID] [--limit N] [--show-values]]
                              the lists, or one list's entries (values only
                              with --show-values), N at most (default 1000;
                              a cut output says so, and --after the last ID
                              shown continues it)
  stats                       version, counts, values per key id
  export --out FILE           a signed, encrypted snapshot of the current
                              version (for a replica or an offline lab)
  verify                      check the audit chain, every version's
                              signature, every value and the current root
                              and state (no data key: all but the values)
  audit [--after SEQ] [--limit N]
  root [--version N] [--prove ID]
                              a version's signed Merkle root, or an entry's
                              inclusion proof (checked with --public-key)
  rekey --new-key FILE        re-encrypt every value under a new data key
                              (--key gives the current one)
  upgrade                     once, for a store made by a Bantay before
                              schema 2: sign its whole state as it is (check
                              it with verify --public-key first)

Options for all subcommands:
  --store URL          sqlite:PATH or postgresql://...    (env BANTAY_STORE)
  --key FILE           the data key                       (env BANTAY_DATA_KEY_FILE,
                                                           or BANTAY_DATA_KEY: hex)
  --signing-key FILE   the operator's signing key, needed by every change
                                                          (env BANTAY_SIGNING_KEY_FILE)
  --public-key FILE    a trusted public key for verify, root and snapshots
                                                          (env BANTAY_PUBLIC_KEY_FILE)
  --actor NAME         who is making the change (default: $USER)
  -h, --help           this text

Output is JSON (one object a line). Exit status: 0 success, 1 the operation
failed or found problems (each reported), 2 usage error.
)";

// Entries `list --list NAME` prints unless --limit says otherwise.
constexpr uint64_t kDefaultListLimit = 1000;

std::string Hex(std::span<const uint8_t> bytes) { return models::ToHex(bytes); }

bool ParseU64(std::string_view s, uint64_t* v) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::string ValueHex(const matcher::StoredEntry& e) {
  return Hex(std::span<const uint8_t>(e.value.data(), e.type == matcher::SignalType::kMd5 ? 16 : 32));
}

std::string IsoTime(int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The parsed command line of one subcommand.
struct Args {
  std::string sub;
  StoreOptions store;
  std::string actor;
  std::vector<std::string> positional;
  std::vector<std::pair<std::string, std::string>> hashes;  // add: (type, hex)
  std::string list, category, reference, format, type, out, new_key, description;
  bool have_description = false, have_list = false;
  std::string after, limit, version, prove, min_quality;
  bool skip_invalid = false, show_values = false, dry_run = false;
};

class IndexCommand {
 public:
  IndexCommand(std::ostream& out, std::ostream& err) : out_(out), err_(err) {}

  int Run(const std::vector<std::string>& argv) {
    if (argv.empty()) {
      err_ << kIndexUsage;
      return kExitUsage;
    }
    if (argv[0] == "-h" || argv[0] == "--help") {
      out_ << kIndexUsage;
      return kExitOk;
    }
    a_.sub = argv[0];
    if (std::string repeated = RepeatedOption(
            argv,
            {"--store", "--key", "--signing-key", "--public-key", "--actor",
             "--list", "--category", "--reference", "--format", "--type",
             "--out", "--new-key", "--after", "--limit", "--version", "--prove",
             "--description", "--min-quality"},
            {"--pdq", "--md5", "--sha256"});
        !repeated.empty()) {
      return Usage(repeated);
    }
    for (size_t i = 1; i < argv.size(); ++i) {
      const std::string& o = argv[i];
      bool missing = false;
      if (a_.store.Parse(argv, &i, &missing)) {
        if (missing) return Usage("option " + o + " needs a value");
        continue;
      }
      auto value = [&](std::string* target) {
        if (i + 1 >= argv.size()) return false;
        *target = argv[++i];
        return true;
      };
      std::string hex;
      if (o == "-h" || o == "--help") {
        out_ << kIndexUsage;
        return kExitOk;
      } else if (o == "--skip-invalid") {
        a_.skip_invalid = true;
      } else if (o == "--show-values") {
        a_.show_values = true;
      } else if (o == "--dry-run") {
        a_.dry_run = true;
      } else if ((o == "--pdq" || o == "--md5" || o == "--sha256") && value(&hex)) {
        a_.hashes.emplace_back(o.substr(2), hex);
      } else if ((o == "--actor" && value(&a_.actor)) || (o == "--list" && value(&a_.list) && (a_.have_list = true)) ||
                 (o == "--category" && value(&a_.category)) ||
                 (o == "--reference" && value(&a_.reference)) ||
                 (o == "--format" && value(&a_.format)) || (o == "--type" && value(&a_.type)) ||
                 (o == "--out" && value(&a_.out)) || (o == "--new-key" && value(&a_.new_key)) ||
                 (o == "--after" && value(&a_.after)) || (o == "--limit" && value(&a_.limit)) ||
                 (o == "--version" && value(&a_.version)) ||
                 (o == "--prove" && value(&a_.prove)) ||
                 (o == "--description" && value(&a_.description) &&
                  (a_.have_description = true)) ||
                 (o == "--min-quality" && value(&a_.min_quality))) {
      } else if (o.size() > 1 && o[0] == '-' && o != "-") {
        return Usage("unknown or incomplete option '" + o + "'");
      } else {
        a_.positional.push_back(o);
      }
    }
    a_.store.FromEnvironment();
    if (a_.actor.empty()) {
      const char* user = std::getenv("USER");
      a_.actor = user != nullptr && *user != '\0' ? user : "cli";
    }
    static const std::set<std::string> kSubcommands = {
        "keygen", "init",  "import", "add",   "remove", "dedupe", "disable", "enable",
        "list",   "stats", "export", "verify", "audit", "root",   "rekey",   "upgrade"};
    if (!kSubcommands.count(a_.sub)) return Usage("unknown subcommand '" + a_.sub + "'");
    static const std::set<std::string> kTakePositional = {"import", "remove", "disable",
                                                          "enable"};
    if (!a_.positional.empty() && !kTakePositional.count(a_.sub)) {
      return Usage(a_.sub + " takes no argument '" + a_.positional.front() + "'");
    }
    if (a_.dry_run && a_.sub != "dedupe") return Usage("--dry-run is for dedupe only");
    if (a_.sub == "keygen") return Keygen();
    if (a_.store.store.empty()) {
      return Usage("no store: give --store sqlite:PATH or --store postgresql://... (or set "
                   "BANTAY_STORE)");
    }
    if (a_.sub == "init") return Init();
    if (a_.sub == "import") return Import();
    if (a_.sub == "add") return Add();
    if (a_.sub == "remove") return Remove();
    if (a_.sub == "dedupe") return Dedupe();
    if (a_.sub == "disable" || a_.sub == "enable") return SetStatus(a_.sub == "enable");
    if (a_.sub == "list") return List();
    if (a_.sub == "stats") return Stats();
    if (a_.sub == "export") return Export();
    if (a_.sub == "verify") return Verify();
    if (a_.sub == "audit") return Audit();
    if (a_.sub == "root") return Root();
    if (a_.sub == "rekey") return Rekey();
    if (a_.sub == "upgrade") return Upgrade();
    return Usage("unknown subcommand '" + a_.sub + "'");
  }

 private:
  int Usage(const std::string& message) {
    err_ << "bantay index: " << message << "\n";
    return kExitUsage;
  }
  int Fail(const Error& e) {
    err_ << "bantay index " << a_.sub << ": " << e.message() << "\n";
    return kExitSomeFailed;
  }
  void Print(const json::object& o) { out_ << json::serialize(o) << "\n"; }

  matcher::ChangeContext Context(const std::string& source) const {
    return {a_.actor, source};
  }

  // Opens the store with the data key (and the signing key for changes).
  // What reads no value (stats, audit, root, verify without values) also
  // opens without a data key: an auditor need not hold it.
  Result<std::unique_ptr<Store>> OpenStore(bool for_change, bool data_key_optional = false) {
    if (data_key_optional && !for_change && !a_.store.HasDataKey()) {
      return Store::Open(a_.store.store, matcher::StoreKeys{});
    }
    Result<matcher::StoreKeys> keys = a_.store.Keys(for_change);
    if (!keys.ok()) return keys.error();
    return Store::Open(a_.store.store, std::move(*keys));
  }

  int PrintVersion(Result<uint64_t> version, json::object extra = {}) {
    if (!version.ok()) return Fail(version.error());
    extra["version"] = *version;
    Print(extra);
    return kExitOk;
  }

  int Keygen() {
    if (a_.out.empty()) return Usage("keygen needs --out DIR");
    std::error_code ec;
    std::filesystem::create_directories(a_.out, ec);
    if (ec) return Fail(Error(ErrorCode::kIo, "cannot create " + a_.out + ": " + ec.message()));
    const std::string data_path = a_.out + "/data.key";
    const std::string signing_path = a_.out + "/signing.key";
    const std::string public_path = a_.out + "/signing.pub";
    for (const std::string& p : {data_path, signing_path, public_path}) {
      if (std::filesystem::exists(p)) {
        return Fail(Error(ErrorCode::kInvalidArgument,
                          p + " already exists; keys are never overwritten"));
      }
    }
    const matcher::DataKey data = matcher::GenerateDataKey();
    const matcher::SigningKey signing = matcher::SigningKey::Generate();
    Status s = matcher::WriteDataKeyFile(data_path, data);
    if (s.ok()) s = matcher::WriteSecretFile(signing_path, signing.ToPem());
    // (Created exclusively like the secrets; the public key may be shared.)
    if (s.ok()) s = matcher::WriteSecretFile(public_path, matcher::PublicKeyToPem(signing.public_key()));
    if (!s.ok()) {
      // All three or none, so that a retry is not refused.
      for (const std::string& p : {data_path, signing_path, public_path}) {
        std::filesystem::remove(p, ec);
      }
      return Fail(s.error());
    }
    Print({{"data_key", data_path},
           {"data_key_id", data.id},
           {"signing_key", signing_path},
           {"public_key", public_path},
           {"public_key_hex", Hex(signing.public_key())}});
    return kExitOk;
  }

  int Init() {
    Result<matcher::StoreKeys> keys = a_.store.Keys(/*signing_required=*/true);
    if (!keys.ok()) return Fail(keys.error());
    Result<std::unique_ptr<Store>> store =
        Store::Init(a_.store.store, std::move(*keys), Context("cli"));
    if (!store.ok()) return Fail(store.error());
    Print({{"store_id", Hex((*store)->store_id())}, {"version", 1}});
    return kExitOk;
  }

  int Import() {
    if (a_.positional.empty()) return Usage("import needs at least one FILE (- for standard input)");
    matcher::ImportOptions options;
    options.default_list = a_.list;
    options.default_category = a_.category;
    if (!a_.type.empty()) {
      Result<matcher::SignalType> t = matcher::ParseSignalType(a_.type);
      if (!t.ok()) return Usage(t.error().message());
      options.bare_type = *t;
    }
    if (!a_.min_quality.empty()) {
      uint64_t q = 0;
      if (!ParseU64(a_.min_quality, &q) || q > 100) {
        return Usage("--min-quality must be an integer from 0 to 100");
      }
      options.min_quality = static_cast<int>(q);
    }
    std::vector<matcher::NewEntry> entries;
    size_t rejected = 0;
    std::string sources;
    for (const std::string& path : a_.positional) {
      options.format = matcher::GuessImportFormat(path);
      if (!a_.format.empty()) {
        Result<matcher::ImportFormat> f = matcher::ParseImportFormat(a_.format);
        if (!f.ok()) return Usage(f.error().message());
        options.format = *f;
      }
      const std::string name =
          path == "-" ? "stdin" : std::filesystem::path(path).filename().string();
      options.source_name = name;
      std::ifstream file;
      std::istream* in = &std::cin;
      if (path != "-") {
        // A file or a FIFO (a pipe, <(...)); a device such as /dev/zero or
        // /dev/urandom never ends, and a directory reads as empty.
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) &&
            !S_ISFIFO(st.st_mode)) {
          return Fail(Error(ErrorCode::kInvalidArgument,
                            path + ": not a file or a FIFO (" +
                                (S_ISDIR(st.st_mode) ? "a directory" : "a device") +
                                "); nothing imported"));
        }
        file.open(path, std::ios::binary);
        if (!file) return Fail(Error(ErrorCode::kNotFound, "cannot read " + path));
        in = &file;
      }
      // A line of a line-based format is read whole before it is parsed:
      // one without an end (/dev/zero through a pipe, a damaged file) would
      // take all memory. (A vPDQ JSON document may well be one line.)
      LineLimitBuf limited(in->rdbuf(), kMaxInputLine);
      std::istream limited_in(&limited);
      Result<matcher::ParsedImport> parsed = matcher::ParseImport(
          options.format == matcher::ImportFormat::kVpdq ? *in : limited_in, options);
      if (limited.over_long_line() > 0) {
        return Fail(Error(ErrorCode::kTooLarge,
                          path + ":" + std::to_string(limited.over_long_line()) +
                              ": a line longer than " + std::to_string(kMaxInputLine) +
                              " bytes (no record is near that); nothing imported"));
      }
      if (!parsed.ok()) {
        return Fail(Error(parsed.error().code(), path + ": " + parsed.error().message()));
      }
      std::vector<matcher::LineError> errors = std::move(parsed->errors);
      for (matcher::ImportRecord& r : parsed->records) {
        // As the server's import: with --list, a record of another list is
        // refused, never a list created that the operator did not name.
        if (!a_.list.empty() && r.list != a_.list) {
          errors.push_back(
              {r.line, "the record names list \"" + r.list + "\", not \"" + a_.list + "\""});
          matcher::Wipe(r.value);
          continue;
        }
        entries.push_back({std::move(r.list), r.type, r.value, std::move(r.category),
                           std::move(r.reference)});
      }
      std::stable_sort(errors.begin(), errors.end(),
                       [](const matcher::LineError& a, const matcher::LineError& b) {
                         return a.line < b.line;
                       });
      for (const matcher::LineError& e : errors) {
        err_ << "bantay index import: " << path << ":" << e.line << ": " << e.message << "\n";
      }
      rejected += errors.size();
      sources += (sources.empty() ? "" : ",") + name;
    }
    // File names go into entries and the audit log: no control characters,
    // at most 256 bytes (cut at a UTF-8 character boundary).
    for (char& c : sources) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    if (sources.size() > 256) {
      size_t cut = 253;
      while (cut > 0 && (static_cast<unsigned char>(sources[cut]) & 0xc0) == 0x80) --cut;
      sources = sources.substr(0, cut) + "...";
    }
    if (rejected > 0 && !a_.skip_invalid) {
      err_ << "bantay index import: " << rejected
           << " line(s) rejected; nothing imported (--skip-invalid imports the valid lines)\n";
      return kExitSomeFailed;
    }
    if (entries.empty()) {
      return Fail(Error(ErrorCode::kInvalidArgument, "no valid entries to import"));
    }
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    // What the lists hold already is not added again: a list imported
    // anew adds only what is new.
    Result<Store::AddResult> result =
        (*store)->AddNewEntries(entries, Context(sources), "import");
    for (matcher::NewEntry& e : entries) matcher::Wipe(e.value);
    if (!result.ok()) return Fail(result.error());
    Print({{"version", result->version},
           {"added", result->added},
           {"already_present", result->present.size()},
           {"rejected", rejected}});
    return rejected > 0 ? kExitSomeFailed : kExitOk;
  }

  int Add() {
    if (!a_.list.empty() && a_.hashes.empty() && a_.have_description) {
      Result<std::unique_ptr<Store>> store = OpenStore(true);
      if (!store.ok()) return Fail(store.error());
      return PrintVersion((*store)->DescribeList(a_.list, a_.description, Context("cli")),
                          {{"list", a_.list}, {"description", a_.description}});
    }
    if (a_.list.empty() || a_.hashes.empty() || a_.have_description) {
      return Usage("add needs --list NAME and at least one --pdq, --md5 or --sha256, or "
                   "--list NAME and --description TEXT");
    }
    std::vector<matcher::NewEntry> entries;
    for (const auto& [type_name, hex] : a_.hashes) {
      const matcher::SignalType type = *matcher::ParseSignalType(type_name);
      Result<std::array<uint8_t, 32>> value = matcher::ParseSignalValue(type, hex);
      if (!value.ok()) return Usage("--" + type_name + ": " + value.error().message());
      entries.push_back({a_.list, type, *value, a_.category, a_.reference});
    }
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    Result<Store::AddResult> result = (*store)->AddNewEntries(entries, Context("cli"), "add");
    if (!result.ok()) {
      for (matcher::NewEntry& e : entries) matcher::Wipe(e.value);
      return Fail(result.error());
    }
    for (const auto& [index, id] : result->present) {
      // Given twice: the entry it repeats is one this add made (not one
      // the list held before).
      const matcher::NewEntry& e = entries[index];
      bool twice = false;
      for (size_t j = 0; j < index && !twice; ++j) {
        const bool left_out =
            std::any_of(result->present.begin(), result->present.end(),
                        [&](const std::pair<size_t, uint64_t>& p) { return p.first == j; });
        twice = !left_out && entries[j].type == e.type && entries[j].value == e.value;
      }
      err_ << "bantay index add: --" << a_.hashes[index].first << " " << a_.hashes[index].second
           << (twice ? ": given twice (entry " : ": list '" + a_.list + "' holds it already (entry ")
           << id << "); not added\n";
    }
    for (matcher::NewEntry& e : entries) matcher::Wipe(e.value);
    Print({{"version", result->version},
           {"added", result->added},
           {"already_present", result->present.size()}});
    return kExitOk;
  }

  Result<std::vector<uint64_t>> Ids() {
    std::vector<uint64_t> ids;
    for (const std::string& p : a_.positional) {
      uint64_t id = 0;
      if (!ParseU64(p, &id) || id == 0) {
        return Error(ErrorCode::kInvalidArgument, "'" + p + "' is not an entry id");
      }
      ids.push_back(id);
    }
    return ids;
  }

  int Remove() {
    Result<std::vector<uint64_t>> ids = Ids();
    if (!ids.ok()) return Usage(ids.error().message());
    if (ids->empty()) return Usage("remove needs entry ids");
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    return PrintVersion((*store)->RemoveEntries(*ids, Context("cli")),
                        {{"removed", ids->size()}});
  }

  // One line a group of duplicates, then the totals.
  int Dedupe() {
    if (a_.have_list && a_.list.empty()) return Usage("--list needs a list name");
    uint64_t at_version = 0;
    if (!a_.version.empty() && (!ParseU64(a_.version, &at_version) || at_version == 0)) {
      return Usage("--version needs a version number");
    }
    Result<std::unique_ptr<Store>> store = OpenStore(!a_.dry_run);
    if (!store.ok()) return Fail(store.error());
    std::vector<std::string> lists;
    if (!a_.list.empty()) lists.push_back(a_.list);
    Result<Store::DedupeResult> result =
        (*store)->RemoveDuplicates(lists, a_.dry_run, Context("cli"), at_version);
    if (!result.ok()) return Fail(result.error());
    const std::string_view removed = a_.dry_run ? "would_remove" : "removed";
    size_t to_check = 0;
    for (const Store::DuplicateGroup& g : result->groups) {
      json::object o{{"list", g.list},
                     {"type", matcher::SignalTypeName(g.type)},
                     {"kept", json::array(g.kept.begin(), g.kept.end())},
                     {removed, json::array(g.removed.begin(), g.removed.end())}};
      if (!g.left_because.empty()) {
        o["check"] = g.left_because;
        json::array kept;
        for (size_t i = 0; i < g.kept_entries.size() && i < g.kept.size(); ++i) {
          const Store::DuplicateGroup::Kept& k = g.kept_entries[i];
          kept.push_back(json::object{{"id", g.kept[i]},
                                      {"status", matcher::EntryStatusName(k.status)},
                                      {"category", k.category},
                                      {"reference", k.reference}});
        }
        o["entries"] = std::move(kept);
        ++to_check;
      }
      Print(o);
    }
    json::object totals{{"version", result->version}, {"groups", result->groups.size()}};
    totals[removed] = result->removed;
    totals["to_check"] = to_check;
    if (a_.dry_run) totals["dry_run"] = true;
    Print(totals);
    return kExitOk;
  }

  int SetStatus(bool enable) {
    Result<std::vector<uint64_t>> ids = Ids();
    if (!ids.ok()) return Usage(ids.error().message());
    if (ids->empty() == a_.list.empty()) return Usage(a_.sub + " needs entry ids or --list NAME");
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    if (!a_.list.empty()) {
      return PrintVersion((*store)->SetListEnabled(a_.list, enable, Context("cli")),
                          {{"list", a_.list}, {"enabled", enable}});
    }
    return PrintVersion(
        (*store)->SetEntriesStatus(
            *ids, enable ? matcher::EntryStatus::kActive : matcher::EntryStatus::kDisabled,
            Context("cli")),
        {{"entries", ids->size()}, {"status", enable ? "active" : "disabled"}});
  }

  int List() {
    Result<std::unique_ptr<Store>> store = OpenStore(false);
    if (!store.ok()) return Fail(store.error());
    if (a_.list.empty()) {
      Result<std::vector<matcher::ListInfo>> lists = (*store)->Lists();
      if (!lists.ok()) return Fail(lists.error());
      for (const matcher::ListInfo& l : *lists) {
        Print({{"list", l.name},
               {"enabled", l.enabled},
               {"description", l.description},
               {"active", l.active},
               {"disabled", l.disabled}});
      }
      return kExitOk;
    }
    uint64_t after = 0, limit = kDefaultListLimit;
    if ((!a_.after.empty() && !ParseU64(a_.after, &after)) ||
        (!a_.limit.empty() && (!ParseU64(a_.limit, &limit) || limit == 0))) {
      return Usage("--after and --limit take positive integers");
    }
    Result<std::vector<matcher::ListInfo>> lists = (*store)->Lists();
    if (!lists.ok()) return Fail(lists.error());
    if (std::none_of(lists->begin(), lists->end(),
                     [&](const matcher::ListInfo& l) { return l.name == a_.list; })) {
      return Fail(Error(ErrorCode::kNotFound, "no list named '" + a_.list + "'"));
    }
    // One more than the limit tells whether the output is cut.
    Result<std::vector<matcher::StoredEntry>> entries =
        (*store)->Entries(a_.list, after, limit == UINT64_MAX ? limit : limit + 1);
    if (!entries.ok()) return Fail(entries.error());
    const bool cut = entries->size() > limit;
    if (cut) {
      for (size_t i = limit; i < entries->size(); ++i) matcher::Wipe((*entries)[i].value);
      entries->resize(limit);
    }
    for (matcher::StoredEntry& e : *entries) {
      json::object o{{"id", e.id},
                     {"list", e.list},
                     {"type", matcher::SignalTypeName(e.type)},
                     {"category", e.category},
                     {"reference", e.reference},
                     {"source", e.source},
                     {"added_by", e.added_by},
                     {"added_at", IsoTime(e.added_at)},
                     {"added_version", e.added_version},
                     {"status", matcher::EntryStatusName(e.status)}};
      if (a_.show_values) o["value"] = ValueHex(e);
      matcher::Wipe(e.value);
      Print(o);
    }
    if (cut) {
      err_ << "bantay index list: cut at " << limit
           << " entries (the limit; --limit N changes it); --after " << entries->back().id
           << " lists the next ones\n";
    }
    return kExitOk;
  }

  int Stats() {
    Result<std::unique_ptr<Store>> store = OpenStore(false, /*data_key_optional=*/true);
    if (!store.ok()) return Fail(store.error());
    Result<matcher::StoreStats> st = (*store)->Stats();
    if (!st.ok()) return Fail(st.error());
    json::object keys;
    for (const auto& [id, n] : st->values_by_key) keys[id] = n;
    Print({{"store_id", Hex(st->store_id)},
           {"version", st->version},
           {"lists", st->lists},
           {"active", json::object{{"pdq", st->active_by_type[0]},
                                   {"md5", st->active_by_type[1]},
                                   {"sha256", st->active_by_type[2]}}},
           {"disabled", st->disabled},
           {"values_by_key", keys}});
    return kExitOk;
  }

  int Export() {
    if (a_.out.empty()) return Usage("export needs --out FILE");
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    Result<matcher::DataKey> key = a_.store.DataKey();
    Result<std::optional<matcher::SigningKey>> signer = a_.store.SigningKey(true);
    if (!key.ok()) return Fail(key.error());
    if (!signer.ok()) return Fail(signer.error());
    Result<uint64_t> version = matcher::ExportSnapshot(**store, *key, **signer, a_.out);
    if (!version.ok()) return Fail(version.error());
    Print({{"version", *version}, {"out", a_.out}, {"data_key_id", key->id}});
    return kExitOk;
  }

  int Verify() {
    Result<std::optional<matcher::PublicKey>> trusted = a_.store.PublicKey(false);
    if (!trusted.ok()) return Fail(trusted.error());
    Result<std::unique_ptr<Store>> store = OpenStore(false, /*data_key_optional=*/true);
    if (!store.ok()) return Fail(store.error());
    const bool values = a_.store.HasDataKey();
    Result<matcher::VerifyReport> report = (*store)->Verify(*trusted, values);
    if (!report.ok()) return Fail(report.error());
    if (!trusted->has_value()) {
      err_ << "bantay index verify: warning: the signatures were checked against the public "
              "key the store holds, which whoever can rewrite the database can replace; give "
              "--public-key for a check that proves something\n";
    }
    if (!report->state_signed && report->ok()) {
      err_ << "bantay index verify: warning: version " << report->version
           << " does not sign the whole state (a store made by a Bantay before schema 2): "
              "the states of disabled entries and of lists are the database's word until "
              "bantay index upgrade signs them\n";
    }
    if (!values) {
      err_ << "bantay index verify: no data key given: the values were not decrypted, so "
              "each entry's fields were not checked against its leaf hash (the signatures, "
              "the audit chain, the root and the state were)\n";
    }
    json::array problems;
    for (const std::string& p : report->problems) {
      problems.push_back(json::string(p));
      err_ << "bantay index verify: " << p << "\n";
    }
    Print({{"ok", report->ok()},
           {"version", report->version},
           {"audit_records", report->audit_records},
           {"entries", report->entries},
           {"values_checked", report->values_checked},
           {"key", trusted->has_value() ? "given" : "stored"},
           {"problems", problems}});
    return report->ok() ? kExitOk : kExitSomeFailed;
  }

  int Audit() {
    uint64_t after = 0, limit = 1000;
    if ((!a_.after.empty() && !ParseU64(a_.after, &after)) ||
        (!a_.limit.empty() && (!ParseU64(a_.limit, &limit) || limit == 0))) {
      return Usage("--after and --limit take positive integers");
    }
    Result<std::unique_ptr<Store>> store = OpenStore(false, /*data_key_optional=*/true);
    if (!store.ok()) return Fail(store.error());
    Result<std::vector<matcher::AuditRecord>> records = (*store)->Audit(after, limit);
    if (!records.ok()) return Fail(records.error());
    for (const matcher::AuditRecord& r : *records) {
      Print({{"seq", r.seq},
             {"time", IsoTime(r.time)},
             {"actor", r.actor},
             {"action", r.action},
             {"list", r.list},
             {"count", r.count},
             {"entries_digest", Hex(r.entries_digest)},
             {"prev_digest", Hex(r.prev_digest)},
             {"digest", Hex(r.digest)}});
    }
    return kExitOk;
  }

  int Root() {
    Result<std::optional<matcher::PublicKey>> trusted = a_.store.PublicKey(false);
    if (!trusted.ok()) return Fail(trusted.error());
    Result<std::unique_ptr<Store>> store = OpenStore(false, /*data_key_optional=*/true);
    if (!store.ok()) return Fail(store.error());
    if (!a_.prove.empty()) {
      if (!a_.version.empty()) return Usage("--prove proves against the current version only");
      uint64_t id = 0;
      if (!ParseU64(a_.prove, &id)) return Usage("--prove takes an entry id");
      Result<matcher::InclusionProof> proof = (*store)->Prove(id);
      if (!proof.ok()) return Fail(proof.error());
      Result<matcher::VersionRecord> record = (*store)->Root(proof->version);
      if (!record.ok()) return Fail(record.error());
      json::array path;
      for (const matcher::Digest32& d : proof->path) path.push_back(json::string(Hex(d)));
      const bool included = matcher::VerifyMerkleInclusion(
          proof->leaf_hash, proof->leaf_index, proof->tree_size, proof->path, record->root);
      json::object o{{"entry", id},
                     {"version", proof->version},
                     {"leaf_index", proof->leaf_index},
                     {"tree_size", proof->tree_size},
                     {"leaf_hash", Hex(proof->leaf_hash)},
                     {"path", path},
                     {"root", Hex(record->root)},
                     {"included", included}};
      // A proof only means something against a root signed by a trusted key.
      bool signed_ok = true;
      if (trusted->has_value()) {
        signed_ok = matcher::VerifySignature(
            **trusted, matcher::VersionSigningMessage((*store)->store_id(), *record),
            record->signature);
        o["signature_valid"] = signed_ok;
        if (!signed_ok) {
          err_ << "bantay index root: the root's signature does not verify with the given key\n";
        }
      }
      Print(o);
      return included && signed_ok ? kExitOk : kExitSomeFailed;
    }
    uint64_t version = 0;
    if (!a_.version.empty() && (!ParseU64(a_.version, &version) || version == 0)) {
      return Usage("--version takes a positive integer");
    }
    Result<matcher::VersionRecord> r = (*store)->Root(version);
    if (!r.ok()) return Fail(r.error());
    json::object o{{"version", r->version},
                   {"created_at", IsoTime(r->created_at)},
                   {"root", Hex(r->root)},
                   {"active_count", r->active_count},
                   {"audit_digest", Hex(r->audit_digest)},
                   {"public_key", Hex(r->public_key)},
                   {"signature", Hex(r->signature)}};
    if (r->state_digest) o["state_digest"] = Hex(*r->state_digest);
    bool ok = true;
    if (trusted->has_value()) {
      ok = matcher::VerifySignature(
          **trusted, matcher::VersionSigningMessage((*store)->store_id(), *r), r->signature);
      o["signature_valid"] = ok;
      if (!ok) err_ << "bantay index root: the signature does not verify with the given key\n";
    }
    Print(o);
    return ok ? kExitOk : kExitSomeFailed;
  }

  int Upgrade() {
    Result<std::unique_ptr<Store>> store = OpenStore(true);
    if (!store.ok()) return Fail(store.error());
    return PrintVersion((*store)->Upgrade(Context("cli")));
  }

  int Rekey() {
    if (a_.new_key.empty()) return Usage("rekey needs --new-key FILE (and --key, the current key)");
    Result<matcher::DataKey> fresh = matcher::ReadDataKeyFile(a_.new_key);
    if (!fresh.ok()) return Fail(fresh.error());
    Result<matcher::StoreKeys> keys = a_.store.Keys(true);
    if (!keys.ok()) return Fail(keys.error());
    keys->data_keys.insert(keys->data_keys.begin(), *fresh);
    Result<std::unique_ptr<Store>> store = Store::Open(a_.store.store, std::move(*keys));
    if (!store.ok()) return Fail(store.error());
    return PrintVersion((*store)->Rekey(Context("cli")), {{"data_key_id", fresh->id}});
  }

  std::ostream& out_;
  std::ostream& err_;
  Args a_;
};

}  // namespace

int RunIndexCommand(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  return IndexCommand(out, err).Run(args);
}

}  // namespace bantay::client
