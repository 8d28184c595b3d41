// The store when memory runs out, or a caller's callback throws, in the
// middle of a call. This binary's global operator new (failing_new.h) can be
// told to fail the n-th allocation of the calling thread; each test makes
// every allocation of one store call fail in turn, n = 0, 1, 2, ..., until
// the call succeeds without reaching the n-th. Every failed call must answer
// kUnavailable, leave the database and the Store as they were (no
// transaction left open, nothing half-written, no stale kept state), and let
// the next call work.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bantay/matcher/store.h"
#include "database.h"
#include "failing_new.h"
#include "store_test_util.h"

namespace bantay::matcher {
namespace {

using store_testing::BackendName;
using store_testing::Entry;
using store_testing::Md5Value;
using store_testing::ReferencePdqValues;

// An entry as the comparisons need it.
std::string Describe(const StoredEntry& e) {
  return std::to_string(e.id) + " " + e.list + " " + e.category + " " + e.reference + " " +
         std::string(EntryStatusName(e.status));
}

class StoreFaultTest : public store_testing::StoreBackendTest {
 protected:
  void SetUp() override {
    StoreBackendTest::SetUp();
    pdq_ = ReferencePdqValues();
    ASSERT_GE(pdq_.size(), 6u);
    store_ = Init();
    ASSERT_NE(store_, nullptr);
    ASSERT_EQ(*store_->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),
                                   Entry("hotline-a", SignalType::kPdq, pdq_[1], "B2", "r2"),
                                   Entry("ngo-b", SignalType::kMd5, Md5Value("x"), "A1", "r3")},
                                  Ctx()),
              2u);
    two_ = {Entry("hotline-a", SignalType::kPdq, pdq_[2], "A1", "r4"),
            Entry("ngo-c", SignalType::kPdq, pdq_[3], "B1", "r5")};
    raw_ = Raw();
    ASSERT_NE(raw_, nullptr);
    if (sqlite()) {
      ASSERT_TRUE(raw_->Execute("PRAGMA busy_timeout = 0", {}).ok());
    }
  }

  // What the store holds, as other connections see it: the version, every
  // entry, every list.
  std::string Contents() {
    std::unique_ptr<Store> other = Open();
    if (other == nullptr) return "";
    std::string out = "version " + std::to_string(VersionOf(*other)) + "\n";
    for (const StoredEntry& e : AllEntries(*other)) out += Describe(e) + "\n";
    Result<std::vector<ListInfo>> lists = other->Lists();
    EXPECT_TRUE(lists.ok());
    if (lists.ok()) {
      for (const ListInfo& l : *lists) {
        out += l.name + (l.enabled ? " enabled " : " disabled ") + l.description + "\n";
      }
    }
    return out;
  }

  // No transaction of the store's is left open: another connection may
  // write at once (SQLite: no wait for the lock), and no session of the
  // database sits in a transaction (PostgreSQL).
  void ExpectNoTransactionLeft() {
    if (sqlite()) {
      Status begin = raw_->BeginWrite();
      EXPECT_TRUE(begin.ok()) << begin.error().ToString();
      raw_->Rollback();
      return;
    }
    int64_t open = -1;
    Status s = raw_->Execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'",
        {}, [&](const db::Row& row) { open = row.Int(0); });
    ASSERT_TRUE(s.ok()) << s.error().ToString();
    EXPECT_EQ(open, 0);
  }

  // Calls `call` with its n-th allocation failing for n = 0, 1, ...: each
  // failure must be kUnavailable and leave the store's contents as they
  // were and no transaction open; `before_each` runs (allocating freely)
  // before every attempt, and should make each attempt's allocations the
  // same (a fresh Store: no cache filled by an earlier attempt), so that
  // every one of them is made to fail. Returns the number of failed
  // attempts, once the call succeeded without reaching the failing one.
  template <typename Call>
  int FailEachAllocation(Call call, const std::function<void()>& before_each = {}) {
    const std::string contents = Contents();
    const bool failed_before = ::testing::Test::HasFailure();
    for (long n = 0; n < 100'000; ++n) {
      if (before_each) before_each();
      bantay::testing::FailAllocation(n);
      auto result = call();
      const bool reached = bantay::testing::AllocationFailed();
      bantay::testing::FailAllocation(-1);
      if (result.ok()) {
        EXPECT_FALSE(reached) << "allocation " << n << " failed, and the call succeeded";
        std::printf("%ld allocations made to fail in turn\n", n);
        return static_cast<int>(n);
      }
      SCOPED_TRACE("allocation " + std::to_string(n) + " failed");
      EXPECT_TRUE(reached) << result.error().ToString();
      EXPECT_EQ(result.error().code(), ErrorCode::kUnavailable) << result.error().ToString();
      ExpectNoTransactionLeft();
      EXPECT_EQ(Contents(), contents);
      if (::testing::Test::HasFailure() && !failed_before) return -1;
    }
    ADD_FAILURE() << "the call never succeeded";
    return -1;
  }

  // A change made with every allocation failing in turn, each attempt on a
  // fresh Store that keeps its state (PrepareChange: the change starts
  // from it) or not (the change reads and checks the store). Then the
  // store verifies, the change is there, and the next change, from the
  // state the change kept, verifies too.
  void ExpectEveryFailureRolledBack(
      const std::function<Result<uint64_t>(Store&)>& change, bool keep_state) {
    const uint64_t version = VersionOf(*store_);
    const int failures = FailEachAllocation([&] { return change(*store_); }, [&] {
      store_ = Open(AttemptKeys());
      if (keep_state) STORE_ASSERT_OK(store_->PrepareChange());
    });
    ASSERT_GT(failures, 10);
    EXPECT_EQ(store_->change_starts().kept, keep_state ? 1u : 0u);
    EXPECT_EQ(store_->change_starts().checked, 1u);
    EXPECT_EQ(VersionOf(*store_), version + 1);
    Result<uint64_t> next = store_->AddEntries(
        {Entry("hotline-a", SignalType::kPdq, pdq_[4], "A1", "r6")}, Ctx());
    STORE_ASSERT_OK(next);
    EXPECT_EQ(*next, version + 2);
    Result<VerifyReport> report = Open(AttemptKeys())->Verify(SignerPublic());
    STORE_ASSERT_OK(report);
    EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems.front());
  }

  // The keys of the Stores the attempts are made on: with new_key_ first
  // when it is set (a rekey's).
  StoreKeys AttemptKeys() {
    StoreKeys keys = Keys();
    if (new_key_) keys.data_keys.insert(keys.data_keys.begin(), *new_key_);
    return keys;
  }

  // Two entries, one of them in a new list.
  Result<uint64_t> AddTwo(Store& store) { return store.AddEntries(two_, ctx_); }

  std::vector<std::array<uint8_t, 32>> pdq_;
  std::optional<DataKey> new_key_;
  // The calls' arguments are made before any allocation is set to fail.
  std::vector<NewEntry> two_;
  const ChangeContext ctx_ = Ctx("a change's actor", "the change's source");
  const std::vector<uint64_t> one_and_three_ = {1, 3};
  const std::vector<uint64_t> two_only_ = {2};
  const std::string list_ = "ngo-b", description_ = "the list of an NGO, described";
  const std::string all_lists_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<db::Connection> raw_;
};

