#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "bantay/client/cli.h"
#include "bantay/matcher/store.h"
#include "bantay/models/digest.h"
#include "bantay/models/hash256.h"
#include "cli_run.h"
#include "pg_cluster.h"
#include "test_images.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using bantay::testing::CliRun;
using bantay::testing::TempDir;

// Benign reference hashes (tests/data/pdq/expected-pdq.csv).
constexpr char kOriginal[] =
    "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
constexpr char kRotate90[] =
    "30a10efdf1c83f429013d48d0ffffc52e34e0e35ada952a9d29605215aa9e5af";
constexpr char kSharpenALot[] =
    "d0f8f0cec0f4a84f0e370a22238f67f0b36a2ef596231e1d73e6a39c4e9c9b22";
constexpr char kMd5[] = "0123456789abcdef0123456789abcdef";

std::vector<uint8_t> Text(const std::string& s) { return {s.begin(), s.end()}; }

// A store with its keys in a temporary directory, driven through the
// command's in-process entry point.
class IndexCli {
 public:
  explicit IndexCli(std::string store_url = "") : store_(std::move(store_url)) {
    if (store_.empty()) store_ = "sqlite:" + dir_.path() + "/store.db";
    keys_ = dir_.path() + "/keys";
  }

  CliRun Run(std::vector<std::string> args, bool with_keys = true) const {
    args.insert(args.end(), {"--store", store_, "--actor", "tester"});
    if (with_keys) {
      args.insert(args.end(), {"--key", keys_ + "/data.key", "--signing-key",
                               keys_ + "/signing.key"});
    }
    return bantay::testing::RunCommand(RunIndexCommand, args);
  }

  void Create() const {
    CliRun gen = bantay::testing::RunCommand(RunIndexCommand,
                                             {"keygen", "--out", keys_});
    ASSERT_EQ(gen.status, kExitOk) << gen.err;
    CliRun init = Run({"init"});
    ASSERT_EQ(init.status, kExitOk) << init.err;
    ASSERT_EQ(init.lines.size(), 1u);
    ASSERT_EQ(init.lines[0].at("version").as_int64(), 1);
  }

  std::string Write(const std::string& name, const std::string& text) const {
    return dir_.Write(name, Text(text));
  }

