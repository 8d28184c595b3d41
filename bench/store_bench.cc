// The secure store: importing into SQLite, and opening a store into the
// in-memory index, each against a baseline in the same run.
//
// Workloads (fixed seeds; the values are random 256-bit PDQ codes, benign):
//   import-1M   one import of 1M PDQ entries into a fresh SQLite store
//               (encrypt each value, insert, audit record, Merkle root over
//               all active entries, Ed25519 signature), against
//               baseline: the same 1M rows (plain values, no leaf) inserted
//               with one prepared statement in one transaction into a plain
//               SQLite table with the same indexes.
//   open-N      Store::Open, read and decrypt every entry, and build the
//               HashIndex (LoadIndexFromStore), for N = 1M and 10M, against
//               baseline: building the HashIndex from the same entries
//               already read and decrypted into memory (so the ratio is what
//               reading and decrypting the store add).
//   verified-open-1M  the same load with the server's verification (every
//               row's leaf, the signed root), against the load without it.
//   change-1M   five status changes on the 1M store (each hashes the whole
//               state), then five single entries added (each hashes only
//               what it adds): the writer's later changes (each starts from
//               the state the one before left), against its first of the
//               run (baseline: it reads and checks every row, as every
//               change on PostgreSQL does); and a follower's (read the
//               change set, verify it, apply it), against a follower that
//               does not verify.
//   reimport-1M the 1M import made again, keeping out what the lists hold
//               (Store::AddNewEntries: nothing is new), against the import;
//               and one new entry added that way to a list of 250k (reading
//               the list, or given the entries of an index loaded from the
//               store, as the server does), against Store::AddEntries.
// Reported: seconds (median of the runs), entries/s, and the ratios.
//
// Run: build/bin/store_bench           (1M and 10M; ~10 min, ~8 GB of RAM,
//                                       ~3 GB of disk in $TMPDIR)
//      build/bin/store_bench --quick   (1M only)
//      build/bin/store_bench --open-only --store-dir DIR [--runs N] [--no-baseline]
//                                      (open-10M only, N runs (3); the 10M
//                                       store and its key are kept in DIR and
//                                       reused by later runs)
//      build/bin/store_bench --postgres URL
//                                      (import-1M once, verified-open-1M and
//                                       change-1M on PostgreSQL: URL names an
//                                       empty database, for example one of a
//                                       cluster started by
//                                       build/bin/pg_cluster_ctl start DIR)
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/store.h"
#include "bantay/matcher/store_index.h"
#include "bench_util.h"

namespace {

using namespace bantay::matcher;  // NOLINT: a benchmark program
using bantay::bench::Clock;
using bantay::bench::Median;
using bantay::bench::Seconds;

std::vector<NewEntry> RandomEntries(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<NewEntry> entries(n);
  for (size_t i = 0; i < n; ++i) {
    NewEntry& e = entries[i];
    e.list = "bench-" + std::to_string(i % 4);
    e.type = SignalType::kPdq;
    for (size_t b = 0; b < 32; b += 8) {
      const uint64_t r = rng();
      std::memcpy(e.value.data() + b, &r, 8);
    }
    e.category = "A1";
    e.reference = "case-" + std::to_string(i);
  }
  return entries;
}

StoreKeys Keys(const DataKey& data, const SigningKey& signing) {
  StoreKeys keys;
  keys.data_keys.push_back(data);
  keys.signing_key = SigningKey::FromPem(signing.ToPem()).value();
  return keys;
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "store_bench: %s failed\n", what);
    std::exit(1);
  }
}

