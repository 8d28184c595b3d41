#include "bantay/matcher/hash_index.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "bantay/matcher/hash_list.h"
#include "bantay/models/digest.h"

namespace bantay::matcher {
namespace {

using models::Dihedral;
using models::Hash256;

Hash256 RandomHash(std::mt19937_64& rng) {
  std::array<uint8_t, 32> b;
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return Hash256(b);
}

Hash256 Flip(const Hash256& h, int bits) {
  Hash256 out = h;
  std::array<uint8_t, 32> b = out.bytes();
  for (int k = 0; k < bits; ++k) b[k / 8] ^= static_cast<uint8_t>(1 << (k % 8));
  return Hash256(b);
}

IndexEntry Pdq(uint64_t id, const Hash256& h, std::string list = "hotline-a",
               std::string ref = "") {
  IndexEntry e;
  e.id = id;
  e.list = std::move(list);
  e.type = SignalType::kPdq;
  e.value = h.bytes();
  e.category = "A1";
  e.reference = ref.empty() ? "case-" + std::to_string(id) : ref;
  return e;
}

std::vector<uint64_t> Ids(const std::vector<Match>& matches) {
  std::vector<uint64_t> ids;
  for (const Match& m : matches) ids.push_back(m.id);
  return ids;
}

TEST(HashIndexTest, AddedEntriesMatchWithTheirMetadata) {
  std::mt19937_64 rng(1);
  const Hash256 q = RandomHash(rng);
  HashIndex index;
  const uint64_t v0 = index.Snapshot()->version();
  ASSERT_TRUE(index.Add({Pdq(7, Flip(q, 3)), Pdq(8, Flip(q, 31)), Pdq(9, Flip(q, 32)),
                         Pdq(10, q, "ngo-b", "ref-x")})
                  .ok());
  auto snap = index.Snapshot();
  EXPECT_EQ(snap->version(), v0 + 1);
  EXPECT_EQ(snap->size(SignalType::kPdq), 4u);
  std::vector<Match> m;
  snap->MatchPdq(q, 31, &m);
  ASSERT_EQ(Ids(m), (std::vector<uint64_t>{10, 7, 8}));
  EXPECT_EQ(m[0].distance, 0);
  EXPECT_EQ(m[0].list, "ngo-b");
  EXPECT_EQ(m[0].category, "A1");
  EXPECT_EQ(m[0].reference, "ref-x");
  EXPECT_EQ(m[1].distance, 3);
  EXPECT_EQ(m[2].distance, 31);
  snap->MatchPdq(q, 0, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{10}));
}

TEST(HashIndexTest, ExactHashes) {
  HashIndex index;
  const char* bytes = "benign test bytes";
  const auto md5 = models::Md5({reinterpret_cast<const uint8_t*>(bytes), 17});
  const auto sha = models::Sha256({reinterpret_cast<const uint8_t*>(bytes), 17});
  IndexEntry a, b, c;
  a.id = 1;
  a.list = "l";
  a.type = SignalType::kMd5;
  std::memcpy(a.value.data(), md5.data(), 16);
  a.value[20] = 0xAA;  // ignored: an MD5 is 16 bytes
  b = a;
  b.id = 2;
  b.list = "m";
  c.id = 3;
  c.list = "l";
  c.type = SignalType::kSha256;
  std::memcpy(c.value.data(), sha.data(), 32);
  ASSERT_TRUE(index.Add({a, b, c}).ok());
  auto snap = index.Snapshot();
  std::vector<Match> m;
  snap->MatchExact(SignalType::kMd5, md5.data(), &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1, 2}));
  snap->MatchExact(SignalType::kSha256, sha.data(), &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{3}));
  std::array<uint8_t, 32> md5_as_sha{};  // the MD5's bytes, asked as a SHA-256
  std::copy(md5.begin(), md5.end(), md5_as_sha.begin());
  snap->MatchExact(SignalType::kSha256, md5_as_sha.data(), &m);
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(snap->size(SignalType::kMd5), 2u);
  EXPECT_EQ(snap->size(SignalType::kSha256), 1u);
  EXPECT_EQ(snap->size(SignalType::kPdq), 0u);
}

