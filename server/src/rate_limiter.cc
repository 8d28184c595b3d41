#include "rate_limiter.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace bantay::server {

namespace {

// Refills are sums of products of doubles, so a bucket that is due a whole
// token can hold 0.9999999999999999 of it; a request is not refused for less
// than this.
constexpr double kSlack = 1e-9;

int RetryAfterSeconds(double missing, double rate) {
  const double seconds = std::ceil(missing / rate);
  if (!(seconds >= 1)) return 1;  // also NaN
  if (seconds >= static_cast<double>(std::numeric_limits<int>::max())) {
    return std::numeric_limits<int>::max();
  }
  return static_cast<int>(seconds);
}

}  // namespace

RateLimiter::Decision RateLimiter::Take(const std::string& key_id, double rate,
                                        double burst, double cost,
                                        Clock::time_point now) {
  return Decide(key_id, rate, burst, cost, now, /*take=*/true);
}

RateLimiter::Decision RateLimiter::Peek(const std::string& key_id, double rate,
                                        double burst, double cost,
                                        Clock::time_point now) {
  return Decide(key_id, rate, burst, cost, now, /*take=*/false);
}

void RateLimiter::Refund(const std::string& key_id, double burst, double amount) {
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key_id);
  if (it == buckets_.end()) return;  // nothing was taken
  it->second.tokens = std::min(burst, it->second.tokens + amount);
}

RateLimiter::Decision RateLimiter::Decide(const std::string& key_id, double rate,
                                          double burst, double cost,
                                          Clock::time_point now, bool take) {
  std::lock_guard lock(mu_);
  auto [it, created] = buckets_.try_emplace(key_id);
  Bucket& bucket = it->second;
  if (created) {
    bucket.tokens = burst;
    bucket.updated = now;
  } else if (now > bucket.updated) {
    const double elapsed =
        std::chrono::duration<double>(now - bucket.updated).count();
    bucket.tokens = std::min(burst, bucket.tokens + elapsed * rate);
    bucket.updated = now;
  } else {
    // A caller that read the clock before another one took the lock: no
    // refill, and the bucket's time does not go back (which would refill
    // the same interval twice).
    bucket.tokens = std::min(burst, bucket.tokens);
  }

  if (cost > burst) return {false, RetryAfterSeconds(burst, rate)};
  if (bucket.tokens + kSlack >= cost) {
    if (take) bucket.tokens = std::max(0.0, bucket.tokens - cost);
    return {true, 0};
  }
  return {false, RetryAfterSeconds(cost - bucket.tokens, rate)};
}

}  // namespace bantay::server