// The baseline of the import: plain rows, one prepared statement, one
// transaction, the same indexes.
double PlainSqliteInsert(const std::string& path, const std::vector<NewEntry>& entries) {
  sqlite3* db = nullptr;
  Check(sqlite3_open(path.c_str(), &db) == SQLITE_OK, "sqlite3_open");
  const auto start = Clock::now();
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE entries (id INTEGER PRIMARY KEY, list TEXT, type INTEGER, "
               "value BLOB, category TEXT, reference TEXT, source TEXT, added_by TEXT, "
               "added_at INTEGER, added_version INTEGER, status INTEGER, "
               "status_version INTEGER);"
               "CREATE INDEX e_sv ON entries (status_version);"
               "CREATE INDEX e_list ON entries (list, id);"
               "BEGIN IMMEDIATE;",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO entries VALUES (?1, ?2, 0, ?3, ?4, ?5, 'bench', 'bench', "
                     "0, 2, 0, 2)",
                     -1, &stmt, nullptr);
  int64_t id = 1;
  for (const NewEntry& e : entries) {
    sqlite3_bind_int64(stmt, 1, id++);
    sqlite3_bind_text(stmt, 2, e.list.data(), static_cast<int>(e.list.size()), SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, e.value.data(), 32, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, e.category.data(), static_cast<int>(e.category.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, e.reference.data(), static_cast<int>(e.reference.size()),
                      SQLITE_STATIC);
    Check(sqlite3_step(stmt) == SQLITE_DONE, "plain insert");
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  const double s = Seconds(start);
  sqlite3_close(db);
  return s;
}

void RemoveDb(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
}

struct OpenFigures {
  double open = 0;      // open + read + decrypt + build
  double baseline = 0;  // build from memory
};

OpenFigures MeasureOpen(const std::string& url, const DataKey& data, int runs,
                        bool baseline = true) {
  std::vector<double> open, base;
  for (int r = 0; r < runs; ++r) {
    {
      StoreKeys keys;
      keys.data_keys.push_back(data);
      const auto start = Clock::now();
      auto store = Store::Open(url, std::move(keys));
      Check(store.ok(), "Store::Open");
      HashIndex index;
      Check(LoadIndexFromStore(**store, &index).ok(), "LoadIndexFromStore");
      open.push_back(Seconds(start));
    }
    if (baseline) {
      StoreKeys keys;
      keys.data_keys.push_back(data);
      auto store = Store::Open(url, std::move(keys));
      std::vector<IndexEntry> entries;
      std::vector<uint64_t> disabled;
      std::vector<ListInfo> lists;
      uint64_t version = 0;
      Check((*store)->ReadIndexEntries(&entries, &disabled, &version, &lists).ok(),
            "ReadIndexEntries");
      HashIndex index;
      const auto start = Clock::now();
      Check(index.Add(std::move(entries)).ok(), "HashIndex::Add");
      index.SetStoreVersion(version);
      base.push_back(Seconds(start));
    }
    std::printf("  run %d: open+decrypt+build %.2f s, build from memory %.2f s\n", r + 1,
                open.back(), baseline ? base.back() : 0.0);
    std::fflush(stdout);
  }
  return {Median(open), baseline ? Median(base) : 0.0};
}

// verified-open-1M and change-1M: what a server's verification of the
// store costs (a load that checks every row's leaf and the signed root, and
// the verification of each change it follows), against the same work
// unverified in the same run.
void MeasureVerification(const std::string& url, const DataKey& data, const SigningKey& signing,
                         const ChangeContext& context) {
  StoreKeys keys = Keys(data, signing);
  auto store = Store::Open(url, std::move(keys));
  Check(store.ok(), "Store::Open");
  std::vector<double> verified_loads, plain_loads;
  for (int r = 0; r < 3; ++r) {
    HashIndex plain;
    auto start = Clock::now();
    Check(LoadIndexFromStore(**store, &plain).ok(), "LoadIndexFromStore");
    plain_loads.push_back(Seconds(start));
    HashIndex index;
    VerifiedStoreState verified((*store)->store_id(), signing.public_key());
    start = Clock::now();
    Check(LoadIndexFromStore(**store, &index, &verified).ok(), "verified LoadIndexFromStore");
    verified_loads.push_back(Seconds(start));
  }
  const double verified_load = Median(verified_loads), plain_load = Median(plain_loads);
  std::printf("verified-open-1M: verified load %.2f s; unverified load %.2f s; ratio %.2fx\n",
              verified_load, plain_load, verified_load / plain_load);

  // Two followers at the same version: one verifies each change set, one
  // (the baseline) only reads and applies it. First changes that disable an
  // entry (which hash the whole state again), then changes that add one
  // (which hash only what they add).
  HashIndex index, baseline_index;
  VerifiedStoreState verified((*store)->store_id(), signing.public_key());
  Check(LoadIndexFromStore(**store, &index, &verified).ok(), "verified LoadIndexFromStore");
  Check(LoadIndexFromStore(**store, &baseline_index).ok(), "LoadIndexFromStore");
  auto measure = [&](const char* what, const std::function<void(int)>& change) {
    std::vector<double> writes, follows, baselines;
    int appended = 0;
    for (int r = 0; r < 5; ++r) {
      auto start = Clock::now();
      change(r);
      writes.push_back(Seconds(start));
      start = Clock::now();
      auto changes = (*store)->ChangesSince(verified.version());
      Check(changes.ok(), "ChangesSince");
      // In place, as the server follows.
      Check(verified.Advance(*changes).ok(), "VerifiedStoreState::Advance");
      Check(ApplyChangeSet(*changes, &index).ok(), "ApplyChangeSet");
      appended += verified.appended() ? 1 : 0;
      follows.push_back(Seconds(start));
      start = Clock::now();
      auto plain = (*store)->ChangesSince(baseline_index.Snapshot()->store_version());
      Check(plain.ok(), "ChangesSince");
      Check(ApplyChangeSet(*plain, &baseline_index).ok(), "ApplyChangeSet");
      baselines.push_back(Seconds(start));
    }
    const double follow = Median(follows), baseline = Median(baselines);
    const std::vector<double> later(writes.begin() + 1, writes.end());
    std::printf("change-1M, %s: the writer's first change of these %.3f s; later changes "
                "%.3f s (median of 4); a verified follow %.3f s (%d of 5 hashed only what was "
                "added); unverified follow %.3f s; ratio %.1fx; a change matched after %.3f s "
                "(later change + verified follow)\n",
                what, writes.front(), Median(later), follow, appended, baseline,
                follow / baseline, Median(later) + follow);
    std::fflush(stdout);
  };
  measure("an entry disabled", [&](int r) {
    Check((*store)
              ->SetEntriesStatus({static_cast<uint64_t>(1000 + r)}, EntryStatus::kDisabled,
                                 context)
              .ok(),
          "SetEntriesStatus");
  });
  measure("an entry added", [&](int r) {
    Check((*store)->AddEntries(RandomEntries(1, 7000 + static_cast<uint64_t>(r)), context).ok(),
          "AddEntries");
  });
  // The first change reads and checks every row (the Store was just
  // opened); the later ones start from the state the one before left.
  const Store::ChangeStarts starts = (*store)->change_starts();
  std::printf("change-1M: %llu of %llu changes started from the state the one before left; "
              "%llu hashed only the entries they added\n",
              static_cast<unsigned long long>(starts.kept),
              static_cast<unsigned long long>(starts.kept + starts.checked),
              static_cast<unsigned long long>(starts.appended));
}

// reimport-1M: the 1M import made again with AddNewEntries (every entry
// held already: each list's entries read and decrypted, nothing written),
// against the first import of them (`import_s`); and one new entry added
// to a list of 250k with AddNewEntries, against AddEntries (5 each,
// alternating, the store kept by the writer).
void MeasureReimport(const std::string& url, const DataKey& data, const SigningKey& signing,
                     const ChangeContext& context, double import_s) {
  auto store = Store::Open(url, Keys(data, signing));
  Check(store.ok(), "Store::Open");
  Check((*store)->PrepareChange().ok(), "PrepareChange");
  const std::vector<NewEntry> million = RandomEntries(1'000'000, 1);
  auto start = Clock::now();
  auto again = (*store)->AddNewEntries(million, context, "import");
  const double reimport = Seconds(start);
  Check(again.ok() && again->added == 0 && again->present.size() == million.size(),
        "AddNewEntries of what the store holds");
  std::printf("reimport-1M: %.2f s (nothing added, no version); the import of them %.2f s; "
              "ratio %.2fx\n",
              reimport, import_s, reimport / import_s);
  // What the server gives: its index's entries at its version.
  HashIndex index;
  auto loaded = LoadIndexFromStore(**store, &index);
  Check(loaded.ok(), "LoadIndexFromStore");
  const auto snapshot = index.Snapshot();
  Store::HeldEntries held;
  held.version = snapshot->store_version();
  auto record = (*store)->Root(held.version);
  Check(record.ok(), "Root");
  held.audit_digest = record->audit_digest;
  held.covers = [](std::string_view) { return true; };
  held.ids = [&](const NewEntry& e, std::vector<uint64_t>* ids) {
    snapshot->HeldIds(e.list, e.type, e.value.data(), ids);
  };
  // The 1M again with the index's entries (as the server's import): the
  // rows they name are read 64 ids a statement.
  start = Clock::now();
  again = (*store)->AddNewEntries(million, context, "import", &held);
  const double reimport_held = Seconds(start);
  Check(again.ok() && again->added == 0, "AddNewEntries of what the store holds, with the index");
  std::printf("reimport-1M with the index's entries (as the server): %.2f s; ratio to the "
              "import %.2fx, to the reimport reading the lists %.2fx\n",
              reimport_held, reimport_held / import_s, reimport_held / reimport);
  std::vector<double> news, helds, plains;
  for (int r = 0; r < 5; ++r) {
    std::vector<NewEntry> one = RandomEntries(1, 9000 + static_cast<uint64_t>(r));
    start = Clock::now();
    auto added = (*store)->AddNewEntries(one, context, "add");
    news.push_back(Seconds(start));
    Check(added.ok() && added->added == 1, "AddNewEntries of a new entry");
    one = RandomEntries(1, 9300 + static_cast<uint64_t>(r));
    start = Clock::now();
    added = (*store)->AddNewEntries(one, context, "add", &held);
    helds.push_back(Seconds(start));
    Check(added.ok() && added->added == 1, "AddNewEntries of a new entry, with the index");
    one = RandomEntries(1, 9600 + static_cast<uint64_t>(r));
    start = Clock::now();
    Check((*store)->AddEntries(one, context, "add").ok(), "AddEntries");
    plains.push_back(Seconds(start));
  }
  std::printf("add-new-1: an entry new to its list of 250k, AddNewEntries %.3f s (median of 5), "
              "with the index's entries (as the server) %.4f s; AddEntries %.4f s; ratios "
              "%.1fx, %.1fx\n",
              Median(news), Median(helds), Median(plains), Median(news) / Median(plains),
              Median(helds) / Median(plains));
  std::fflush(stdout);
}

// dedupe-1M: 100k entries of the 1M import stored again (as AddEntries
// did before re-imports left out what a list held), then RemoveDuplicates:
// a dry run and the removal (each a read and decryption of every entry),
// against AddNewEntries of the 1M (the same read, nothing written).
void MeasureDedupe(const std::string& url, const DataKey& data, const SigningKey& signing,
                   const ChangeContext& context) {
  auto store = Store::Open(url, Keys(data, signing));
  Check(store.ok(), "Store::Open");
  const std::vector<NewEntry> million = RandomEntries(1'000'000, 1);
  Check((*store)
            ->AddEntries(std::vector<NewEntry>(million.begin(), million.begin() + 100'000),
                         context, "import")
            .ok(),
        "AddEntries of copies");
  auto start = Clock::now();
  auto again = (*store)->AddNewEntries(million, context, "import");
  const double reimport = Seconds(start);
  Check(again.ok() && again->added == 0, "AddNewEntries of what the store holds");
  start = Clock::now();
  auto dry = (*store)->RemoveDuplicates({}, true, context);
  const double dry_s = Seconds(start);
  Check(dry.ok(), dry.ok() ? "" : dry.error().ToString().c_str());
  // (MeasureVerification disabled some of the first entries: their groups
  // keep both.)
  size_t keep_two = 0;
  for (const Store::DuplicateGroup& g : dry->groups) keep_two += g.kept.size() == 2 ? 1 : 0;
  Check(dry->removed + keep_two == 100'000 && dry->groups.size() == 100'000,
        "RemoveDuplicates, a dry run");
  start = Clock::now();
  auto done = (*store)->RemoveDuplicates({}, false, context);
  const double done_s = Seconds(start);
  Check(done.ok() && done->removed == dry->removed, "RemoveDuplicates");
  std::printf("dedupe-1M: %llu copies among 1.1M entries: a dry run %.2f s, the removal %.2f s; "
              "AddNewEntries of the 1M (the same read) %.2f s; ratios %.2fx, %.2fx\n",
              static_cast<unsigned long long>(done->removed), dry_s, done_s, reimport,
              dry_s / reimport, done_s / reimport);
  std::fflush(stdout);
}

// Builds the 10M store (10 imports of 1M) at path.
void BuildTenMillion(const std::string& path, const DataKey& data, const SigningKey& signing,
                     const ChangeContext& context) {
  RemoveDb(path);
  auto store = Store::Init("sqlite:" + path, Keys(data, signing), context);
  Check(store.ok(), "Store::Init");
  const auto start = Clock::now();
  for (int i = 0; i < 10; ++i) {
    Check((*store)->AddEntries(RandomEntries(1'000'000, 100 + i), context, "import").ok(),
          "AddEntries");
  }
  std::printf("building the 10M store (10 imports of 1M): %.1f s\n", Seconds(start));
}

void PrintOpenTen(const OpenFigures& ten) {
  std::printf("open-10M: open+decrypt+build %.2f s (target <= 20 s; HMA ~38 s); build from "
              "memory %.2f s; ratio %.2fx\n",
              ten.open, ten.baseline, ten.open / ten.baseline);
}

void Usage() {
  std::fprintf(stderr,
               "usage: store_bench [--quick]\n"
               "       store_bench --open-only --store-dir DIR [--runs N] [--no-baseline]\n"
               "  --quick       import-1M and open-1M only\n"
               "  --open-only   open-10M only; the store and its key are kept in DIR\n"
               "                (built on the first run, reused afterwards)\n"
               "  --runs N      runs of open-10M (default 3)\n"
               "  --no-baseline skip the build-from-memory baseline\n"
               "       store_bench --postgres URL\n"
               "  --postgres    import-1M (once), verified-open-1M and change-1M in the\n"
               "                PostgreSQL database URL (empty; its tables are made)\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, open_only = false, baseline = true;
  std::string store_dir, postgres;
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else if (arg == "--open-only") {
      open_only = true;
    } else if (arg == "--no-baseline") {
      baseline = false;
    } else if (arg == "--postgres" && i + 1 < argc) {
      postgres = argv[++i];
    } else if (arg == "--store-dir" && i + 1 < argc) {
      store_dir = argv[++i];
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      Usage();
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  const SigningKey signing = SigningKey::Generate();
  const ChangeContext context{"bench", "store_bench"};
  if (open_only) {
    if (store_dir.empty()) {
      Usage();
      return 2;
    }
    std::filesystem::create_directories(store_dir);
    const std::string key_path = store_dir + "/data.key";
    const std::string path = store_dir + "/ten.db";
    if (!std::filesystem::exists(key_path) || !std::filesystem::exists(path)) {
      const DataKey key = GenerateDataKey();
      BuildTenMillion(path, key, signing, context);
      Check(WriteDataKeyFile(key_path, key).ok(), "WriteDataKeyFile");
    }
    auto key = ReadDataKeyFile(key_path);
    Check(key.ok(), "ReadDataKeyFile");
    PrintOpenTen(MeasureOpen("sqlite:" + path, *key, runs, baseline));
    return 0;
  }
  if (!postgres.empty()) {
    // Every change on PostgreSQL reads and checks every row before it and
    // reads them back after it (no commit count tells it that no one else
    // wrote): the figures to hold against SQLite's.
    const DataKey data = GenerateDataKey();
    auto store = Store::Init(postgres, Keys(data, signing), context);
    Check(store.ok(), "Store::Init (an empty database?)");
    const auto start = Clock::now();
    Check((*store)->AddEntries(RandomEntries(1'000'000, 1), context, "import").ok(),
          "AddEntries");
    const double import_s = Seconds(start);
    std::printf("import-1M (PostgreSQL): %.2f s\n", import_s);
    store->reset();
    const OpenFigures one = MeasureOpen(postgres, data, 3);
    std::printf("open-1M (PostgreSQL): open+decrypt+build %.2f s; build from memory %.2f s; "
                "ratio %.2fx\n",
                one.open, one.baseline, one.open / one.baseline);
    MeasureVerification(postgres, data, signing, context);
    MeasureReimport(postgres, data, signing, context, import_s);
    MeasureDedupe(postgres, data, signing, context);
    return 0;
  }
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("bantay-store-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const DataKey data = GenerateDataKey();

  // --- import-1M ---
  const std::vector<NewEntry> million = RandomEntries(1'000'000, 1);
  std::vector<double> imports, plains;
  for (int run = 0; run < 3; ++run) {
    const std::string path = dir + "/import.db";
    RemoveDb(path);
    const auto start = Clock::now();
    auto store = Store::Init("sqlite:" + path, Keys(data, signing), context);
    Check(store.ok(), "Store::Init");
    Check((*store)->AddEntries(million, context, "import").ok(), "AddEntries");
    imports.push_back(Seconds(start));
    store->reset();
    const std::string plain = dir + "/plain.db";
    RemoveDb(plain);
    plains.push_back(PlainSqliteInsert(plain, million));
    RemoveDb(plain);
    std::printf("import-1M run %d: store %.2f s, plain sqlite %.2f s\n", run + 1,
                imports.back(), plains.back());
  }
  const double import_s = Median(imports), plain_s = Median(plains);
  std::printf("import-1M: %.2f s (%.0f entries/s); plain-sqlite baseline %.2f s; "
              "ratio store/plain = %.2fx (target: <= 30 s)\n",
              import_s, 1e6 / import_s, plain_s, import_s / plain_s);

  // --- open-1M (the store left by the last import run) ---
  const OpenFigures one = MeasureOpen("sqlite:" + dir + "/import.db", data, 3);
  std::printf("open-1M: open+decrypt+build %.2f s; build from memory %.2f s; ratio %.2fx\n",
              one.open, one.baseline, one.open / one.baseline);
  MeasureVerification("sqlite:" + dir + "/import.db", data, signing, context);
  MeasureReimport("sqlite:" + dir + "/import.db", data, signing, context, import_s);
  MeasureDedupe("sqlite:" + dir + "/import.db", data, signing, context);

  if (!quick) {
    // --- open-10M: 10 imports of 1M ---
    const std::string path = dir + "/ten.db";
    BuildTenMillion(path, data, signing, context);
    PrintOpenTen(MeasureOpen("sqlite:" + path, data, runs));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