// What a store held: every entry of a list with that type and value, of any
// status and list state, not removed, in every tier; ids ascending.
TEST(HashIndexTest, HeldIdsAreEveryEntryOfTheListWithTheValue) {
  std::mt19937_64 rng(9);
  const Hash256 q = RandomHash(rng);
  HashIndexOptions options;
  options.recent_limit = 2;  // the later adds are folded into other tiers
  HashIndex index(options);
  ASSERT_TRUE(index.Add({Pdq(5, q, "a"), Pdq(2, q, "a"), Pdq(3, q, "b"), Pdq(4, Flip(q, 1), "a")})
                  .ok());
  IndexEntry md5;
  md5.id = 6;
  md5.list = "a";
  md5.type = SignalType::kMd5;
  md5.value = q.bytes();
  std::fill(md5.value.begin() + 16, md5.value.end(), 0);
  ASSERT_TRUE(index.Add({md5, Pdq(7, q, "a")}).ok());
  ASSERT_TRUE(index.Add({Pdq(8, q, "a")}).ok());
  ASSERT_TRUE(index.Remove({8}).ok());
  index.SetEntriesEnabled({5}, false);
  index.SetListEnabled("b", false);
  std::vector<uint64_t> ids = {99};
  const auto snap = index.Snapshot();
  snap->HeldIds("a", SignalType::kPdq, q.bytes().data(), &ids);
  EXPECT_EQ(ids, (std::vector<uint64_t>{2, 5, 7}));
  snap->HeldIds("b", SignalType::kPdq, q.bytes().data(), &ids);
  EXPECT_EQ(ids, (std::vector<uint64_t>{3}));
  snap->HeldIds("c", SignalType::kPdq, q.bytes().data(), &ids);
  EXPECT_TRUE(ids.empty());
  snap->HeldIds("a", SignalType::kMd5, md5.value.data(), &ids);
  EXPECT_EQ(ids, (std::vector<uint64_t>{6}));
  snap->HeldIds("a", SignalType::kSha256, q.bytes().data(), &ids);
  EXPECT_TRUE(ids.empty());
  snap->HeldIds("a", SignalType::kPdq, Flip(q, 2).bytes().data(), &ids);
  EXPECT_TRUE(ids.empty());
}

TEST(HashIndexTest, RemoveDisableEnableAreVisibleToTheNextQuery) {
  std::mt19937_64 rng(2);
  const Hash256 q = RandomHash(rng);
  HashIndex index;
  ASSERT_TRUE(index.Add({Pdq(1, q, "a"), Pdq(2, Flip(q, 5), "b"), Pdq(3, Flip(q, 9), "a")}).ok());
  const auto before = index.Snapshot();
  std::vector<Match> m;
  ASSERT_TRUE(index.Remove({3}).ok());
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1, 2}));
  EXPECT_FALSE(index.Snapshot()->Contains(3));
  EXPECT_EQ(index.Snapshot()->size(SignalType::kPdq), 2u);
  index.SetListEnabled("a", false);
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{2}));
  EXPECT_FALSE(index.Snapshot()->ListEnabled("a"));
  index.SetListEnabled("a", true);
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1, 2}));
  // A snapshot taken earlier still answers as it did.
  before->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1, 2, 3}));
}

TEST(HashIndexTest, BadChangesAreRefusedWhole) {
  std::mt19937_64 rng(3);
  HashIndex index;
  ASSERT_TRUE(index.Add({Pdq(1, RandomHash(rng))}).ok());
  const uint64_t version = index.Snapshot()->version();
  Status s = index.Add({Pdq(2, RandomHash(rng)), Pdq(1, RandomHash(rng))});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(s.error().message(), "entry id 1 is already in the index");
  s = index.Add({Pdq(5, RandomHash(rng)), Pdq(5, RandomHash(rng))});
  EXPECT_EQ(s.error().message(), "entry id 5 is repeated in the batch");
  s = index.Remove({1, 99});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(s.error().message(), "entry id 99 is not in the index");
  EXPECT_TRUE(index.Snapshot()->Contains(1));
  EXPECT_FALSE(index.Snapshot()->Contains(2));
  EXPECT_EQ(index.Snapshot()->version(), version);
  ASSERT_TRUE(index.Remove({1}).ok());
  s = index.Add({Pdq(1, RandomHash(rng))});
  EXPECT_EQ(s.error().message(), "entry id 1 was removed; ids are not reused");
  EXPECT_EQ(ParseSignalType("phash").error().message(),
            "unknown signal type 'phash' (pdq, md5 or sha256)");
}

