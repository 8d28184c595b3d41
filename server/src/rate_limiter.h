// RateLimiter: one token bucket per API key, refilled continuously.
//
// The match API is an oracle: a caller who may ask without limit can probe
// the index (walk a hash towards a match). Buckets make that slow.
//
// Thread safety: all methods are thread-safe (one short mutex held per call;
// no allocation after the key is first seen).
#ifndef BANTAY_SERVER_RATE_LIMITER_H_
#define BANTAY_SERVER_RATE_LIMITER_H_

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace bantay::server {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  struct Decision {
    bool allowed = false;
    // When refused: whole seconds until `cost` tokens are there (at least 1).
    int retry_after_seconds = 0;
  };

  // Takes `cost` tokens from the bucket of `key_id` (created full with
  // `burst` tokens, refilled at `rate` per second, capped at `burst`) at
  // time `now`. A refused request takes nothing. A cost above `burst` can
  // never be paid: it is refused with retry_after_seconds =
  // ceil(burst / rate) (callers cap batch sizes so that it does not happen).
  Decision Take(const std::string& key_id, double rate, double burst, double cost,
                Clock::time_point now);
  Decision Take(const std::string& key_id, double rate, double burst, double cost) {
    return Take(key_id, rate, burst, cost, Clock::now());
  }
  // The decision Take would make, without taking anything (a request
  // refused from its header, before its body is read, gets the same 429).
  Decision Peek(const std::string& key_id, double rate, double burst, double cost,
                Clock::time_point now);
  Decision Peek(const std::string& key_id, double rate, double burst, double cost) {
    return Peek(key_id, rate, burst, cost, Clock::now());
  }

  // Gives back `amount` tokens taken earlier (capped at `burst`): a request
  // that took its first token when it came in and is then refused for the
  // rest of its cost.
  void Refund(const std::string& key_id, double burst, double amount);

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  Decision Decide(const std::string& key_id, double rate, double burst, double cost,
                  Clock::time_point now, bool take);
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // guarded by mu_
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_RATE_LIMITER_H_