  const std::string& store() const { return store_; }
  const std::string& keys() const { return keys_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::string store_;
  std::string keys_;
};

TEST(IndexCommandTest, KeygenWritesPrivateFilesAndNeverOverwrites) {
  TempDir dir;
  const std::string out = dir.path() + "/k";
  CliRun gen =
      bantay::testing::RunCommand(RunIndexCommand, {"keygen", "--out", out});
  ASSERT_EQ(gen.status, kExitOk) << gen.err;
  for (const char* name : {"/data.key", "/signing.key"}) {
    struct stat st {};
    ASSERT_EQ(::stat((out + name).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << name;
  }
  EXPECT_EQ(gen.lines[0].at("data_key_id").as_string().size(), 16u);
  EXPECT_EQ(gen.lines[0].at("public_key_hex").as_string().size(), 64u);
  // The key itself is never printed.
  std::ifstream key_file(out + "/data.key");
  std::string key;
  key_file >> key;
  EXPECT_EQ(gen.out.find(key), std::string::npos);
  CliRun again =
      bantay::testing::RunCommand(RunIndexCommand, {"keygen", "--out", out});
  EXPECT_EQ(again.status, kExitSomeFailed);
  EXPECT_EQ(again.err,
            "bantay index keygen: " + out +
                "/data.key already exists; keys are never overwritten\n");
}

TEST(IndexCommandTest, ImportIsAllOrNothingAndReportsEveryBadLine) {
  IndexCli cli;
  cli.Create();
  const std::string list =
      cli.Write("list.txt", std::string("pdq ") + kOriginal + " case-1\n" +
                                "pdq 12345\n" + kRotate90 + " case-2\n" +
                                "phash " + kOriginal + " x\n");
  CliRun run = cli.Run({"import", list, "--list", "hotline-a"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "bantay index import: " + list +
                ":2: a PDQ hash is 64 hexadecimal digits, got 5 characters\n"
                "bantay index import: " +
                list +
                ":4: unknown signal type 'phash' (pdq, md5 or sha256)\n"
                "bantay index import: 2 line(s) rejected; nothing imported "
                "(--skip-invalid "
                "imports the valid lines)\n");
  CliRun stats = cli.Run({"stats"});
  ASSERT_EQ(stats.status, kExitOk) << stats.err;
  EXPECT_EQ(stats.lines[0].at("version").as_int64(), 1);
  EXPECT_EQ(stats.lines[0].at("active").at("pdq").as_int64(), 0);

  CliRun skip =
      cli.Run({"import", list, "--list", "hotline-a", "--skip-invalid"});
  EXPECT_EQ(skip.status, kExitSomeFailed);  // some lines were rejected
  ASSERT_EQ(skip.lines.size(), 1u);
  EXPECT_EQ(json::serialize(skip.lines[0]),
            R"({"version":2,"added":2,"already_present":0,"rejected":2})");
  CliRun entries = cli.Run({"list", "--list", "hotline-a", "--show-values"});
  ASSERT_EQ(entries.status, kExitOk) << entries.err;
  ASSERT_EQ(entries.lines.size(), 2u);
  EXPECT_EQ(entries.lines[0].at("id").as_int64(), 1);
  EXPECT_EQ(entries.lines[0].at("value").as_string(), kOriginal);
  EXPECT_EQ(entries.lines[0].at("reference").as_string(), "case-1");
  EXPECT_EQ(entries.lines[0].at("source").as_string(), "list.txt");
  EXPECT_EQ(entries.lines[0].at("added_by").as_string(), "tester");
  EXPECT_EQ(entries.lines[0].at("status").as_string(), "active");
  EXPECT_EQ(entries.lines[1].at("value").as_string(), kRotate90);
  // Without --show-values, no hash leaves the store.
  CliRun hidden = cli.Run({"list", "--list", "hotline-a"});
  EXPECT_EQ(hidden.out.find(kOriginal), std::string::npos);
  EXPECT_FALSE(hidden.lines[0].contains("value"));
}

// A successful import's answer (version made, entries added, lines
// rejected), exactly.
void ExpectImported(const CliRun& run, const std::string& answer) {
  EXPECT_EQ(run.status, kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 1u) << run.out;
  EXPECT_EQ(json::serialize(run.lines[0]), answer);
}

// A line of a local_file or CSV import is read whole before it is parsed:
// one without an end would take all memory. Lines up to 65536 bytes (without
// the line break) are read; a longer one ends the import, nothing imported.
TEST(IndexCommandTest, ImportRefusesALineOverTheLimit) {
  IndexCli cli;
  cli.Create();
  const std::string valid = std::string("pdq ") + kOriginal + " case-1\n";
  const std::string at_limit = "#" + std::string(65535, 'x') + "\n";
  const std::string over = "#" + std::string(65536, 'x') + "\n";
  const std::string long_list = cli.Write("long.txt", valid + over + valid);
  CliRun run = cli.Run({"import", long_list, "--list", "l"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay index import: " + long_list +
                         ":2: a line longer than 65536 bytes (no record is near "
                         "that); nothing imported\n");
  // Without any line break at all (as /dev/zero through a pipe), in CSV.
  const std::string endless = cli.Write("endless.csv", std::string(200000, '\0'));
  run = cli.Run({"import", endless, "--list", "l", "--skip-invalid"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.err, "bantay index import: " + endless +
                         ":1: a line longer than 65536 bytes (no record is near "
                         "that); nothing imported\n");
  CliRun stats = cli.Run({"stats"});
  ASSERT_EQ(stats.status, kExitOk) << stats.err;
  EXPECT_EQ(stats.lines[0].at("version").as_int64(), 1);

  const std::string ok_list = cli.Write("ok.txt", valid + at_limit + valid);
  ASSERT_EQ(at_limit.size(), 65536u + 1);
  // The same line twice: added once.
  ExpectImported(cli.Run({"import", ok_list, "--list", "l"}),
                 R"({"version":2,"added":1,"already_present":1,"rejected":0})");
}

// An import reads a file or a FIFO (a pipe, <(...)); a device never ends
// (/dev/zero, /dev/urandom) and a directory reads as nothing.
TEST(IndexCommandTest, ImportReadsFilesAndFifosNotDevicesOrDirectories) {
  IndexCli cli;
  cli.Create();
  for (const auto& [path, what] :
       {std::pair<std::string, std::string>{"/dev/zero", "a device"},
        {cli.dir().path(), "a directory"}}) {
    CliRun run = cli.Run({"import", path, "--list", "l"});
    EXPECT_EQ(run.status, kExitSomeFailed) << path;
    EXPECT_EQ(run.err, "bantay index import: " + path + ": not a file or a FIFO (" +
                           what + "); nothing imported\n");
  }
  const std::string fifo = cli.dir().path() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    std::ofstream(fifo) << "pdq " << kOriginal << " case-1\n";
  });
  CliRun run = cli.Run({"import", fifo, "--list", "l"});
  writer.join();
  ExpectImported(run, R"({"version":2,"added":1,"already_present":0,"rejected":0})");
}

// With --list, a record naming another list is rejected, as the server's
// import refuses it: an import never creates a list it was not told of.
TEST(IndexCommandTest, ImportWithListRefusesRecordsOfAnotherList) {
  IndexCli cli;
  cli.Create();
  const std::string csv = cli.Write(
      "b.csv", std::string("type,value,list,category,reference\n") + "pdq," + kOriginal +
                   ",csvl,,case-1\n" + "pdq," + kRotate90 + ",otherlist,,case-2\n" + "md5," +
                   kMd5 + ",,,case-3\n");
  CliRun run = cli.Run({"import", csv, "--list", "csvl"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "bantay index import: " + csv +
                         ":3: the record names list \"otherlist\", not \"csvl\"\n"
                         "bantay index import: 1 line(s) rejected; nothing imported "
                         "(--skip-invalid imports the valid lines)\n");
  CliRun none = cli.Run({"list"});
  EXPECT_EQ(none.out, "");
  CliRun skip = cli.Run({"import", csv, "--list", "csvl", "--skip-invalid"});
  EXPECT_EQ(skip.status, kExitSomeFailed);
  ASSERT_EQ(skip.lines.size(), 1u);
  EXPECT_EQ(json::serialize(skip.lines[0]),
            R"({"version":2,"added":2,"already_present":0,"rejected":1})");
  CliRun lists = cli.Run({"list"});
  ASSERT_EQ(lists.lines.size(), 1u) << lists.out;
  EXPECT_EQ(json::serialize(lists.lines[0]),
            R"({"list":"csvl","enabled":true,"description":"","active":2,"disabled":0})");
}

// A list imported again adds only what is new: what the list holds already
// (same type and value, whatever the reference) is counted, not added; when
// nothing is new, no version is made. `add` says what it left out.
TEST(IndexCommandTest, ImportingAListAgainAddsOnlyWhatIsNew) {
  IndexCli cli;
  cli.Create();
  const std::string first = cli.Write(
      "week1.txt", std::string("pdq ") + kOriginal + " case-1\n" + "md5 " + kMd5 + " case-2\n");
  ExpectImported(cli.Run({"import", first, "--list", "hotline-a"}),
                 R"({"version":2,"added":2,"already_present":0,"rejected":0})");
  ExpectImported(cli.Run({"import", first, "--list", "hotline-a"}),
                 R"({"version":2,"added":0,"already_present":2,"rejected":0})");
  // The next week's export: the two again (one with another reference), one
  // new, given twice.
  const std::string second = cli.Write(
      "week2.txt", std::string("pdq ") + kOriginal + " case-1b\n" + "md5 " + kMd5 +
                       " case-2\n" + "pdq " + kRotate90 + " case-3\n" + "pdq " + kRotate90 +
                       " case-3\n");
  ExpectImported(cli.Run({"import", second, "--list", "hotline-a"}),
                 R"({"version":3,"added":1,"already_present":3,"rejected":0})");
  // Another list holds what it is given.
  ExpectImported(cli.Run({"import", first, "--list", "ngo-b"}),
                 R"({"version":4,"added":2,"already_present":0,"rejected":0})");
  CliRun entries = cli.Run({"list", "--list", "hotline-a"});
  ASSERT_EQ(entries.status, kExitOk) << entries.err;
  ASSERT_EQ(entries.lines.size(), 3u);
  EXPECT_EQ(entries.lines[0].at("reference").as_string(), "case-1");
  EXPECT_EQ(entries.lines[2].at("id").as_int64(), 3);
  EXPECT_EQ(entries.lines[2].at("reference").as_string(), "case-3");

  CliRun add = cli.Run({"add", "--list", "hotline-a", "--pdq", kRotate90, "--pdq", kSharpenALot});
  EXPECT_EQ(add.status, kExitOk) << add.err;
  EXPECT_EQ(add.err, std::string("bantay index add: --pdq ") + kRotate90 +
                         ": list 'hotline-a' holds it already (entry 3); not added\n");
  ASSERT_EQ(add.lines.size(), 1u);
  EXPECT_EQ(json::serialize(add.lines[0]), R"({"version":5,"added":1,"already_present":1})");
  CliRun none = cli.Run({"add", "--list", "hotline-a", "--pdq", kSharpenALot});
  EXPECT_EQ(none.status, kExitOk) << none.err;
  ASSERT_EQ(none.lines.size(), 1u) << none.out;
  EXPECT_EQ(json::serialize(none.lines[0]), R"({"version":5,"added":0,"already_present":1})");
  // A value given twice is added once, and said so.
  CliRun twice = cli.Run({"add", "--list", "ngo-b", "--pdq", kSharpenALot, "--pdq", kSharpenALot});
  EXPECT_EQ(twice.status, kExitOk) << twice.err;
  EXPECT_EQ(twice.err, std::string("bantay index add: --pdq ") + kSharpenALot +
                           ": given twice (entry 7); not added\n");
  ASSERT_EQ(twice.lines.size(), 1u) << twice.out;
  EXPECT_EQ(json::serialize(twice.lines[0]), R"({"version":6,"added":1,"already_present":1})");
  // Given twice again: the list holds it, both times.
  CliRun held = cli.Run({"add", "--list", "ngo-b", "--pdq", kSharpenALot, "--pdq", kSharpenALot});
  EXPECT_EQ(held.status, kExitOk) << held.err;
  const std::string held_line = std::string("bantay index add: --pdq ") + kSharpenALot +
                                ": list 'ngo-b' holds it already (entry 7); not added\n";
  EXPECT_EQ(held.err, held_line + held_line);
  ASSERT_EQ(held.lines.size(), 1u) << held.out;
  EXPECT_EQ(json::serialize(held.lines[0]), R"({"version":6,"added":0,"already_present":2})");
  CliRun audit = cli.Run({"audit"});
  ASSERT_EQ(audit.status, kExitOk) << audit.err;
  ASSERT_EQ(audit.lines.size(), 6u);
  EXPECT_EQ(audit.lines[2].at("action").as_string(), "import");
  EXPECT_EQ(audit.lines[2].at("count").as_int64(), 1);
  EXPECT_EQ(audit.lines[4].at("action").as_string(), "add");
  EXPECT_EQ(audit.lines[4].at("count").as_int64(), 1);
}

// A store that took an export twice before imports left out what a list
// held: `dedupe --dry-run` says what it would remove, `dedupe` removes it
// (one audited version) and leaves the groups whose copies differ.
TEST(IndexCommandTest, DedupeRemovesTheLaterCopiesOfAValue) {
  IndexCli cli;
  cli.Create();
  {
    matcher::StoreKeys keys;
    keys.data_keys.push_back(*matcher::ReadDataKeyFile(cli.keys() + "/data.key"));
    Result<matcher::SigningKey> signing =
        matcher::SigningKey::ReadPemFile(cli.keys() + "/signing.key");
    ASSERT_TRUE(signing.ok()) << signing.error().ToString();
    keys.signing_key = std::move(*signing);
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(cli.store(), std::move(keys));
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    auto entry = [](std::string list, const char* hex, std::string category) {
      matcher::NewEntry e;
      e.list = std::move(list);
      e.type = matcher::SignalType::kPdq;
      e.value = models::Hash256::FromHex(hex)->bytes();
      e.category = std::move(category);
      e.reference = "case";
      return e;
    };
    // The same export twice (ids 1-2, 3-4), then a value again with
    // another category (5), the same export into another list (6-7), whose
    // first entry is disabled and then given again (8).
    Result<uint64_t> v = (*store)->AddEntries(
        {entry("hotline-a", kOriginal, "A1"), entry("hotline-a", kRotate90, "A1"),
         entry("hotline-a", kOriginal, "A1"), entry("hotline-a", kRotate90, "A1"),
         entry("hotline-a", kRotate90, "B2"), entry("ngo-b", kOriginal, "A1"),
         entry("ngo-b", kRotate90, "A1"), entry("ngo-b", kOriginal, "A1")},
        {"tester", "old-bantay"});
    ASSERT_TRUE(v.ok()) << v.error().ToString();
    ASSERT_EQ(*v, 2u);
    ASSERT_EQ(*(*store)->SetEntriesStatus({6}, matcher::EntryStatus::kDisabled,
                                          {"tester", "cli"}),
              3u);
  }
  const std::string category_check =
      R"("check":"its entries differ in category or reference","entries":[)"
      R"({"id":2,"status":"active","category":"A1","reference":"case"},)"
      R"({"id":5,"status":"active","category":"B2","reference":"case"}]})";
  const std::string status_check =
      R"("check":"entry 6 is disabled, but entry 8 with the same value is active",)"
      R"("entries":[{"id":6,"status":"disabled","category":"A1","reference":"case"},)"
      R"({"id":8,"status":"active","category":"A1","reference":"case"}]})";
  CliRun dry = cli.Run({"dedupe", "--dry-run"});
  ASSERT_EQ(dry.status, kExitOk) << dry.err;
  ASSERT_EQ(dry.lines.size(), 4u) << dry.out;
  EXPECT_EQ(json::serialize(dry.lines[0]),
            R"({"list":"hotline-a","type":"pdq","kept":[1],"would_remove":[3]})");
  EXPECT_EQ(json::serialize(dry.lines[1]),
            R"({"list":"hotline-a","type":"pdq","kept":[2,5],"would_remove":[4],)" +
                category_check);
  EXPECT_EQ(json::serialize(dry.lines[2]),
            R"({"list":"ngo-b","type":"pdq","kept":[6,8],"would_remove":[],)" + status_check);
  EXPECT_EQ(json::serialize(dry.lines[3]),
            R"({"version":3,"groups":3,"would_remove":2,"to_check":2,"dry_run":true})");
  CliRun unknown = cli.Run({"dedupe", "--list", "nowhere"});
  EXPECT_EQ(unknown.status, kExitSomeFailed);
  EXPECT_EQ(unknown.err, "bantay index dedupe: no list \"nowhere\"\n");
  CliRun empty = cli.Run({"dedupe", "--list", ""});
  EXPECT_EQ(empty.status, kExitUsage);
  EXPECT_EQ(empty.err, "bantay index: --list needs a list name\n");
  CliRun misplaced = cli.Run({"remove", "3", "--dry-run"});
  EXPECT_EQ(misplaced.status, kExitUsage);
  EXPECT_EQ(misplaced.err, "bantay index: --dry-run is for dedupe only\n");
  for (const char* bad : {"abc", "0", "-1", "3x"}) {
    CliRun unversioned = cli.Run({"dedupe", "--version", bad});
    EXPECT_EQ(unversioned.status, kExitUsage) << bad;
    EXPECT_EQ(unversioned.err, "bantay index: --version needs a version number\n") << bad;
  }
  CliRun moved = cli.Run({"dedupe", "--version", "2"});
  EXPECT_EQ(moved.status, kExitSomeFailed);
  EXPECT_EQ(moved.err,
            "bantay index dedupe: the store is at version 3, not 2: it changed since; look "
            "again\n");

  CliRun done = cli.Run({"dedupe", "--list", "hotline-a", "--version", "3"});
  ASSERT_EQ(done.status, kExitOk) << done.err;
  ASSERT_EQ(done.lines.size(), 3u) << done.out;
  EXPECT_EQ(json::serialize(done.lines[0]),
            R"({"list":"hotline-a","type":"pdq","kept":[1],"removed":[3]})");
  EXPECT_EQ(json::serialize(done.lines[1]),
            R"({"list":"hotline-a","type":"pdq","kept":[2,5],"removed":[4],)" + category_check);
  EXPECT_EQ(json::serialize(done.lines[2]),
            R"({"version":4,"groups":2,"removed":2,"to_check":1})");
  CliRun again = cli.Run({"dedupe"});
  ASSERT_EQ(again.status, kExitOk) << again.err;
  ASSERT_EQ(again.lines.size(), 3u) << again.out;
  EXPECT_EQ(json::serialize(again.lines[0]),
            R"({"list":"hotline-a","type":"pdq","kept":[2,5],"removed":[],)" + category_check);
  EXPECT_EQ(json::serialize(again.lines[1]),
            R"({"list":"ngo-b","type":"pdq","kept":[6,8],"removed":[],)" + status_check);
  EXPECT_EQ(json::serialize(again.lines[2]),
            R"({"version":4,"groups":2,"removed":0,"to_check":2})");
  CliRun audit = cli.Run({"audit", "--after", "3"});
  ASSERT_EQ(audit.status, kExitOk) << audit.err;
  ASSERT_EQ(audit.lines.size(), 1u);
  EXPECT_EQ(audit.lines[0].at("action").as_string(), "dedupe");
  EXPECT_EQ(audit.lines[0].at("list").as_string(), "hotline-a");
  EXPECT_EQ(audit.lines[0].at("count").as_int64(), 2);
  CliRun entries = cli.Run({"list", "--list", "hotline-a"});
  ASSERT_EQ(entries.status, kExitOk) << entries.err;
  ASSERT_EQ(entries.lines.size(), 3u);
  EXPECT_EQ(entries.lines[0].at("id").as_int64(), 1);
  EXPECT_EQ(entries.lines[1].at("id").as_int64(), 2);
  EXPECT_EQ(entries.lines[2].at("id").as_int64(), 5);
  CliRun verify = cli.Run({"verify", "--public-key", cli.keys() + "/signing.pub"});
  EXPECT_EQ(verify.status, kExitOk) << verify.out << verify.err;
}

// A list's entries are listed 1,000 at a time by default: the cut is said,
// with how to go on. A list that does not exist is an error.
TEST(IndexCommandTest, ListingSaysWhereItWasCutAndRefusesAnUnknownList) {
  IndexCli cli;
  cli.Create();
  std::string md5s;
  for (int i = 1; i <= 1001; ++i) {
    char hex[33];
    std::snprintf(hex, sizeof hex, "%032x", i);
    md5s += std::string("md5 ") + hex + "\n";
  }
  ASSERT_EQ(cli.Run({"import", cli.Write("bulk.txt", md5s), "--list", "bulk"}).status, kExitOk);
  CliRun first = cli.Run({"list", "--list", "bulk"});
  EXPECT_EQ(first.status, kExitOk) << first.err;
  ASSERT_EQ(first.lines.size(), 1000u);
  EXPECT_EQ(first.lines.back().at("id").as_int64(), 1000);
  EXPECT_EQ(first.err,
            "bantay index list: cut at 1000 entries (the limit; --limit N changes it); "
            "--after 1000 lists the next ones\n");
  CliRun values = cli.Run({"list", "--list", "bulk", "--show-values", "--limit", "2"});
  EXPECT_EQ(values.lines.size(), 2u);
  EXPECT_EQ(values.err,
            "bantay index list: cut at 2 entries (the limit; --limit N changes it); "
            "--after 2 lists the next ones\n");
  CliRun rest = cli.Run({"list", "--list", "bulk", "--after", "1000"});
  EXPECT_EQ(rest.status, kExitOk);
  ASSERT_EQ(rest.lines.size(), 1u);
  EXPECT_EQ(rest.lines[0].at("id").as_int64(), 1001);
  EXPECT_EQ(rest.err, "");
  CliRun all = cli.Run({"list", "--list", "bulk", "--limit", "1001"});
  EXPECT_EQ(all.lines.size(), 1001u);
  EXPECT_EQ(all.err, "");

  CliRun nosuch = cli.Run({"list", "--list", "nosuch"});
  EXPECT_EQ(nosuch.status, kExitSomeFailed);
  EXPECT_EQ(nosuch.out, "");
  EXPECT_EQ(nosuch.err, "bantay index list: no list named 'nosuch'\n");
}

TEST(IndexCommandTest, CsvAndBareHashImports) {
  IndexCli cli;
  cli.Create();
  const std::string csv = cli.Write(
      "list.csv", std::string("type,value,list,category,reference\n") + "pdq," +
                      kOriginal + ",ngo-b,A1,\"case, 7\"\n" + "md5," + kMd5 +
                      ",default-list,B2,case-8\n");
  // Without --list, each record goes to the list it names.
  CliRun run = cli.Run({"import", csv});
  ASSERT_EQ(run.status, kExitOk) << run.err;
  const std::string bare = cli.Write("bare.txt", std::string(kMd5) + "\n");
  CliRun md5 = cli.Run({"import", bare, "--list", "md5s", "--type", "md5"});
  ASSERT_EQ(md5.status, kExitOk) << md5.err;
  CliRun described =
      cli.Run({"add", "--list", "ngo-b", "--description", "NGO B, weekly"});
  ASSERT_EQ(described.status, kExitOk) << described.err;
  EXPECT_EQ(json::serialize(described.lines[0]),
            R"({"list":"ngo-b","description":"NGO B, weekly","version":4})");
  CliRun lists = cli.Run({"list"});
  ASSERT_EQ(lists.status, kExitOk) << lists.err;
  ASSERT_EQ(lists.lines.size(), 3u);
  EXPECT_EQ(lists.lines[2].at("description").as_string(), "NGO B, weekly");
  EXPECT_EQ(
      json::serialize(lists.lines[0]),
      R"({"list":"default-list","enabled":true,"description":"","active":1,"disabled":0})");
  EXPECT_EQ(lists.lines[1].at("list").as_string(), "md5s");
  EXPECT_EQ(lists.lines[2].at("list").as_string(), "ngo-b");
  CliRun entries = cli.Run({"list", "--list", "ngo-b"});
  ASSERT_EQ(entries.lines.size(), 1u);
  EXPECT_EQ(entries.lines[0].at("reference").as_string(), "case, 7");
  EXPECT_EQ(entries.lines[0].at("category").as_string(), "A1");
}

// A list of SHA-256 digests whose lines do not name their type: read as
// PDQ hashes they would never match, so the digests that cannot be PDQ
// hashes (a PDQ hash sets 128 of its bits) are refused; --type sha256
// imports them as what they are.
TEST(IndexCommandTest, BareDigestsAreNotTakenForPdqHashes) {
  IndexCli cli;
  cli.Create();
  // SHA-256 of "a" (134 bits set) and of "b" (118).
  const std::string a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";
  const std::string b = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";
  const std::string list = cli.Write("digests.txt", a + " case-1\n" + b + " case-2\n");
  CliRun run = cli.Run({"import", list, "--list", "hotline-a"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  auto refused = [&](int line, int bits) {
    return "bantay index import: " + list + ":" + std::to_string(line) +
           ": a bare value is read as PDQ, but this one sets " + std::to_string(bits) +
           " of its 256 bits where a PDQ hash sets 128: name its type (\"sha256 VALUE\"), or "
           "give the type of bare values\n";
  };
  EXPECT_EQ(run.err, refused(1, 134) + refused(2, 118) +
                         "bantay index import: 2 line(s) rejected; nothing imported "
                         "(--skip-invalid imports the valid lines)\n");
  CliRun typed = cli.Run({"import", list, "--list", "hotline-a", "--type", "sha256"});
  ASSERT_EQ(typed.status, kExitOk) << typed.err;
  CliRun stats = cli.Run({"stats"});
  ASSERT_EQ(stats.status, kExitOk) << stats.err;
  EXPECT_EQ(stats.lines[0].at("active").at("sha256").as_int64(), 2);
  EXPECT_EQ(stats.lines[0].at("active").at("pdq").as_int64(), 0);
}

TEST(IndexCommandTest, ChangesAreVersionedAuditedAndMatchedOffline) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(cli.Run({"add", "--list", "a", "--pdq", kOriginal, "--reference",
                     "r1", "--category", "c1"})
                .status,
            kExitOk);
  ASSERT_EQ(
      cli.Run({"add", "--list", "b", "--pdq", kSharpenALot, "--md5", kMd5})
          .status,
      kExitOk);
  auto match = [&](const std::string& query) {
    return bantay::testing::RunCommand(
        RunMatchCommand,
        {"--index", cli.store(), "--key", cli.keys() + "/data.key", "--pdq",
         query, "--radius", "31"});
  };
  CliRun m = match(kOriginal);
  ASSERT_EQ(m.status, kExitOk) << m.err;
  ASSERT_EQ(m.lines[0].at("matches").as_array().size(), 2u);
  EXPECT_EQ(
      json::serialize(m.lines[0].at("matches").as_array()[0]),
      R"({"list":"a","category":"c1","ref":"r1","distance":0,"variant":"original"})");

  CliRun disable = cli.Run({"disable", "--list", "b"});
  ASSERT_EQ(disable.status, kExitOk) << disable.err;
  EXPECT_EQ(disable.lines[0].at("version").as_int64(), 4);
  EXPECT_EQ(match(kOriginal).lines[0].at("matches").as_array().size(), 1u);
  ASSERT_EQ(cli.Run({"disable", "1"}).status, kExitOk);
  // No active entry left: matching would find nothing, whatever the query.
  CliRun none = match(kOriginal);
  EXPECT_EQ(none.status, kExitUsage);
  EXPECT_EQ(none.err, "bantay match: the index " + cli.store() +
                          " has no active entries; matching against it would find nothing\n");
  EXPECT_EQ(none.out, "");
  ASSERT_EQ(cli.Run({"enable", "1"}).status, kExitOk);
  ASSERT_EQ(cli.Run({"enable", "--list", "b"}).status, kExitOk);
  CliRun removed = cli.Run({"remove", "2"});
  ASSERT_EQ(removed.status, kExitOk) << removed.err;
  EXPECT_EQ(removed.lines[0].at("version").as_int64(), 8);
  CliRun missing = cli.Run({"remove", "2"});
  EXPECT_EQ(missing.status, kExitSomeFailed);
  EXPECT_EQ(missing.err, "bantay index remove: no entry with id 2\n");

  CliRun audit = cli.Run({"audit"});
  ASSERT_EQ(audit.status, kExitOk) << audit.err;
  std::vector<std::string> actions;
  for (const auto& line : audit.lines)
    actions.push_back(std::string(line.at("action").as_string()));
  EXPECT_EQ(actions, (std::vector<std::string>{
                         "init", "add", "add", "disable_list", "disable",
                         "enable", "enable_list", "remove"}));
  EXPECT_EQ(audit.lines[1].at("actor").as_string(), "tester");
  EXPECT_EQ(audit.lines[1].at("prev_digest"), audit.lines[0].at("digest"));

  CliRun verify =
      cli.Run({"verify", "--public-key", cli.keys() + "/signing.pub"});
  EXPECT_EQ(verify.status, kExitOk) << verify.err;
  EXPECT_EQ(
      json::serialize(verify.lines[0]),
      R"({"ok":true,"version":8,"audit_records":8,"entries":2,"values_checked":true,)"
      R"("key":"given","problems":[]})");
  EXPECT_EQ(verify.err, "");

  CliRun root = cli.Run({"root", "--public-key", cli.keys() + "/signing.pub"});
  ASSERT_EQ(root.status, kExitOk) << root.err;
  EXPECT_EQ(root.lines[0].at("version").as_int64(), 8);
  EXPECT_EQ(root.lines[0].at("active_count").as_int64(), 2);
  EXPECT_EQ(root.lines[0].at("signature_valid").as_bool(), true);
  EXPECT_EQ(root.lines[0].at("state_digest").as_string().size(), 64u);
  CliRun proof = cli.Run({"root", "--prove", "3"});
  ASSERT_EQ(proof.status, kExitOk) << proof.err;
  EXPECT_EQ(proof.lines[0].at("included").as_bool(), true);
  EXPECT_EQ(proof.lines[0].at("leaf_index").as_int64(), 1);
  EXPECT_EQ(proof.lines[0].at("root"), root.lines[0].at("root"));
}

// An auditor holds the public key, not the data key: stats, audit, root
// and a verification of everything signed work without it (the values are
// not decrypted, and verify says so); reading values still needs it. A
// verification without a trusted key warns that it proves little.
TEST(IndexCommandTest, AnAuditorNeedsNoDataKey) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(cli.Run({"add", "--list", "a", "--pdq", kOriginal, "--pdq", kRotate90}).status,
            kExitOk);
  ASSERT_EQ(cli.Run({"disable", "2"}).status, kExitOk);
  const std::string pub = cli.keys() + "/signing.pub";
  CliRun stats = cli.Run({"stats"}, /*with_keys=*/false);
  ASSERT_EQ(stats.status, kExitOk) << stats.err;
  EXPECT_EQ(stats.lines[0].at("version").as_int64(), 3);
  EXPECT_EQ(stats.lines[0].at("disabled").as_int64(), 1);
  CliRun audit = cli.Run({"audit"}, false);
  ASSERT_EQ(audit.status, kExitOk) << audit.err;
  EXPECT_EQ(audit.lines.size(), 3u);
  CliRun root = cli.Run({"root", "--public-key", pub}, false);
  ASSERT_EQ(root.status, kExitOk) << root.err;
  EXPECT_EQ(root.lines[0].at("signature_valid").as_bool(), true);
  CliRun verify = cli.Run({"verify", "--public-key", pub}, false);
  EXPECT_EQ(verify.status, kExitOk) << verify.err;
  EXPECT_EQ(json::serialize(verify.lines[0]),
            R"({"ok":true,"version":3,"audit_records":3,"entries":2,"values_checked":false,)"
            R"("key":"given","problems":[]})");
  EXPECT_EQ(verify.err,
            "bantay index verify: no data key given: the values were not decrypted, so each "
            "entry's fields were not checked against its leaf hash (the signatures, the audit "
            "chain, the root and the state were)\n");
  CliRun unkeyed = cli.Run({"verify"});
  EXPECT_EQ(unkeyed.status, kExitOk) << unkeyed.err;
  EXPECT_EQ(unkeyed.lines[0].at("key").as_string(), "stored");
  EXPECT_EQ(unkeyed.err,
            "bantay index verify: warning: the signatures were checked against the public key "
            "the store holds, which whoever can rewrite the database can replace; give "
            "--public-key for a check that proves something\n");
  CliRun values = cli.Run({"list", "--list", "a", "--show-values"}, false);
  EXPECT_EQ(values.status, kExitSomeFailed);
  EXPECT_EQ(values.err,
            "bantay index list: no data key: give --key FILE (or set BANTAY_DATA_KEY_FILE or "
            "BANTAY_DATA_KEY)\n");
}

// A store made by a Bantay before schema 2 (tests/data/store-v1): verify
// warns that its version does not sign the whole state, changes are refused
// until `upgrade`, which signs it once.
TEST(IndexCommandTest, AStoreOfSchema1IsUpgradedOnce) {
  TempDir dir;
  const std::string fixture = std::string(BANTAY_TEST_DATA) + "/store-v1/";
  for (const char* name : {"store-v1.db", "data.key", "signing.key", "signing.pub"}) {
    std::filesystem::copy_file(fixture + name, dir.path() + "/" + name);
    ::chmod((dir.path() + "/" + name).c_str(), 0600);
  }
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.end(), {"--store", "sqlite:" + dir.path() + "/store-v1.db", "--key",
                             dir.path() + "/data.key", "--signing-key",
                             dir.path() + "/signing.key", "--public-key",
                             dir.path() + "/signing.pub", "--actor", "tester"});
    return bantay::testing::RunCommand(RunIndexCommand, args);
  };
  CliRun before = run({"verify"});
  EXPECT_EQ(before.status, kExitOk) << before.err;
  EXPECT_EQ(before.err,
            "bantay index verify: warning: version 5 does not sign the whole state (a store "
            "made by a Bantay before schema 2): the states of disabled entries and of lists are "
            "the database's word until bantay index upgrade signs them\n");
  CliRun refused = run({"enable", "--list", "beta"});
  EXPECT_EQ(refused.status, kExitSomeFailed);
  EXPECT_EQ(refused.err,
            "bantay index enable: the store is of schema 1 (made by a Bantay before store schema "
            "2, whose versions do not sign the whole state; or the store's newer versions were "
            "deleted): check it with bantay index verify --public-key, then sign its whole "
            "state once with bantay index upgrade\n");
  CliRun upgraded = run({"upgrade"});
  ASSERT_EQ(upgraded.status, kExitOk) << upgraded.err;
  EXPECT_EQ(json::serialize(upgraded.lines[0]), R"({"version":6})");
  CliRun again = run({"upgrade"});
  ASSERT_EQ(again.status, kExitOk) << again.err;
  EXPECT_EQ(json::serialize(again.lines[0]), R"({"version":6})");
  CliRun enabled = run({"enable", "--list", "beta"});
  ASSERT_EQ(enabled.status, kExitOk) << enabled.err;
  CliRun after = run({"verify"});
  EXPECT_EQ(after.status, kExitOk) << after.err;
  EXPECT_EQ(after.err, "");
  EXPECT_EQ(after.lines[0].at("version").as_int64(), 7);
}

TEST(IndexCommandTest, WrongKeysAreRefusedClearly) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(cli.Run({"add", "--list", "a", "--pdq", kOriginal}).status,
            kExitOk);
  // A change without the signing key.
  CliRun unsigned_change = bantay::testing::RunCommand(
      RunIndexCommand, {"add", "--list", "a", "--pdq", kRotate90, "--store",
                        cli.store(), "--key", cli.keys() + "/data.key"});
  EXPECT_EQ(unsigned_change.status, kExitSomeFailed);
  EXPECT_EQ(unsigned_change.err,
            "bantay index add: no signing key: give --signing-key FILE (or set "
            "BANTAY_SIGNING_KEY_FILE); every change to the store is signed\n");
  // Another data key cannot read the values.
  CliRun gen = bantay::testing::RunCommand(
      RunIndexCommand, {"keygen", "--out", cli.dir().path() + "/other"});
  ASSERT_EQ(gen.status, kExitOk);
  CliRun other = bantay::testing::RunCommand(
      RunIndexCommand, {"list", "--list", "a", "--store", cli.store(), "--key",
                        cli.dir().path() + "/other/data.key"});
  EXPECT_EQ(other.status, kExitSomeFailed);
  EXPECT_NE(other.err.find("which was not given"), std::string::npos)
      << other.err;
  // Another public key does not verify the versions.
  CliRun verify = cli.Run(
      {"verify", "--public-key", cli.dir().path() + "/other/signing.pub"});
  EXPECT_EQ(verify.status, kExitSomeFailed);
  EXPECT_EQ(verify.lines[0].at("problems").as_array().size(),
            2u);  // versions 1 and 2
}

TEST(IndexCommandTest, RekeyThenOnlyTheNewKeyReads) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(
      cli.Run({"add", "--list", "a", "--pdq", kOriginal, "--md5", kMd5}).status,
      kExitOk);
  CliRun gen = bantay::testing::RunCommand(
      RunIndexCommand, {"keygen", "--out", cli.dir().path() + "/new"});
  ASSERT_EQ(gen.status, kExitOk);
  const std::string new_key = cli.dir().path() + "/new/data.key";
  CliRun rekey = cli.Run({"rekey", "--new-key", new_key});
  ASSERT_EQ(rekey.status, kExitOk) << rekey.err;
  EXPECT_EQ(rekey.lines[0].at("version").as_int64(), 3);
  CliRun stats = bantay::testing::RunCommand(
      RunIndexCommand, {"stats", "--store", cli.store(), "--key", new_key});
  ASSERT_EQ(stats.status, kExitOk) << stats.err;
  json::object by_key = stats.lines[0].at("values_by_key").as_object();
  ASSERT_EQ(by_key.size(), 1u);
  EXPECT_EQ(by_key.at(gen.lines[0].at("data_key_id").as_string()).as_int64(),
            2);
  CliRun old = cli.Run({"list", "--list", "a"});
  EXPECT_EQ(old.status, kExitSomeFailed);
  CliRun fresh = bantay::testing::RunCommand(
      RunIndexCommand, {"list", "--list", "a", "--store", cli.store(), "--key",
                        new_key, "--show-values"});
  ASSERT_EQ(fresh.status, kExitOk) << fresh.err;
  EXPECT_EQ(fresh.lines[0].at("value").as_string(), kOriginal);
  EXPECT_EQ(fresh.lines[1].at("value").as_string(), kMd5);
}

TEST(IndexCommandTest, SnapshotExportMatchesOfflineAndRefusesTampering) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(
      cli.Run({"add", "--list", "a", "--pdq", kOriginal, "--reference", "r1"})
          .status,
      kExitOk);
  const std::string snap = cli.dir().path() + "/index.snap";
  CliRun exported = cli.Run({"export", "--out", snap});
  ASSERT_EQ(exported.status, kExitOk) << exported.err;
  EXPECT_EQ(exported.lines[0].at("version").as_int64(), 2);
  const std::vector<std::string> base = {
      "--index",      snap,
      "--key",        cli.keys() + "/data.key",
      "--public-key", cli.keys() + "/signing.pub",
      "--pdq",        kSharpenALot};
  CliRun m = bantay::testing::RunCommand(RunMatchCommand, base);
  ASSERT_EQ(m.status, kExitOk) << m.err;
  ASSERT_EQ(m.lines[0].at("matches").as_array().size(), 1u);
  EXPECT_EQ(m.lines[0].at("matches").as_array()[0].at("ref").as_string(), "r1");
  EXPECT_EQ(m.lines[0].at("matches").as_array()[0].at("distance").as_int64(),
            14);