TEST(HashIndexTest, DihedralQueryFindsRotatedEntriesOncePerEntry) {
  std::mt19937_64 rng(4);
  const Hash256 q = RandomHash(rng);
  const auto variants = models::DihedralFromHash(q);
  HashIndex index;
  // Entry 1 is the query rotated by 90 degrees (2 bits off); entry 2 is the
  // query itself.
  ASSERT_TRUE(index.Add({Pdq(1, Flip(variants[1], 2)), Pdq(2, q)}).ok());
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{2}));
  index.Snapshot()->MatchPdqDihedral(variants, 31, &m);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].id, 2u);
  EXPECT_EQ(m[0].variant, Dihedral::kOriginal);
  EXPECT_EQ(m[1].id, 1u);
  EXPECT_EQ(m[1].variant, Dihedral::kRotate90);
  EXPECT_EQ(m[1].distance, 2);
}

// Brute force over what should be active.
std::vector<uint64_t> Expected(const std::map<uint64_t, Hash256>& active, const Hash256& q,
                               int radius) {
  std::vector<std::pair<int, uint64_t>> hits;
  for (const auto& [id, h] : active) {
    const int d = models::HammingDistance(h, q);
    if (d <= radius) hits.emplace_back(d, id);
  }
  std::sort(hits.begin(), hits.end());
  std::vector<uint64_t> ids;
  for (const auto& [d, id] : hits) ids.push_back(id);
  return ids;
}

TEST(HashIndexTest, MergesKeepEveryChange) {
  std::mt19937_64 rng(5);
  HashIndex index({.merge_threshold = 5000});
  std::map<uint64_t, Hash256> active;
  std::vector<Hash256> queries;
  for (int i = 0; i < 20; ++i) queries.push_back(RandomHash(rng));
  uint64_t next_id = 1;
  for (int batch = 0; batch < 30; ++batch) {
    std::vector<IndexEntry> entries;
    for (int i = 0; i < 1000; ++i) {
      const Hash256 h = i % 10 == 0 ? Flip(queries[rng() % queries.size()], static_cast<int>(rng() % 40))
                                    : RandomHash(rng);
      entries.push_back(Pdq(next_id, h));
      active[next_id++] = h;
    }
    ASSERT_TRUE(index.Add(std::move(entries)).ok());
    std::vector<uint64_t> gone;
    for (int i = 0; i < 50; ++i) {
      auto it = active.begin();
      std::advance(it, static_cast<long>(rng() % active.size()));
      gone.push_back(it->first);
      active.erase(it);
    }
    ASSERT_TRUE(index.Remove(gone).ok());
    if (batch % 10 == 9) index.WaitForMerge();
  }
  index.MergeNow();
  index.WaitForMerge();
  auto snap = index.Snapshot();
  EXPECT_EQ(snap->size(SignalType::kPdq), active.size());
  std::vector<Match> m;
  for (const Hash256& q : queries) {
    snap->MatchPdq(q, 31, &m);
    std::vector<std::pair<int, uint64_t>> got;
    for (const Match& x : m) got.emplace_back(x.distance, x.id);
    std::vector<uint64_t> ids = Ids(m);
    EXPECT_EQ(ids, Expected(active, q, 31));
  }
}