TEST_P(StoreFaultTest, AnAddThatRunsOutOfMemoryIsRolledBackFromAKeptState) {
  ExpectEveryFailureRolledBack([&](Store& s) { return AddTwo(s); }, true);
}

TEST_P(StoreFaultTest, AnAddThatRunsOutOfMemoryIsRolledBackAfterAFullCheck) {
  ExpectEveryFailureRolledBack([&](Store& s) { return AddTwo(s); }, false);
}

// AddNewEntries also reads and decrypts the lists' entries to leave out
// what they hold (here hotline-a's first entry), from a kept state and
// after a full check.
TEST_P(StoreFaultTest, AnAddOfWhatIsNewThatRunsOutOfMemoryIsRolledBack) {
  std::vector<NewEntry> three = two_;
  three.push_back(Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1 again"));
  for (const bool keep_state : {true, false}) {
    SCOPED_TRACE(keep_state ? "from a kept state" : "after a full check");
    ExpectEveryFailureRolledBack(
        [&](Store& s) -> Result<uint64_t> {
          Result<Store::AddResult> r = s.AddNewEntries(three, ctx_);
          if (!r.ok()) return r.error();
          EXPECT_EQ(r->added, 2u);
          return r->version;
        },
        keep_state);
    // New again the second time (one in the list the first round made).
    three[0].value = pdq_[5];
    three[1] = Entry("ngo-c", SignalType::kMd5, Md5Value("new"), "B1", "r7");
  }
}

// The same given what an index held (as the server gives it): the rows it
// names and those changed since are read.
TEST_P(StoreFaultTest, AnAddOfWhatIsNewGivenWhatAnIndexHeldThatRunsOutOfMemoryIsRolledBack) {
  std::vector<NewEntry> three = two_;
  three.push_back(Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1 again"));
  Store::HeldEntries held;
  held.version = VersionOf(*store_);
  held.audit_digest = store_->Root(held.version)->audit_digest;
  held.covers = [](std::string_view) { return true; };
  int asked = 0;  // the store used them (its own record of the version)
  held.ids = [&](const NewEntry& e, std::vector<uint64_t>* ids) {
    ++asked;
    ids->clear();
    if (e.value == pdq_[0]) ids->push_back(1);
  };
  const std::vector<std::pair<size_t, uint64_t>> present = {{2, 1}};  // made beforehand
  ExpectEveryFailureRolledBack(
      [&](Store& s) -> Result<uint64_t> {
        Result<Store::AddResult> r = s.AddNewEntries(three, ctx_, "import", &held);
        if (!r.ok()) return r.error();
        EXPECT_EQ(r->added, 2u);
        EXPECT_EQ(r->present, present);
        return r->version;
      },
      true);
  EXPECT_GT(asked, 0);
}

// When nothing is new, nothing is written: an allocation that fails on the
// way leaves the store as it was, and the kept state is kept for the next
// change either way.
TEST_P(StoreFaultTest, AnAddOfNothingNewThatRunsOutOfMemoryChangesNothing) {
  const std::vector<NewEntry> held = {
      Entry("ngo-b", SignalType::kMd5, Md5Value("x"), "Z", "other reference"),
      Entry("hotline-a", SignalType::kPdq, pdq_[1], "B2", "r2")};
  const uint64_t version = VersionOf(*store_);
  const int failures = FailEachAllocation(
      [&]() -> Result<uint64_t> {
        Result<Store::AddResult> r = store_->AddNewEntries(held, ctx_);
        if (!r.ok()) return r.error();
        EXPECT_EQ(r->added, 0u);
        return r->version;
      },
      [&] {
        store_ = Open(AttemptKeys());
        STORE_ASSERT_OK(store_->PrepareChange());
      });
  ASSERT_GT(failures, 10);
  EXPECT_EQ(VersionOf(*store_), version);
  EXPECT_EQ(store_->change_starts().kept, 1u);
  Result<uint64_t> next = store_->AddEntries(
      {Entry("hotline-a", SignalType::kPdq, pdq_[4], "A1", "r6")}, ctx_);
  STORE_ASSERT_OK(next);
  EXPECT_EQ(*next, version + 1);
  EXPECT_EQ(store_->change_starts().kept, 2u);
  EXPECT_EQ(store_->change_starts().checked, 1u);
  Result<VerifyReport> report = Open()->Verify(SignerPublic());
  STORE_ASSERT_OK(report);
  EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems.front());
}

// RemoveDuplicates reads and decrypts every entry, then removes the later
// copies (here of entry 1; entry 2's copy differs in category and stays);
// its dry run writes nothing either way.
TEST_P(StoreFaultTest, ADedupeThatRunsOutOfMemoryIsRolledBack) {
  ASSERT_EQ(*store_->AddEntries({Entry("hotline-a", SignalType::kPdq, pdq_[0], "A1", "r1"),
                                 Entry("hotline-a", SignalType::kPdq, pdq_[1], "B3", "r2")},
                                Ctx()),
            3u);
  const std::vector<std::string> every_list;
  EXPECT_GT(FailEachAllocation(
                [&]() -> Result<uint64_t> {
                  Result<Store::DedupeResult> r = store_->RemoveDuplicates(every_list, true, ctx_);
                  if (!r.ok()) return r.error();
                  EXPECT_EQ(r->removed, 1u);
                  EXPECT_EQ(r->groups.size(), 2u);
                  return r->version;
                },
                [&] { store_ = Open(); }),
            10);
  for (const bool keep_state : {true, false}) {
    SCOPED_TRACE(keep_state ? "from a kept state" : "after a full check");
    if (!keep_state) {  // a copy again
      ASSERT_TRUE(store_->AddEntries({Entry("ngo-b", SignalType::kMd5, Md5Value("x"), "A1", "r3")},
                                     Ctx())
                      .ok());
    }
    ExpectEveryFailureRolledBack(
        [&](Store& s) -> Result<uint64_t> {
          Result<Store::DedupeResult> r = s.RemoveDuplicates(every_list, false, ctx_);
          if (!r.ok()) return r.error();
          EXPECT_EQ(r->removed, 1u);
          return r->version;
        },
        keep_state);
  }
}

TEST_P(StoreFaultTest, ADisableThatRunsOutOfMemoryIsRolledBack) {
  ExpectEveryFailureRolledBack(
      [&](Store& s) { return s.SetEntriesStatus(one_and_three_, EntryStatus::kDisabled, ctx_); },
      true);
}

TEST_P(StoreFaultTest, ARemovalThatRunsOutOfMemoryIsRolledBack) {
  ExpectEveryFailureRolledBack([&](Store& s) { return s.RemoveEntries(two_only_, ctx_); }, true);
}

TEST_P(StoreFaultTest, AListChangeThatRunsOutOfMemoryIsRolledBack) {
  ExpectEveryFailureRolledBack([&](Store& s) { return s.SetListEnabled(list_, false, ctx_); },
                               true);
}

TEST_P(StoreFaultTest, ADescriptionThatRunsOutOfMemoryIsRolledBack) {
  ExpectEveryFailureRolledBack(
      [&](Store& s) { return s.DescribeList(list_, description_, ctx_); }, false);
}

TEST_P(StoreFaultTest, ARekeyThatRunsOutOfMemoryIsRolledBack) {
  new_key_ = GenerateDataKey();
  ExpectEveryFailureRolledBack([&](Store& s) { return s.Rekey(ctx_); }, false);
}

// The preparation of the writer's first change, made to run out of memory:
// it leaves nothing open, and the change after it works.
TEST_P(StoreFaultTest, APreparationThatRunsOutOfMemoryLeavesNothingOpen) {
  EXPECT_GT(FailEachAllocation([&] { return store_->PrepareChange(); },
                               [&] { store_ = Open(); }),
            20);
  EXPECT_EQ(store_->change_starts().checked, 1u);
  Result<uint64_t> v = AddTwo(*store_);
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
  EXPECT_EQ(store_->change_starts().kept, 1u);
}

// Reads that run out of memory answer kUnavailable and leave no read
// transaction open (the next read, and a change, work).
TEST_P(StoreFaultTest, ReadsThatRunOutOfMemoryLeaveNothingOpen) {
  Store& s = *store_;
  EXPECT_GT(FailEachAllocation([&] { return s.Entries(all_lists_, 0, 100); }), 5);
  EXPECT_GT(FailEachAllocation([&] { return s.Lists(); }), 3);
  EXPECT_GT(FailEachAllocation([&] { return s.Stats(); }), 3);
  EXPECT_GT(FailEachAllocation([&] { return s.Audit(0, 10); }), 3);
  EXPECT_GT(FailEachAllocation([&] { return s.Prove(2); }), 3);
  EXPECT_GT(FailEachAllocation([&] { return s.ChangesSince(1); }), 3);
  const std::optional<PublicKey> signer = SignerPublic();
  EXPECT_GT(FailEachAllocation([&] { return s.Verify(signer); }), 10);
  size_t seen = 0;
  EXPECT_GT(FailEachAllocation([&] {
              seen = 0;
              return s.ForEachEntry([&](StoredEntry&&) { ++seen; }, nullptr, nullptr);
            }),
            2);
  EXPECT_EQ(seen, 3u);
  std::vector<IndexEntry> entries;
  std::vector<uint64_t> disabled;
  std::vector<ListInfo> lists;
  uint64_t version = 0;
  EXPECT_GT(FailEachAllocation([&] {
              entries.clear();
              disabled.clear();
              lists.clear();
              return s.ReadIndexEntries(&entries, &disabled, &version, &lists);
            }),
            3);
  EXPECT_EQ(entries.size(), 3u);
  EXPECT_EQ(version, 2u);
  Result<uint64_t> v = AddTwo(s);
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
}

// A caller's callback that throws: its exception reaches the caller, the
// read is ended, and the store goes on.
TEST_P(StoreFaultTest, ACallbackThatThrowsEndsTheRead) {
  Store& s = *store_;
  size_t calls = 0;
  EXPECT_THROW((void)s.ForEachEntry(
                   [&](StoredEntry&&) {
                     if (++calls == 2) throw std::runtime_error("the caller's");
                   },
                   nullptr, nullptr),
               std::runtime_error);
  EXPECT_EQ(calls, 2u);
  ExpectNoTransactionLeft();
  std::vector<uint64_t> disabled;
  std::vector<ListInfo> lists;
  uint64_t version = 0;
  EXPECT_THROW((void)s.ReadIndexRows([](size_t, size_t) { throw std::logic_error("start"); },
                                     [](int, const IndexRow&) {}, &disabled, &version, &lists),
               std::logic_error);
  ExpectNoTransactionLeft();
  Result<uint64_t> v = AddTwo(s);
  STORE_ASSERT_OK(v);
  EXPECT_EQ(*v, 3u);
  calls = 0;
  STORE_ASSERT_OK(s.ForEachEntry([&](StoredEntry&&) { ++calls; }, &version, nullptr));
  EXPECT_EQ(calls, 5u);
  EXPECT_EQ(version, 3u);
}

// The SQL layer alone: rows inserted with a prepared statement inside a
// write transaction (on PostgreSQL: queued in a pipeline, synced every 1,024
// statements), every allocation made to fail in turn. Each failure is
// thrown (the store turns it into an error), the rollback returns (a
// statement sent uncounted once left it waiting for ever for a sync), and
// nothing of the transaction stays; then a transaction commits.
TEST_P(StoreFaultTest, RowsQueuedWhenMemoryRunsOutAreRolledBack) {
  std::unique_ptr<db::Connection> conn = Raw();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->ExecScript("CREATE TABLE q (id BIGINT PRIMARY KEY)").ok());
  Result<std::unique_ptr<db::Statement>> insert = conn->Prepare("INSERT INTO q (id) VALUES ($1)");
  ASSERT_TRUE(insert.ok());
  constexpr int64_t kRows = 2'100;
  std::vector<std::vector<db::Param>> rows;
  for (int64_t i = 0; i < kRows; ++i) rows.push_back({db::Param::Int(i)});
  auto count = [&] {
    int64_t n = -1;
    EXPECT_TRUE(conn->Execute("SELECT count(*) FROM q", {}, [&](const db::Row& row) {
                      n = row.Int(0);
                    }).ok());
    return n;
  };
  long n = 0;
  for (; n < 10'000; ++n) {
    ASSERT_TRUE(conn->BeginWrite().ok());
    bool threw = false;
    Status queued;
    bantay::testing::FailAllocation(n);
    try {
      for (int64_t i = 0; i < kRows && queued.ok(); ++i) queued = (*insert)->Execute(rows[i]);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    const bool reached = bantay::testing::AllocationFailed();
    bantay::testing::FailAllocation(-1);
    ASSERT_TRUE(queued.ok()) << queued.error().ToString();
    EXPECT_EQ(threw, reached);
    conn->Rollback();
    ASSERT_EQ(count(), 0) << "allocation " << n;
    if (!reached) break;
  }
  std::printf("%ld allocations made to fail in turn\n", n);
  if (sqlite()) {
    EXPECT_EQ(n, 0);  // SQLite's statements allocate nothing of C++'s
  } else {
    EXPECT_GT(n, 20);
  }
  ASSERT_TRUE(conn->BeginWrite().ok());
  ASSERT_TRUE((*insert)->Execute(rows[5]).ok());
  ASSERT_TRUE(conn->Commit().ok());
  EXPECT_EQ(count(), 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreFaultTest, ::testing::Values("sqlite", "postgres"),
                         BackendName);

}  // namespace
}  // namespace bantay::matcher