  // One flipped byte in the middle of the encrypted payload (after the
  // 12-byte magic, the 4-byte header length and the header; before the
  // 64-byte signature).
  std::fstream f(snap, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto size = static_cast<long>(f.tellg());
  unsigned char length[4] = {};
  f.seekg(12);
  f.read(reinterpret_cast<char*>(length), 4);
  const long payload_at =
      16 + static_cast<long>(length[0] << 24 | length[1] << 16 | length[2] << 8 | length[3]);
  ASSERT_LT(payload_at, size - 64 - 28);
  const long middle = (payload_at + size - 64) / 2;
  f.seekg(middle);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x01);
  f.seekp(middle);
  f.write(&c, 1);
  f.close();
  CliRun tampered = bantay::testing::RunCommand(RunMatchCommand, base);
  EXPECT_EQ(tampered.status, kExitUsage);
  EXPECT_EQ(tampered.err,
            "bantay match: snapshot " + snap +
                ": the signature does not verify (the file was modified)\n");
  EXPECT_EQ(tampered.out, "");
}

TEST(IndexCommandTest, AStoreOrSnapshotWithoutActiveEntriesIsRefusedForMatching) {
  IndexCli cli;
  cli.Create();
  TempDir evidence;
  evidence.Write("a.txt", Text("x"));
  const std::string data_key = cli.keys() + "/data.key";
  const std::string public_key = cli.keys() + "/signing.pub";
  const std::string snap = cli.dir().path() + "/empty.snap";
  ASSERT_EQ(cli.Run({"export", "--out", snap}).status, kExitOk);
  CliRun store_match = bantay::testing::RunCommand(
      RunMatchCommand, {"--index", cli.store(), "--key", data_key, "--pdq", kOriginal});
  EXPECT_EQ(store_match.status, kExitUsage);
  EXPECT_EQ(store_match.err, "bantay match: the index " + cli.store() +
                                 " has no active entries; matching against it would find nothing\n");
  CliRun snap_match = bantay::testing::RunCommand(
      RunMatchCommand,
      {"--index", snap, "--key", data_key, "--public-key", public_key, "--pdq", kOriginal});
  EXPECT_EQ(snap_match.status, kExitUsage);
  EXPECT_EQ(snap_match.err, "bantay match: the index " + snap +
                                " has no active entries; matching against it would find nothing\n");
  CliRun snap_scan = bantay::testing::RunCommand(
      RunScanCommand, {evidence.path(), "--index", snap, "--key", data_key, "--public-key",
                       public_key, "--progress", "none"});
  EXPECT_EQ(snap_scan.status, kExitUsage);
  EXPECT_EQ(snap_scan.err, "bantay scan: the index " + snap +
                               " has no active entries; matching against it would find nothing\n");
  EXPECT_EQ(snap_scan.out, "");
  // Entries of a disabled list are not active either.
  ASSERT_EQ(cli.Run({"add", "--list", "a", "--pdq", kOriginal}).status, kExitOk);
  ASSERT_EQ(cli.Run({"disable", "--list", "a"}).status, kExitOk);
  CliRun store_scan = bantay::testing::RunCommand(
      RunScanCommand,
      {evidence.path(), "--store", cli.store(), "--key", data_key, "--progress", "none"});
  EXPECT_EQ(store_scan.status, kExitUsage);
  EXPECT_EQ(store_scan.err, "bantay scan: the index " + cli.store() +
                                " has no active entries; matching against it would find nothing\n");
  ASSERT_EQ(cli.Run({"enable", "--list", "a"}).status, kExitOk);
  CliRun enabled = bantay::testing::RunCommand(
      RunScanCommand,
      {evidence.path(), "--store", cli.store(), "--key", data_key, "--progress", "none"});
  EXPECT_EQ(enabled.status, kExitOk) << enabled.err;
  ASSERT_EQ(enabled.lines.size(), 3u) << enabled.out;  // "scan", the entry, "end"
  EXPECT_EQ(enabled.lines[1].at("verdict"), "no_match");
  // The report names the store and the signed version it was matched
  // against; a snapshot of that version, the same version.
  CliRun stats = cli.Run({"stats"});
  CliRun root = cli.Run({"root"});
  ASSERT_EQ(root.status, kExitOk) << root.err;
  auto identity = [&](const char* kind, const char* where_key, const std::string& where) {
    return json::serialize(json::object{{"kind", kind},
                                        {where_key, where},
                                        {"store_id", stats.lines[0].at("store_id")},
                                        {"version", root.lines[0].at("version")},
                                        {"root", root.lines[0].at("root")},
                                        {"active", 1}});
  };
  EXPECT_EQ(root.lines[0].at("version"), 4);  // init, add, disable, enable
  EXPECT_EQ(json::serialize(enabled.lines[0].at("index")),
            identity("store", "url", cli.store()));
  const std::string full_snap = cli.dir().path() + "/full.snap";
  ASSERT_EQ(cli.Run({"export", "--out", full_snap}).status, kExitOk);
  CliRun snap_enabled = bantay::testing::RunCommand(
      RunScanCommand, {evidence.path(), "--index", full_snap, "--key", data_key,
                       "--public-key", public_key, "--progress", "none"});
  EXPECT_EQ(snap_enabled.status, kExitOk) << snap_enabled.err;
  ASSERT_EQ(snap_enabled.lines.size(), 3u) << snap_enabled.out;
  EXPECT_EQ(json::serialize(snap_enabled.lines[0].at("index")),
            identity("snapshot", "path", full_snap));
}