// Small tiers, so that folds and merges (appends and, with removals past 5%
// of the base, full rebuilds) run all the time beside the writer, with the
// delta frozen while later folds go on: every change is visible when Add or
// Remove returns, and the answers equal brute force at every step.
TEST(HashIndexTest, ConcurrentFoldsAndMergesKeepEveryChange) {
  std::mt19937_64 rng(12);
  HashIndex index({.recent_limit = 64, .recent_backlog = 128, .merge_threshold = 256});
  std::map<uint64_t, Hash256> active;
  std::vector<Hash256> queries;
  for (int i = 0; i < 8; ++i) queries.push_back(RandomHash(rng));
  uint64_t next_id = 1;
  std::vector<Match> m;
  for (int batch = 0; batch < 150; ++batch) {
    std::vector<IndexEntry> entries;
    for (int i = 0; i < 40; ++i) {
      const Hash256 h = i % 4 == 0 ? Flip(queries[rng() % queries.size()], static_cast<int>(rng() % 40))
                                   : RandomHash(rng);
      entries.push_back(Pdq(next_id, h));
      active[next_id++] = h;
    }
    ASSERT_TRUE(index.Add(std::move(entries)).ok());
    auto snap = index.Snapshot();
    for (uint64_t id = next_id - 40; id < next_id; ++id) ASSERT_TRUE(snap->Contains(id)) << id;
    // Removals among the newest entries (recent tier, delta) and older ones.
    std::vector<uint64_t> gone = {next_id - 1 - rng() % 40, next_id - 41 - rng() % 200};
    for (int i = 0; i < 3; ++i) {
      auto it = active.begin();
      std::advance(it, static_cast<long>(rng() % active.size()));
      gone.push_back(it->first);
    }
    std::sort(gone.begin(), gone.end());
    gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
    std::erase_if(gone, [&](uint64_t id) { return !active.count(id); });
    ASSERT_TRUE(index.Remove(gone).ok());
    for (uint64_t id : gone) active.erase(id);
    snap = index.Snapshot();
    for (uint64_t id : gone) ASSERT_FALSE(snap->Contains(id)) << id;
    ASSERT_EQ(snap->size(SignalType::kPdq), active.size()) << batch;
    if (batch % 10 == 0) {
      for (const Hash256& q : queries) {
        snap->MatchPdq(q, 31, &m);
        ASSERT_EQ(Ids(m), Expected(active, q, 31)) << batch;
      }
    }
  }
  for (bool merged : {false, true}) {
    if (merged) {
      index.MergeNow();
      index.WaitForMerge();
    }
    auto snap = index.Snapshot();
    EXPECT_EQ(snap->size(SignalType::kPdq), active.size());
    for (const Hash256& q : queries) {
      snap->MatchPdq(q, 31, &m);
      EXPECT_EQ(Ids(m), Expected(active, q, 31)) << merged;
    }
  }
}

// While a merge runs, the entries being merged stay in the delta (one tier
// beside the base, not two) until the merged base replaces it: a query never
// searches more than base, delta and recent entries, and never finds an
// entry twice.
TEST(HashIndexTest, QueriesSearchAtMostThreeTiersWhileMerging) {
  std::mt19937_64 rng(21);
  HashIndex index({.recent_limit = 64, .recent_backlog = 128, .merge_threshold = 256});
  std::map<uint64_t, Hash256> active;
  std::vector<IndexEntry> load;
  for (uint64_t id = 1; id <= 200'000; ++id) {
    const Hash256 h = RandomHash(rng);
    load.push_back(Pdq(id, h));
    active[id] = h;
  }
  ASSERT_TRUE(index.Add(std::move(load)).ok());  // the base (merges take a while)
  const Hash256 q = RandomHash(rng);
  uint64_t next_id = 200'001;
  size_t most = 0;
  std::vector<Match> m;
  for (int batch = 0; batch < 400; ++batch) {
    std::vector<IndexEntry> entries;
    for (int i = 0; i < 40; ++i) {
      const Hash256 h = i % 8 == 0 ? Flip(q, static_cast<int>(rng() % 32)) : RandomHash(rng);
      entries.push_back(Pdq(next_id, h));
      active[next_id++] = h;
    }
    ASSERT_TRUE(index.Add(std::move(entries)).ok());
    auto snap = index.Snapshot();
    most = std::max(most, snap->tiers());
    ASSERT_LE(snap->tiers(), 3u) << batch;
    ASSERT_EQ(snap->size(SignalType::kPdq), active.size()) << batch;
    snap->MatchPdq(q, 31, &m);
    ASSERT_EQ(Ids(m), Expected(active, q, 31)) << batch;
  }
  EXPECT_EQ(most, 3u);
  index.MergeNow();
  index.WaitForMerge();
  EXPECT_EQ(index.Snapshot()->tiers(), 1u);
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), Expected(active, q, 31));
}

