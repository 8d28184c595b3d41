#include "rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <thread>
#include <vector>

namespace bantay::server {
namespace {

using std::chrono::milliseconds;
using Clock = RateLimiter::Clock;

// Explicit time points: the limiter reads no clock in these tests.
const Clock::time_point kT0 = Clock::time_point() + std::chrono::hours(100);
Clock::time_point At(int64_t ms) { return kT0 + milliseconds(ms); }

TEST(RateLimiterTest, BurstThenRefusal) {
  RateLimiter limiter;
  for (int i = 0; i < 5; ++i) {
    RateLimiter::Decision d = limiter.Take("k", 2.0, 5.0, 1.0, kT0);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.retry_after_seconds, 0);
  }
  RateLimiter::Decision refused = limiter.Take("k", 2.0, 5.0, 1.0, kT0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_seconds, 1);  // ceil(1 / 2)
}

TEST(RateLimiterTest, RefillsAfterExactTimes) {
  RateLimiter limiter;
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(limiter.Take("k", 4.0, 4.0, 1.0, kT0).allowed);
  // One token every 250 ms.
  EXPECT_FALSE(limiter.Take("k", 4.0, 4.0, 1.0, At(249)).allowed);
  EXPECT_TRUE(limiter.Take("k", 4.0, 4.0, 1.0, At(250)).allowed);
  EXPECT_FALSE(limiter.Take("k", 4.0, 4.0, 1.0, At(250)).allowed);
  // 500 ms later: two more.
  EXPECT_TRUE(limiter.Take("k", 4.0, 4.0, 1.0, At(750)).allowed);
  EXPECT_TRUE(limiter.Take("k", 4.0, 4.0, 1.0, At(750)).allowed);
  EXPECT_FALSE(limiter.Take("k", 4.0, 4.0, 1.0, At(750)).allowed);
  // Many small steps add up to whole tokens (no loss to rounding).
  for (int ms = 751; ms <= 1000; ++ms) {
    ASSERT_TRUE(limiter.Take("k", 4.0, 4.0, 0.0, At(ms)).allowed);
  }
  EXPECT_TRUE(limiter.Take("k", 4.0, 4.0, 1.0, At(1000)).allowed);
  EXPECT_FALSE(limiter.Take("k", 4.0, 4.0, 1.0, At(1000)).allowed);
}

// Ten refills of 0.1 token add up to 0.9999999999999999 in doubles; the
// token that is due is still given.
TEST(RateLimiterTest, RoundingDoesNotWithholdADueToken) {
  RateLimiter limiter;
  ASSERT_TRUE(limiter.Take("k", 1.0, 1.0, 1.0, kT0).allowed);
  for (int ms = 100; ms < 1000; ms += 100) {
    ASSERT_FALSE(limiter.Take("k", 1.0, 1.0, 1.0, At(ms)).allowed) << ms;
  }
  EXPECT_TRUE(limiter.Take("k", 1.0, 1.0, 1.0, At(1000)).allowed);
  EXPECT_FALSE(limiter.Take("k", 1.0, 1.0, 1.0, At(1000)).allowed);
}

TEST(RateLimiterTest, RefillIsCappedAtBurst) {
  RateLimiter limiter;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(limiter.Take("k", 10.0, 3.0, 1.0, kT0).allowed);
  // An hour idle refills 3 tokens, not 36000.
  const Clock::time_point later = kT0 + std::chrono::hours(1);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(limiter.Take("k", 10.0, 3.0, 1.0, later).allowed);
  EXPECT_FALSE(limiter.Take("k", 10.0, 3.0, 1.0, later).allowed);
}

TEST(RateLimiterTest, RetryAfterIsTheWholeSecondsUntilTheCostIsThere) {
  RateLimiter limiter;
  // One token every 2 s.
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(limiter.Take("slow", 0.5, 3.0, 1.0, kT0).allowed);
  EXPECT_EQ(limiter.Take("slow", 0.5, 3.0, 1.0, kT0).retry_after_seconds, 2);
  EXPECT_EQ(limiter.Take("slow", 0.5, 3.0, 2.0, kT0).retry_after_seconds, 4);
  EXPECT_EQ(limiter.Take("slow", 0.5, 3.0, 3.0, kT0).retry_after_seconds, 6);
  // Half a token is there after 1 s: the other half takes 1 s.
  EXPECT_EQ(limiter.Take("slow", 0.5, 3.0, 1.0, At(1000)).retry_after_seconds,
            1);
  // 0.25 token after 500 ms (0.75 missing: 1.5 s, rounded up).
  RateLimiter other;
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(other.Take("slow", 0.5, 3.0, 1.0, kT0).allowed);
  EXPECT_EQ(other.Take("slow", 0.5, 3.0, 1.0, At(500)).retry_after_seconds, 2);

  // 10 missing at 3 per second: 3.33 s, so 4.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(limiter.Take("fast", 3.0, 10.0, 1.0, kT0).allowed);
  EXPECT_EQ(limiter.Take("fast", 3.0, 10.0, 10.0, kT0).retry_after_seconds, 4);
  // Less than a second missing still says 1, never 0.
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(limiter.Take("quick", 100.0, 10.0, 1.0, kT0).allowed);
  RateLimiter::Decision quick = limiter.Take("quick", 100.0, 10.0, 1.0, kT0);
  EXPECT_FALSE(quick.allowed);
  EXPECT_EQ(quick.retry_after_seconds, 1);
  // A very slow rate does not overflow.
  ASSERT_TRUE(limiter.Take("glacial", 1e-12, 1.0, 1.0, kT0).allowed);
  EXPECT_EQ(limiter.Take("glacial", 1e-12, 1.0, 1.0, kT0).retry_after_seconds,
            std::numeric_limits<int>::max());
}

TEST(RateLimiterTest, RefusalTakesNothing) {
  RateLimiter limiter;
  ASSERT_TRUE(limiter.Take("k", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("k", 1.0, 2.0, 2.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("k", 1.0, 2.0, 1.5, kT0).allowed);
  EXPECT_TRUE(limiter.Take("k", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("k", 1.0, 2.0, 1.0, kT0).allowed);
}

// Peek answers what Take would, and takes nothing.
TEST(RateLimiterTest, PeekTakesNothing) {
  RateLimiter limiter;
  // A bucket not seen before is full.
  EXPECT_TRUE(limiter.Peek("k", 2.0, 2.0, 1.0, kT0).allowed);
  ASSERT_TRUE(limiter.Take("k", 2.0, 2.0, 1.0, kT0).allowed);
  EXPECT_TRUE(limiter.Peek("k", 2.0, 2.0, 1.0, kT0).allowed);
  EXPECT_TRUE(limiter.Peek("k", 2.0, 2.0, 1.0, kT0).allowed);
  ASSERT_TRUE(limiter.Take("k", 2.0, 2.0, 1.0, kT0).allowed);
  RateLimiter::Decision peeked = limiter.Peek("k", 2.0, 2.0, 1.0, At(100));
  EXPECT_FALSE(peeked.allowed);
  EXPECT_EQ(peeked.retry_after_seconds, 1);  // ceil(0.8 / 2)
  // The refill is the same whether it was looked at or not.
  EXPECT_FALSE(limiter.Peek("k", 2.0, 2.0, 1.0, At(499)).allowed);
  EXPECT_TRUE(limiter.Peek("k", 2.0, 2.0, 1.0, At(500)).allowed);
  EXPECT_TRUE(limiter.Take("k", 2.0, 2.0, 1.0, At(500)).allowed);
  EXPECT_FALSE(limiter.Take("k", 2.0, 2.0, 1.0, At(500)).allowed);
}

TEST(RateLimiterTest, CostAboveBurstIsNeverPaid) {
  RateLimiter limiter;
  RateLimiter::Decision d = limiter.Take("k", 2.0, 5.0, 6.0, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, 3);  // ceil(5 / 2)
  // Not even with a full bucket after a long wait.
  d = limiter.Take("k", 2.0, 5.0, 6.0, kT0 + std::chrono::hours(1));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, 3);
  // And it took nothing: the whole burst is still there.
  EXPECT_TRUE(
      limiter.Take("k", 2.0, 5.0, 5.0, kT0 + std::chrono::hours(1)).allowed);
  // A cost of exactly the burst is paid from a full bucket.
  EXPECT_TRUE(limiter.Take("other", 2.0, 5.0, 5.0, kT0).allowed);
}

TEST(RateLimiterTest, BatchCostsSeveralTokens) {
  RateLimiter limiter;
  EXPECT_TRUE(limiter.Take("k", 1.0, 10.0, 7.0, kT0).allowed);
  RateLimiter::Decision d = limiter.Take("k", 1.0, 10.0, 7.0, kT0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_seconds, 4);  // 3 left, 4 missing at 1/s
  EXPECT_TRUE(limiter.Take("k", 1.0, 10.0, 7.0, At(4000)).allowed);
}

TEST(RateLimiterTest, RefundGivesTokensBackUpToTheBurst) {
  RateLimiter limiter;
  limiter.Refund("unseen", 5.0, 1.0);  // nothing taken: no bucket made
  EXPECT_TRUE(limiter.Take("unseen", 1.0, 5.0, 5.0, kT0).allowed);  // created full
  EXPECT_FALSE(limiter.Take("unseen", 1.0, 5.0, 1.0, kT0).allowed);
  limiter.Refund("unseen", 5.0, 2.0);
  EXPECT_TRUE(limiter.Take("unseen", 1.0, 5.0, 2.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("unseen", 1.0, 5.0, 1.0, kT0).allowed);
  limiter.Refund("unseen", 5.0, 9.0);  // capped at the burst
  EXPECT_TRUE(limiter.Take("unseen", 1.0, 5.0, 5.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("unseen", 1.0, 5.0, 1.0, kT0).allowed);
}

TEST(RateLimiterTest, KeysAreIndependent) {
  RateLimiter limiter;
  for (int i = 0; i < 2; ++i)
    ASSERT_TRUE(limiter.Take("a", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("a", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_TRUE(limiter.Take("b", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_TRUE(limiter.Take("b", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("b", 1.0, 2.0, 1.0, kT0).allowed);
  EXPECT_FALSE(limiter.Take("a", 1.0, 2.0, 1.0, kT0).allowed);
}

TEST(RateLimiterTest, AnEarlierTimeDoesNotRefillTwice) {
  RateLimiter limiter;
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(limiter.Take("k", 2.0, 5.0, 1.0, At(10'000)).allowed);
  // A caller that read the clock earlier arrives late: no refill for it...
  EXPECT_FALSE(limiter.Take("k", 2.0, 5.0, 1.0, At(5'000)).allowed);
  // ...and the bucket's time stays at 10 s, so 500 ms later there is one
  // token, not the 5 a bucket moved back to 5 s would hold.
  EXPECT_TRUE(limiter.Take("k", 2.0, 5.0, 1.0, At(10'500)).allowed);
  EXPECT_FALSE(limiter.Take("k", 2.0, 5.0, 1.0, At(10'500)).allowed);
}

TEST(RateLimiterTest, ConcurrentTakesAllowExactlyTheTokens) {
  RateLimiter limiter;
  constexpr double kRate = 1000.0;
  constexpr double kBurst = 1000.0;
  std::atomic<int> allowed{0};
  auto phase = [&](Clock::time_point now) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, now] {
        for (int i = 0; i < 1000; ++i) {
          if (limiter.Take("shared", kRate, kBurst, 1.0, now).allowed)
            allowed.fetch_add(1);
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  };
  phase(kT0);
  EXPECT_EQ(allowed.load(), 1000);
  // 500 ms at 1000/s: 500 more, whoever asks for them.
  phase(At(500));
  EXPECT_EQ(allowed.load(), 1500);
}

}  // namespace
}  // namespace bantay::server
