#include "bantay/matcher/index_binary_mih.h"

#include <faiss/IndexBinaryFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "test_images.h"

namespace bantay::matcher {
namespace {

using Code = std::array<uint8_t, 32>;
using idx_t = faiss::Index::idx_t;

Code RandomCode(std::mt19937_64& rng) {
  Code c;
  for (int i = 0; i < 4; ++i) {
    const uint64_t w = rng();
    std::memcpy(c.data() + 8 * i, &w, 8);
  }
  return c;
}

// A copy of c with exactly `bits` distinct bits flipped.
Code Flip(const Code& c, int bits, std::mt19937_64& rng) {
  Code out = c;
  std::vector<int> positions(256);
  for (int i = 0; i < 256; ++i) positions[i] = i;
  std::shuffle(positions.begin(), positions.end(), rng);
  for (int i = 0; i < bits; ++i) out[positions[i] / 8] ^= static_cast<uint8_t>(1 << (positions[i] % 8));
  return out;
}

int Distance(const Code& a, const uint8_t* b) {
  int d = 0;
  for (int i = 0; i < 32; ++i) d += __builtin_popcount(a[i] ^ b[i]);
  return d;
}

struct Data {
  std::vector<uint8_t> codes;  // n x 32
  std::vector<Code> queries;
  idx_t n() const { return static_cast<idx_t>(codes.size() / 32); }
  std::vector<uint8_t> QueryBytes() const {
    std::vector<uint8_t> bytes;
    for (const Code& q : queries) bytes.insert(bytes.end(), q.begin(), q.end());
    return bytes;
  }
};

// n random codes; for each of `queries` random queries, neighbours planted
// at every distance 0..40 (so every radius boundary is exercised).
Data RandomWithPlanted(idx_t n, int queries, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data data;
  auto push = [&](const Code& c) { data.codes.insert(data.codes.end(), c.begin(), c.end()); };
  for (int q = 0; q < queries; ++q) {
    const Code query = RandomCode(rng);
    data.queries.push_back(query);
    for (int d = 0; d <= 40; ++d) push(Flip(query, d, rng));
  }
  while (data.n() < n) push(RandomCode(rng));
  return data;
}

// Clusters of 10 codes within distance 20 of a centre, as real hash lists
// hold many near-copies of one picture; queries near centres.
Data Clustered(idx_t n, int queries, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Data data;
  std::vector<Code> centres;
  while (data.n() < n) {
    const Code centre = RandomCode(rng);
    centres.push_back(centre);
    for (int k = 0; k < 10; ++k) {
      const Code member = Flip(centre, static_cast<int>(rng() % 21), rng);
      data.codes.insert(data.codes.end(), member.begin(), member.end());
    }
  }
  for (int q = 0; q < queries; ++q) {
    data.queries.push_back(Flip(centres[rng() % centres.size()], static_cast<int>(rng() % 16), rng));
  }
  return data;
}

std::vector<std::pair<idx_t, int>> BruteForce(const Data& data, const Code& q, int radius) {
  std::vector<std::pair<idx_t, int>> out;
  for (idx_t i = 0; i < data.n(); ++i) {
    const int d = Distance(q, &data.codes[32 * static_cast<size_t>(i)]);
    if (d <= radius) out.emplace_back(i, d);
  }
  return out;
}

void ExpectExact(const IndexBinaryMIH& index, const Data& data,
                 std::initializer_list<int> radii) {
  std::vector<std::pair<idx_t, int>> got;
  size_t total = 0;
  for (int radius : radii) {
    for (const Code& q : data.queries) {
      index.RangeSearchLeq(q.data(), radius, &got);
      const auto expected = BruteForce(data, q, radius);
      ASSERT_EQ(got, expected) << "radius " << radius;
      total += got.size();
    }
  }
  EXPECT_GT(total, 0u);
}

using Layout = IndexBinaryMIH::Layout;

// Appended merges new codes into copies of the tables (a radix sort by
// bucket, then runs of old members): the result must answer exactly as an
// index built over all the codes at once, for table layouts of 16 bits (two
// sort passes of 8), 21-22 bits (two of 11) and 23-24 bits (two of 12), with
// code numbers or inline entries.
TEST(IndexBinaryMIHTest, AppendedAnswersAsARebuild) {
  for (Layout layout : {Layout::kNumbers, Layout::kInline}) {
    for (int m : {16, 12, 11}) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " inline " << (layout == Layout::kInline));
      const Data data = RandomWithPlanted(12'000, 6, 40 + static_cast<uint64_t>(m));
      const idx_t first = 7'000;  // the planted codes are split between the parts
      IndexBinaryMIH base(m, layout);
      base.add(first, data.codes.data());
      std::unique_ptr<IndexBinaryMIH> appended =
          base.Appended(data.n() - first, data.codes.data() + 32 * first);
      ASSERT_EQ(appended->ntotal, data.n());
      ASSERT_EQ(appended->num_substrings(), m);
      ASSERT_EQ(appended->layout(), layout);
      for (idx_t i = 0; i < data.n(); i += 997) {
        EXPECT_EQ(std::memcmp(appended->code(i), &data.codes[32 * static_cast<size_t>(i)], 32), 0);
      }
      ExpectExact(*appended, data, {0, 1, 15, 16, 31, 32, 64});
      // And appending again, to the appended index (its tables were made by
      // Appended, not by a build).
      Data more = data;
      std::mt19937_64 rng(9);
      for (int k = 0; k < 500; ++k) {
        const Code c = Flip(data.queries[k % data.queries.size()], k % 41, rng);
        more.codes.insert(more.codes.end(), c.begin(), c.end());
      }
      std::unique_ptr<IndexBinaryMIH> twice =
          appended->Appended(more.n() - data.n(), more.codes.data() + 32 * data.n());
      ExpectExact(*twice, more, {0, 31, 32});
    }
  }
}

// An index that grows into another shape is built anew rather than keeping
// tables cut for its old size: 5,000 codes take 16 substrings (256 / 12.3,
// at most 16), 100,000 take 15 (256 / 16.6).
TEST(IndexBinaryMIHTest, AppendedTakesTheShapeOfItsNewSize) {
  const Data data = RandomWithPlanted(100'000, 10, 44);
  IndexBinaryMIH base(0, Layout::kNumbers);
  base.add(5'000, data.codes.data());
  ASSERT_EQ(base.num_substrings(), 16);
  std::unique_ptr<IndexBinaryMIH> grown =
      base.Appended(data.n() - 5'000, data.codes.data() + 32 * 5'000);
  EXPECT_EQ(grown->num_substrings(), 15);
  EXPECT_EQ(grown->layout(), Layout::kNumbers);
  ExpectExact(*grown, data, {0, 31, 32});
  // Below 4096 codes there are no tables; appending past it makes them.
  IndexBinaryMIH tiny;
  tiny.add(4'000, data.codes.data());
  ASSERT_EQ(tiny.num_substrings(), 0);
  std::unique_ptr<IndexBinaryMIH> with_tables = tiny.Appended(1'000, data.codes.data() + 32 * 4'000);
  EXPECT_EQ(with_tables->num_substrings(), 16);
  EXPECT_EQ(with_tables->layout(), Layout::kInline);
}

TEST(IndexBinaryMIHTest, ExactAgainstBruteForceOnRandomData) {
  const Data data = RandomWithPlanted(200'000, 40, 1);
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  // Up to kInlineMaxCodes codes: inline entries in 16 tables.
  EXPECT_EQ(index.layout(), Layout::kInline);
  EXPECT_EQ(index.num_substrings(), 16);
  ExpectExact(index, data, {0, 1, 15, 16, 31, 32, 64});
  IndexBinaryMIH numbers(0, Layout::kNumbers);
  numbers.add(data.n(), data.codes.data());
  EXPECT_EQ(numbers.num_substrings(), 15);  // round(256 / log2(200000)) = round(14.5)
  ExpectExact(numbers, data, {0, 1, 15, 16, 31, 32, 64});
}

// Inline tables hold 16 bytes a code (the numbers layout 4), beside the
// bucket starts and the codes.
TEST(IndexBinaryMIHTest, MemoryOfEachLayout) {
  const Data data = RandomWithPlanted(50'000, 0, 45);
  IndexBinaryMIH numbers(16, Layout::kNumbers), inlined(16, Layout::kInline);
  numbers.add(data.n(), data.codes.data());
  inlined.add(data.n(), data.codes.data());
  const size_t codes = 50'000 * 32, starts = 16 * ((1 << 16) + 1) * 4;
  EXPECT_EQ(numbers.MemoryBytes(), codes + starts + 16 * 50'000 * 4);
  EXPECT_EQ(inlined.MemoryBytes(), codes + starts + 16 * 50'000 * 16);
}

TEST(IndexBinaryMIHTest, ExactWithEveryTableCount) {
  const Data data = RandomWithPlanted(100'000, 15, 2);
  for (Layout layout : {Layout::kNumbers, Layout::kInline}) {
    for (int m : {11, 13, 16, 23, 32}) {
      SCOPED_TRACE(::testing::Message() << "m " << m << " inline " << (layout == Layout::kInline));
      IndexBinaryMIH index(m, layout);
      index.add(data.n(), data.codes.data());
      EXPECT_EQ(index.num_substrings(), m);
      EXPECT_EQ(index.layout(), layout);
      ExpectExact(index, data, {0, 1, 15, 16, 31, 32});
    }
  }
}

TEST(IndexBinaryMIHTest, ExactOnClusteredData) {
  const Data data = Clustered(150'000, 40, 3);
  for (Layout layout : {Layout::kNumbers, Layout::kInline}) {
    IndexBinaryMIH index(0, layout);
    index.add(data.n(), data.codes.data());
    ExpectExact(index, data, {0, 1, 15, 16, 31, 32, 64});
  }
}

TEST(IndexBinaryMIHTest, SmallIndexScans) {
  const Data data = RandomWithPlanted(4000, 20, 4);
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  EXPECT_EQ(index.num_substrings(), 0);
  ExpectExact(index, data, {0, 1, 31, 32, 64, 256});
}

TEST(IndexBinaryMIHTest, BoundaryDistanceRIsInAndRPlusOneIsOut) {
  std::mt19937_64 rng(5);
  const Code q = RandomCode(rng);
  Data data = RandomWithPlanted(70'000, 0, 6);
  const Code at31 = Flip(q, 31, rng), at32 = Flip(q, 32, rng);
  std::memcpy(&data.codes[0], at31.data(), 32);
  std::memcpy(&data.codes[32], at32.data(), 32);
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  std::vector<std::pair<idx_t, int>> got;
  index.RangeSearchLeq(q.data(), 31, &got);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (std::pair<idx_t, int>{0, 31}));
  index.RangeSearchLeq(q.data(), 32, &got);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1], (std::pair<idx_t, int>{1, 32}));
  index.RangeSearchLeq(q.data(), 30, &got);
  EXPECT_TRUE(got.empty());
}

TEST(IndexBinaryMIHTest, DuplicateCodesAreAllReturned) {
  Data data = RandomWithPlanted(80'000, 0, 7);
  for (int copy = 1; copy < 5; ++copy) {
    std::memcpy(&data.codes[32 * 1000 * copy], &data.codes[0], 32);
  }
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  Code q;
  std::memcpy(q.data(), &data.codes[0], 32);
  std::vector<std::pair<idx_t, int>> got;
  index.RangeSearchLeq(q.data(), 0, &got);
  EXPECT_EQ(got, (std::vector<std::pair<idx_t, int>>{{0, 0}, {1000, 0}, {2000, 0}, {3000, 0}, {4000, 0}}));
}

// FAISS conventions, checked against FAISS's own brute-force index.
TEST(IndexBinaryMIHTest, FaissInterfaceAgreesWithIndexBinaryFlat) {
  const Data data = RandomWithPlanted(100'000, 30, 8);
  IndexBinaryMIH mih;
  faiss::IndexBinaryFlat flat(256);
  mih.add(data.n(), data.codes.data());
  flat.add(data.n(), data.codes.data());
  const std::vector<uint8_t> queries = data.QueryBytes();
  const idx_t nq = static_cast<idx_t>(data.queries.size());

  faiss::RangeSearchResult a(nq), b(nq);
  mih.range_search(nq, queries.data(), 32, &a);  // strict: distance < 32
  flat.range_search(nq, queries.data(), 32, &b);
  for (idx_t i = 0; i < nq; ++i) {
    std::vector<std::pair<idx_t, float>> x, y;
    for (size_t j = a.lims[i]; j < a.lims[i + 1]; ++j) x.emplace_back(a.labels[j], a.distances[j]);
    for (size_t j = b.lims[i]; j < b.lims[i + 1]; ++j) y.emplace_back(b.labels[j], b.distances[j]);
    std::sort(x.begin(), x.end());
    std::sort(y.begin(), y.end());
    ASSERT_EQ(x, y) << i;
    EXPECT_EQ(x.size(), 32u);  // planted at 0..31
  }

  const idx_t k = 5;
  std::vector<int32_t> da(nq * k), db(nq * k);
  std::vector<idx_t> la(nq * k), lb(nq * k);
  mih.search(nq, queries.data(), k, da.data(), la.data());
  flat.search(nq, queries.data(), k, db.data(), lb.data());
  EXPECT_EQ(da, db);
  EXPECT_EQ(la, lb);  // distances 0..4 are unique, so labels agree too

  uint8_t back[32];
  mih.reconstruct(17, back);
  EXPECT_EQ(std::memcmp(back, &data.codes[32 * 17], 32), 0);
}

TEST(IndexBinaryMIHTest, KnnFallsBackToScanBeyondTheMatchRadius) {
  Data data = RandomWithPlanted(70'000, 0, 9);
  IndexBinaryMIH mih;
  faiss::IndexBinaryFlat flat(256);
  mih.add(data.n(), data.codes.data());
  flat.add(data.n(), data.codes.data());
  std::mt19937_64 rng(10);
  const Code q = RandomCode(rng);  // nearest codes are ~90 bits away
  int32_t da[3], db[3];
  idx_t la[3], lb[3];
  mih.search(1, q.data(), 3, da, la);
  flat.search(1, q.data(), 3, db, lb);
  EXPECT_EQ(std::vector<int32_t>(da, da + 3), std::vector<int32_t>(db, db + 3));
  EXPECT_GT(da[0], 31);
}

// Freed blocks are kept and handed out again (a merge reuses the memory of
// the copy before it instead of faulting in fresh pages); large requests
// are cut from larger kept blocks; idle ones are unmapped.
TEST(BlockPoolTest, FreedBlocksAreReusedCutAndReleased) {
  constexpr size_t kMB = size_t{1} << 20;
  ReleaseIdleBlocks(0);  // whatever earlier tests left
  void* a = AllocateBlock(3 * kMB);
  std::memset(a, 0x5A, 3 * kMB);
  FreeBlock(a);
  // Mapped a quarter larger (3.75 MB), rounded to 2 MB: 4 MB kept.
  EXPECT_EQ(ReleaseIdleBlocks(3600), 4 * kMB);
  void* b = AllocateBlock(3 * kMB + 1);
  EXPECT_EQ(b, a);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % kHugeBlock, 0u);
  EXPECT_EQ(ReleaseIdleBlocks(3600), 0u);
  FreeBlock(b);
  // 100 MB -> a 126 MB block; 10 MB cut from its front (12.5 MB rounded
  // to 14 MB), the remaining 112 MB stay kept.
  void* big = AllocateBlock(100 * kMB);
  FreeBlock(big);
  EXPECT_EQ(ReleaseIdleBlocks(3600), 130 * kMB);
  void* cut = AllocateBlock(10 * kMB);
  EXPECT_EQ(cut, big);
  EXPECT_EQ(ReleaseIdleBlocks(3600), 116 * kMB);
  void* next = AllocateBlock(50 * kMB);  // from the 112 MB rest, at 14 MB in
  EXPECT_EQ(next, static_cast<char*>(big) + 14 * kMB);
  std::memset(next, 1, 50 * kMB);
  EXPECT_EQ(ReleaseIdleBlocks(3600), 4 * kMB + 48 * kMB);  // 112 - 64 (62.5 rounded up)
  // A small request never takes a block twice its size.
  void* small = AllocateBlock(kBlockMin);
  EXPECT_NE(small, a);
  FreeBlock(small);
  FreeBlock(cut);
  FreeBlock(next);
  EXPECT_EQ(ReleaseIdleBlocks(0), 0u);
}

TEST(IndexBinaryMIHTest, RemoveIdsShiftsLabels) {
  Data data = RandomWithPlanted(70'000, 1, 11);  // codes 0..40 at distances 0..40
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  faiss::IDSelectorRange first_ten(0, 10);
  EXPECT_EQ(index.remove_ids(first_ten), 10u);
  EXPECT_EQ(index.ntotal, data.n() - 10);
  std::vector<std::pair<idx_t, int>> got;
  index.RangeSearchLeq(data.queries[0].data(), 12, &got);
  EXPECT_EQ(got, (std::vector<std::pair<idx_t, int>>{{0, 10}, {1, 11}, {2, 12}}));
  index.reset();
  EXPECT_EQ(index.ntotal, 0);
  index.RangeSearchLeq(data.queries[0].data(), 256, &got);
  EXPECT_TRUE(got.empty());
}

TEST(IndexBinaryMIHTest, BatchedSearchEqualsSingleQueries) {
  const Data data = RandomWithPlanted(100'000, 64, 12);
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  const std::vector<uint8_t> queries = data.QueryBytes();
  const idx_t nq = static_cast<idx_t>(data.queries.size());
  faiss::RangeSearchResult batch(nq);
  index.range_search(nq, queries.data(), 32, &batch);
  std::vector<std::pair<idx_t, int>> single;
  for (idx_t i = 0; i < nq; ++i) {
    index.RangeSearchLeq(data.queries[i].data(), 31, &single);
    ASSERT_EQ(batch.lims[i + 1] - batch.lims[i], single.size());
    for (size_t j = 0; j < single.size(); ++j) {
      EXPECT_EQ(batch.labels[batch.lims[i] + j], single[j].first);
    }
  }
}

TEST(IndexBinaryMIHTest, ComposesWithFaissIdMap) {
  const Data data = RandomWithPlanted(70'000, 3, 13);
  faiss::IndexBinaryIDMap2 index(new IndexBinaryMIH());
  index.own_fields = true;
  std::vector<idx_t> ids(static_cast<size_t>(data.n()));
  for (idx_t i = 0; i < data.n(); ++i) ids[i] = 1'000'000 + 7 * i;
  index.add_with_ids(data.n(), data.codes.data(), ids.data());
  faiss::RangeSearchResult result(1);
  index.range_search(1, data.queries[1].data(), 3, &result);  // distances 0, 1, 2
  std::vector<idx_t> labels(result.labels, result.labels + result.lims[1]);
  std::sort(labels.begin(), labels.end());
  EXPECT_EQ(labels, (std::vector<idx_t>{1'000'000 + 7 * 41, 1'000'000 + 7 * 42,
                                        1'000'000 + 7 * 43}));
}

TEST(IndexBinaryMIHTest, WritesAndReadsFaissFlatFiles) {
  const Data data = RandomWithPlanted(70'000, 2, 14);
  IndexBinaryMIH index;
  index.add(data.n(), data.codes.data());
  testing::TempDir dir;
  const std::string path = dir.path() + "/codes.faiss";
  ASSERT_TRUE(WriteMih(index, path).ok());
  Result<std::unique_ptr<IndexBinaryMIH>> back = ReadMih(path);
  ASSERT_TRUE(back.ok()) << back.error().ToString();
  EXPECT_EQ((*back)->ntotal, data.n());
  EXPECT_EQ((*back)->num_substrings(), index.num_substrings());
  std::vector<std::pair<idx_t, int>> a, b;
  index.RangeSearchLeq(data.queries[0].data(), 31, &a);
  (*back)->RangeSearchLeq(data.queries[0].data(), 31, &b);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 32u);

  const std::string junk = dir.Write("junk.faiss", {1, 2, 3, 4});
  Result<std::unique_ptr<IndexBinaryMIH>> bad = ReadMih(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(bad.error().message(), "not a FAISS binary index file: " + junk);
  EXPECT_EQ(ReadMih(dir.path() + "/missing").error().code(), ErrorCode::kCorruptData);
}

TEST(IndexBinaryMIHTest, AppendedEqualsRebuilt) {
  const Data data = RandomWithPlanted(120'000, 20, 15);
  const idx_t first = 90'000;
  IndexBinaryMIH base;
  base.add(first, data.codes.data());  // planted codes are in the first part
  std::unique_ptr<IndexBinaryMIH> appended =
      base.Appended(data.n() - first, data.codes.data() + 32 * first);
  EXPECT_EQ(appended->ntotal, data.n());
  EXPECT_EQ(appended->num_substrings(), base.num_substrings());
  // The appended part must be found too: plant a copy of each query there.
  ExpectExact(*appended, data, {0, 1, 15, 16, 31, 32});
  Data tail = data;
  for (size_t q = 0; q < tail.queries.size(); ++q) {
    std::memcpy(&tail.codes[32 * (first + 1000 + q)], tail.queries[q].data(), 32);
  }
  std::unique_ptr<IndexBinaryMIH> with_copies =
      base.Appended(tail.n() - first, tail.codes.data() + 32 * first);
  ExpectExact(*with_copies, tail, {0, 31});
  std::vector<std::pair<idx_t, int>> got;
  with_copies->RangeSearchLeq(tail.queries[3].data(), 0, &got);
  EXPECT_EQ(got, (std::vector<std::pair<idx_t, int>>{{3 * 41, 0}, {first + 1003, 0}}));
}

}  // namespace
}  // namespace bantay::matcher