// A reader dropping the last reference to a replaced snapshot only hands it
// to the index's release thread (destroying a replaced base would cost the
// query milliseconds); a snapshot that outlives the index stays usable and
// is destroyed by its last holder.
TEST(HashIndexTest, ReplacedSnapshotsAreDestroyedByTheIndex) {
  std::mt19937_64 rng(5);
  const Hash256 q = RandomHash(rng);
  std::shared_ptr<const IndexSnapshot> outlives;
  {
    HashIndex index({.recent_limit = 1'000});
    ASSERT_TRUE(index.Add({Pdq(1, Flip(q, 3))}).ok());
    index.WaitForMerge();
    const uint64_t before = index.released_snapshots();
    EXPECT_EQ(before, 1u);  // the empty first snapshot, replaced by the Add
    std::shared_ptr<const IndexSnapshot> held = index.Snapshot();
    ASSERT_TRUE(index.Add({Pdq(2, Flip(q, 5))}).ok());
    index.WaitForMerge();
    EXPECT_EQ(index.released_snapshots(), before);  // still held here
    std::vector<Match> m;
    held->MatchPdq(q, 31, &m);
    EXPECT_EQ(Ids(m), std::vector<uint64_t>({1}));
    held.reset();
    index.WaitForMerge();
    EXPECT_EQ(index.released_snapshots(), before + 1);
    outlives = index.Snapshot();
    ASSERT_TRUE(index.Add({Pdq(3, Flip(q, 7))}).ok());
    index.WaitForMerge();
    EXPECT_EQ(index.released_snapshots(), before + 1);
  }
  std::vector<Match> m;
  outlives->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), std::vector<uint64_t>({1, 2}));
  outlives.reset();  // destroyed here: the index and its thread are gone
}

// MergeNow while another thread keeps adding: the forced merge takes what
// was added before it (it must not wait for a moment with nothing new),
// and WaitForMerge returns.
TEST(HashIndexTest, MergeNowCompletesWhileAddsGoOn) {
  std::mt19937_64 rng(13);
  const Hash256 q = RandomHash(rng);
  HashIndex index({.recent_limit = 32, .recent_backlog = 64, .merge_threshold = 1'000'000});
  std::atomic<bool> done{false};
  std::atomic<uint64_t> added{0};
  std::thread writer([&] {
    std::mt19937_64 wrng(14);
    for (uint64_t id = 1; !done; id += 8) {
      std::vector<IndexEntry> batch;
      for (uint64_t k = id; k < id + 8; ++k) batch.push_back(Pdq(k, Flip(q, static_cast<int>(k % 20))));
      ASSERT_TRUE(index.Add(std::move(batch)).ok());
      added = id + 7;
    }
  });
  while (added < 400) std::this_thread::yield();
  for (int i = 0; i < 3; ++i) {
    index.MergeNow();
    index.WaitForMerge();
  }
  done = true;
  writer.join();
  index.MergeNow();
  index.WaitForMerge();
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(m.size(), added.load());
}