TEST(IndexCommandTest, ANewSqliteStoreIsPrivateToItsOwner) {
  IndexCli cli;
  cli.Create();
  struct stat st {};
  ASSERT_EQ(::stat((cli.dir().path() + "/store.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(IndexCommandTest, AProofIsCheckedAgainstATrustedSignature) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(cli.Run({"add", "--list", "a", "--pdq", kOriginal}).status,
            kExitOk);
  CliRun good = cli.Run(
      {"root", "--prove", "1", "--public-key", cli.keys() + "/signing.pub"});
  ASSERT_EQ(good.status, kExitOk) << good.err;
  EXPECT_EQ(good.lines[0].at("signature_valid").as_bool(), true);
  ASSERT_EQ(
      bantay::testing::RunCommand(
          RunIndexCommand, {"keygen", "--out", cli.dir().path() + "/other"})
          .status,
      kExitOk);
  CliRun bad = cli.Run({"root", "--prove", "1", "--public-key",
                        cli.dir().path() + "/other/signing.pub"});
  EXPECT_EQ(bad.status, kExitSomeFailed);
  EXPECT_EQ(bad.lines[0].at("included").as_bool(), true);
  EXPECT_EQ(bad.lines[0].at("signature_valid").as_bool(), false);
  EXPECT_EQ(bad.err,
            "bantay index root: the root's signature does not verify with the "
            "given key\n");
  EXPECT_EQ(cli.Run({"root", "--prove", "1", "--version", "1"}).status,
            kExitUsage);
}

TEST(IndexCommandTest, UnknownSubcommandsAndStrayArgumentsAreUsageErrors) {
  CliRun unknown = bantay::testing::RunCommand(RunIndexCommand, {"frobnicate"});
  EXPECT_EQ(unknown.status, kExitUsage);
  EXPECT_EQ(unknown.err, "bantay index: unknown subcommand 'frobnicate'\n");
  CliRun stray =
      bantay::testing::RunCommand(RunIndexCommand, {"list", "hotline-a"});
  EXPECT_EQ(stray.status, kExitUsage);
  EXPECT_EQ(stray.err, "bantay index: list takes no argument 'hotline-a'\n");
}

TEST(IndexCommandTest, ARepeatedSingleValuedOptionIsRefused) {
  IndexCli cli;
  cli.Create();
  CliRun run = cli.Run({"add", "--list", "a", "--list", "b", "--pdq", kOriginal});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err, "bantay index: --list is given twice; it takes one value\n");
  CliRun store = cli.Run({"stats", "--store", "sqlite:" + cli.dir().path() + "/other.db"});
  EXPECT_EQ(store.status, kExitUsage);
  EXPECT_EQ(store.err, "bantay index: --store is given twice; it takes one value\n");
  // Hashes to add repeat, as documented.
  CliRun added = cli.Run({"add", "--list", "a", "--pdq", kOriginal, "--pdq", kRotate90});
  EXPECT_EQ(added.status, kExitOk) << added.err;
  CliRun listed = cli.Run({"list", "--list", "a"});
  EXPECT_EQ(listed.lines.size(), 2u) << listed.out;
}

TEST(IndexCommandTest, AnActorWithControlCharactersIsRefused) {
  IndexCli cli;
  cli.Create();
  CliRun run = bantay::testing::RunCommand(
      RunIndexCommand,
      {"add", "--list", "a", "--pdq", kOriginal, "--store", cli.store(),
       "--key", cli.keys() + "/data.key", "--signing-key",
       cli.keys() + "/signing.key", "--actor", "eve\nforged line"});
  EXPECT_EQ(run.status, kExitSomeFailed);
  EXPECT_EQ(run.err, "bantay index add: actor contains a control character\n");
}

TEST(IndexCommandTest, AStoreUrlIsRequired) {
  CliRun run = bantay::testing::RunCommand(RunIndexCommand, {"stats"});
  EXPECT_EQ(run.status, kExitUsage);
  EXPECT_EQ(run.err,
            "bantay index: no store: give --store sqlite:PATH or --store "
            "postgresql://... (or "
            "set BANTAY_STORE)\n");
}

TEST(IndexCommandTest, PostgresStoreThroughTheCli) {
  IndexCli cli(bantay::testing::PgCluster::Shared().CreateDatabase(
      "cli_" + std::to_string(::getpid())));
  cli.Create();
  const std::string list =
      cli.Write("list.txt", std::string("pdq ") + kOriginal + " case-1\n" +
                                kRotate90 + " case-2\n");
  CliRun run = cli.Run({"import", list, "--list", "hotline-a"});
  ASSERT_EQ(run.status, kExitOk) << run.err;
  EXPECT_EQ(json::serialize(run.lines[0]),
            R"({"version":2,"added":2,"already_present":0,"rejected":0})");
  CliRun verify = cli.Run({"verify"});
  EXPECT_EQ(verify.status, kExitOk) << verify.err;
  CliRun m = bantay::testing::RunCommand(
      RunMatchCommand, {"--index", cli.store(), "--key",
                        cli.keys() + "/data.key", "--pdq", kRotate90});
  ASSERT_EQ(m.status, kExitOk) << m.err;
  EXPECT_EQ(m.lines[0].at("matches").as_array()[0].at("ref").as_string(),
            "case-2");
}

// --- Crash safety
// -------------------------------------------------------------

// Runs `bantay ARGS...` as a child process; returns its pid.
pid_t Spawn(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    static std::string cli = BANTAY_CLI;
    argv.push_back(cli.data());
    for (const std::string& a : args)
      argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(cli.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// An export killed while it writes (here by SIGXFSZ: the child may write
// files of 40,000 bytes at most, more than SQLite's 32 KiB shared-memory
// file and less than the snapshot of 500 entries) leaves no FILE:
// it is written under a temporary name and renamed into place at the end,
// so that the export can be run again; an existing FILE is still refused.
TEST(IndexCrashTest, AnExportKilledWhileWritingLeavesNoFile) {
  IndexCli cli;
  cli.Create();
  std::string md5s;
  for (int i = 1; i <= 500; ++i) {
    char hex[33];
    std::snprintf(hex, sizeof hex, "%032x", i);
    md5s += std::string("md5 ") + hex + "\n";
  }
  ASSERT_EQ(cli.Run({"import", cli.Write("bulk.txt", md5s), "--list", "bulk"}).status, kExitOk);
  TempDir out;
  const std::string snap = out.path() + "/index.snap";
  const std::vector<std::string> args = {
      "index", "export", "--out", snap, "--store", cli.store(), "--key",
      cli.keys() + "/data.key", "--signing-key", cli.keys() + "/signing.key"};
  const pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit limit = {40000, 40000};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(126);
    std::vector<char*> argv;
    static std::string binary = BANTAY_CLI;
    argv.push_back(binary.data());
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_FALSE(std::filesystem::exists(snap));

  CliRun again = cli.Run({"export", "--out", snap});
  ASSERT_EQ(again.status, kExitOk) << again.err;
  EXPECT_EQ(again.lines[0].at("version").as_int64(), 2);
  EXPECT_GT(std::filesystem::file_size(snap), 40000u);
  CliRun m = bantay::testing::RunCommand(
      RunMatchCommand, {"--index", snap, "--key", cli.keys() + "/data.key", "--public-key",
                        cli.keys() + "/signing.pub", "--pdq", kOriginal});
  EXPECT_EQ(m.status, kExitOk) << m.err;
  CliRun refused = cli.Run({"export", "--out", snap});
  EXPECT_EQ(refused.status, kExitSomeFailed);
  EXPECT_EQ(refused.err, "bantay index export: " + snap + " already exists\n");
}

// Kills an importing process (SIGKILL) at random moments of a 1M-entry
// import, again and again: after each kill the store is at the old version
// with the old entries or at the new one with all of them, and verifies.
TEST(IndexCrashTest, KilledImportsLeaveTheOldOrTheNewVersion) {
  IndexCli cli;
  cli.Create();
  ASSERT_EQ(cli.Run({"add", "--list", "seed", "--pdq", kOriginal}).status,
            kExitOk);
  const std::string db = cli.dir().path() + "/store.db";

  // 1M distinct random PDQ hashes (benign: random bits).
  std::mt19937_64 rng(20261123);
  const std::string list_path = cli.dir().path() + "/million.txt";
  std::string probe;  // the hash on line 600,000
  {
    std::ofstream list(list_path);
    char line[80];
    for (int i = 1; i <= 1'000'000; ++i) {
      std::snprintf(line, sizeof line, "pdq %016llx%016llx%016llx%016llx\n",
                    static_cast<unsigned long long>(rng()),
                    static_cast<unsigned long long>(rng()),
                    static_cast<unsigned long long>(rng()),
                    static_cast<unsigned long long>(rng()));
      list << line;
      if (i == 600'000) probe = std::string(line + 4, 64);
    }
  }
  auto import_args = [&](const std::string& store_path) {
    return std::vector<std::string>{"index",
                                    "import",
                                    list_path,
                                    "--list",
                                    "bulk",
                                    "--store",
                                    "sqlite:" + store_path,
                                    "--key",
                                    cli.keys() + "/data.key",
                                    "--signing-key",
                                    cli.keys() + "/signing.key"};
  };
  auto copy_base = [&](const std::string& to) {
    std::filesystem::copy_file(
        db, to, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(to + "-wal");
    std::filesystem::remove(to + "-shm");
  };
  auto open_store = [&](const std::string& path) {
    matcher::StoreKeys keys;
    keys.data_keys.push_back(
        *matcher::ReadDataKeyFile(cli.keys() + "/data.key"));
    return matcher::Store::Open("sqlite:" + path, std::move(keys));
  };
  const matcher::PublicKey public_key =
      *matcher::ReadPublicKeyPemFile(cli.keys() + "/signing.pub");

  // One uninterrupted import, timed to spread the kills over its length.
  const std::string full = cli.dir().path() + "/full.db";
  copy_base(full);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = Spawn(import_args(full));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const double full_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  {
    auto store = open_store(full);
    ASSERT_TRUE(store.ok());
    EXPECT_EQ(*(*store)->Version(), 3u);
    EXPECT_EQ((*store)->Stats()->active_by_type[0], 1'000'001u);
  }
  // The imported store loads (in two halves, on two connections) and matches.
  CliRun found = bantay::testing::RunCommand(
      RunMatchCommand,
      {"--index", "sqlite:" + full, "--key", cli.keys() + "/data.key", "--pdq",
       probe, "--radius", "0"});
  ASSERT_EQ(found.status, kExitOk) << found.err;
  EXPECT_EQ(
      json::serialize(found.lines[0].at("matches")),
      R"([{"list":"bulk","category":"","ref":"million.txt:600000","distance":0,)"
      R"("variant":"original"}])");

  // Kill times are spread over the length of an import, which changes with
  // the machine's load: an import that finished before its kill shortens
  // the estimate to its own length, so that most attempts still kill.
  int kills = 0, old_version = 0, new_version = 0;
  double length = full_seconds;
  for (int attempt = 0; attempt < 80 && kills < 20; ++attempt) {
    const std::string path = cli.dir().path() + "/crash.db";
    copy_base(path);
    const auto spawned = std::chrono::steady_clock::now();
    const pid_t child = Spawn(import_args(path));
    std::this_thread::sleep_for(std::chrono::duration<double>(
        std::uniform_real_distribution<double>(0.0, length * 1.1)(rng)));
    // Reap a child that has exited: kill() succeeds on a zombie too.
    const bool done = ::waitpid(child, &status, WNOHANG) == child;
    if (done) {
      length = std::min(length, std::chrono::duration<double>(
                                    std::chrono::steady_clock::now() - spawned)
                                    .count());
    } else {
      ASSERT_EQ(::kill(child, SIGKILL), 0);
      ASSERT_EQ(::waitpid(child, &status, 0), child);
    }
    if (!done && WIFSIGNALED(status)) ++kills;
    auto store = open_store(path);
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    const uint64_t version = *(*store)->Version();
    const uint64_t active = (*store)->Stats()->active_by_type[0];
    if (version == 2) {
      ++old_version;
      EXPECT_EQ(active, 1u) << "attempt " << attempt;
    } else {
      ++new_version;
      EXPECT_EQ(version, 3u) << "attempt " << attempt;
      EXPECT_EQ(active, 1'000'001u) << "attempt " << attempt;
    }
    Result<matcher::VerifyReport> report = (*store)->Verify(public_key);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok())
        << "attempt " << attempt << ": " << report->problems.front();
  }
  EXPECT_GE(kills, 20);
  std::cout << "killed " << kills << " imports (" << old_version
            << " at the old version, " << new_version
            << " at the new); a full import took " << full_seconds << " s\n";
}

}  // namespace
}  // namespace bantay::client