// MergeNow while a fold runs that took every entry there was (nothing is
// being added any more) must still merge. It used to count that fold's
// entries twice and wait for a second fold that never came: WaitForMerge
// hung (seen under ThreadSanitizer in MergeNowCompletesWhileAddsGoOn). Each
// round fills the recent tier, which starts a fold (of 5,000 entries: a
// millisecond or more), and asks for a merge 0..1 ms later, so that some
// rounds ask while the fold runs; a watchdog turns a hang into a failure.
TEST(HashIndexTest, MergeNowDuringTheLastFoldCompletes) {
  std::mt19937_64 rng(16);
  const Hash256 q = RandomHash(rng);
  HashIndex index({.recent_limit = 4096, .merge_threshold = 1'000'000});
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    for (int i = 0; i < 1200 && !finished; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!finished) {
      std::fprintf(stderr, "MergeNow/WaitForMerge did not return within 120 s\n");
      std::abort();
    }
  });
  constexpr int kRounds = 40, kBatch = 5000;
  uint64_t id = 1;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<IndexEntry> batch;
    for (int k = 0; k < kBatch; ++k, ++id) {
      batch.push_back(Pdq(id, k < 10 ? Flip(q, k) : RandomHash(rng)));
    }
    if (!index.Add(std::move(batch)).ok()) {
      ADD_FAILURE() << "Add failed in round " << round;
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(125 * (round % 9)));
    index.MergeNow();
    index.WaitForMerge();
  }
  finished = true;
  watchdog.join();
  EXPECT_EQ(index.Snapshot()->size(SignalType::kPdq), static_cast<size_t>(kRounds) * kBatch);
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 9, &m);
  EXPECT_EQ(m.size(), static_cast<size_t>(kRounds) * 10);
}

// A merge threshold of 0 merges every fold (it must not spin holding the
// index's lock).
TEST(HashIndexTest, ZeroMergeThresholdStillWorks) {
  std::mt19937_64 rng(15);
  const Hash256 q = RandomHash(rng);
  HashIndex index({.recent_limit = 0, .merge_threshold = 0});
  for (uint64_t id = 1; id <= 50; id += 10) {
    std::vector<IndexEntry> batch;
    for (uint64_t k = id; k < id + 10; ++k) batch.push_back(Pdq(k, Flip(q, static_cast<int>(k))));
    ASSERT_TRUE(index.Add(std::move(batch)).ok());
  }
  index.WaitForMerge();
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                            17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                            30, 31}));
}

TEST(HashIndexTest, FirstLoadAndLaterChangesThroughEveryTier) {
  std::mt19937_64 rng(8);
  const Hash256 q = RandomHash(rng);
  HashIndex index({.recent_limit = 100, .merge_threshold = 300});
  std::vector<IndexEntry> load;
  for (uint64_t id = 1; id <= 500; ++id) load.push_back(Pdq(id, id == 1 ? q : RandomHash(rng)));
  ASSERT_TRUE(index.Add(std::move(load)).ok());  // becomes the base at once
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 0, &m);
  EXPECT_EQ(Ids(m), (std::vector<uint64_t>{1}));
  // Small batches go to the recent tier, fold into the delta past 100,
  // merge into the base past 300: the answers never change meanwhile.
  for (uint64_t id = 501; id <= 1400; id += 50) {
    std::vector<IndexEntry> batch;
    for (uint64_t k = id; k < id + 50; ++k) batch.push_back(Pdq(k, Flip(q, static_cast<int>(k % 7))));
    ASSERT_TRUE(index.Add(std::move(batch)).ok());
    index.Snapshot()->MatchPdq(q, 6, &m);
    EXPECT_EQ(m.size(), id + 50 - 501 + 1) << id;
  }
  ASSERT_TRUE(index.Remove({1, 700}).ok());
  index.MergeNow();
  index.WaitForMerge();
  auto snap = index.Snapshot();
  EXPECT_EQ(snap->size(SignalType::kPdq), 1398u);
  snap->MatchPdq(q, 6, &m);
  EXPECT_EQ(m.size(), 899u);  // q itself and 900 near copies, less 2 removed
  EXPECT_FALSE(snap->Contains(700));
  EXPECT_TRUE(snap->Contains(701));
}

// Readers query continuously while one writer adds and removes; each reader
// checks that a snapshot never loses an entry that an earlier snapshot (of
// the same reader) saw added and not yet removed. Run under ThreadSanitizer
// by deploy/test.sh.
TEST(HashIndexConcurrentTest, ManyReadersOneWriter) {
  std::mt19937_64 rng(6);
  const Hash256 q = RandomHash(rng);
  HashIndex index({.merge_threshold = 3000});
  std::atomic<bool> done{false};
  std::atomic<long> queries{0};
  constexpr uint64_t kPlanted = 1'000'000;  // ids of entries near q, never removed
  auto reader = [&] {
    std::vector<Match> m;
    uint64_t last_version = 0;
    size_t last_planted = 0;
    while (!done.load()) {
      auto snap = index.Snapshot();
      EXPECT_GE(snap->version(), last_version);
      snap->MatchPdq(q, 31, &m);
      size_t planted = 0;
      for (const Match& x : m) planted += x.id >= kPlanted;
      EXPECT_GE(planted, last_planted);
      last_planted = planted;
      last_version = snap->version();
      queries.fetch_add(1);
    }
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) readers.emplace_back(reader);
  uint64_t id = 1;
  for (int batch = 0; batch < 40; ++batch) {
    std::vector<IndexEntry> entries;
    for (int i = 0; i < 200; ++i) entries.push_back(Pdq(id++, RandomHash(rng)));
    entries.push_back(Pdq(kPlanted + static_cast<uint64_t>(batch), Flip(q, batch % 30)));
    ASSERT_TRUE(index.Add(std::move(entries)).ok());
    ASSERT_TRUE(index.Remove({id - 100}).ok());
    if (batch % 8 == 0) index.SetListEnabled("other", batch % 16 == 0);
  }
  index.WaitForMerge();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(queries.load(), 0);
  std::vector<Match> m;
  index.Snapshot()->MatchPdq(q, 31, &m);
  EXPECT_EQ(m.size(), 40u);
}

TEST(HashListTest, ParsesLocalFileLines) {
  std::istringstream in(
      "pdq d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22 ref-a\r\n"
      "# a comment\n"
      "   \n"
      "D8F8F0CEE0F4A84F0637022A078F67F0B36E2ED596621E1D33E6339C4E9C9B22\n"
      "md5 d41d8cd98f00b204e9800998ecf8427e case-7\n"
      "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
      "md5 d41d8cd98f00b204e9800998ecf8427\n"
      "sha256 abc\n"
      "pdq\n"
      "pdq zz f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22 r\n");
  ParsedHashList list = ParseHashList(in, "list.txt", "hotline");
  ASSERT_EQ(list.entries.size(), 4u);
  EXPECT_EQ(list.entries[0].id, 1u);
  EXPECT_EQ(list.entries[0].list, "hotline");
  EXPECT_EQ(list.entries[0].reference, "ref-a");
  EXPECT_EQ(list.entries[1].reference, "list.txt:4");
  EXPECT_EQ(list.entries[1].value, list.entries[0].value);
  EXPECT_EQ(list.entries[2].type, SignalType::kMd5);
  EXPECT_EQ(list.entries[2].value[0], 0xd4);
  EXPECT_EQ(list.entries[2].value[16], 0);
  EXPECT_EQ(list.entries[3].type, SignalType::kSha256);
  ASSERT_EQ(list.errors.size(), 4u);
  EXPECT_EQ(list.errors[0].line, 7);
  EXPECT_EQ(list.errors[0].message, "an md5 is 32 hexadecimal digits, got 31 characters");
  EXPECT_EQ(list.errors[1].line, 8);
  EXPECT_EQ(list.errors[1].message, "a sha256 is 64 hexadecimal digits, got 3 characters");
  EXPECT_EQ(list.errors[2].line, 9);
  EXPECT_EQ(list.errors[2].message, "no hash after the type");
  EXPECT_EQ(list.errors[3].line, 10);
  // The value is checked first: "zz" is the value column here.
  EXPECT_EQ(list.errors[3].message, "a PDQ hash is 64 hexadecimal digits, got 2 characters");
}

}  // namespace
}  // namespace bantay::matcher
