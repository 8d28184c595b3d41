#include "compute_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace bantay::server {
namespace {

using namespace std::chrono_literals;

// A gate jobs wait at until the test opens it, and counters the test waits
// on (with a deadline: a pool that never runs a job fails, not hangs).
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_; });
  }
  void Done() {
    std::lock_guard lock(mu_);
    ++done_;
    changed_.notify_all();
  }
  bool WaitFor(int waiting, int done) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 20s, [&] { return waiting_ >= waiting && done_ >= done; });
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool open_ = false;
  int waiting_ = 0;
  int done_ = 0;
};

// Opens the gate when a test ends, failed or not, before the pool it is
// declared after joins its workers.
struct OpenAtEnd {
  Gate& gate;
  ~OpenAtEnd() { gate.Open(); }
};

TEST(ComputePoolTest, JobsRunOnEveryWorkerAtOnce) {
  Gate gate;
  ComputePool pool(3, 64);
  const OpenAtEnd open_at_end{gate};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.TrySubmit([&] { gate.Pass(); }));
  ASSERT_TRUE(gate.WaitFor(3, 0));  // all three held at once
  EXPECT_EQ(pool.depth(), 0u);
}

TEST(ComputePoolTest, AFullQueueRefusesAndStopRunsWhatWaits) {
  Gate gate;
  std::atomic<int> ran{0};  // before the pool: queued jobs may run until it is gone
  auto pool = std::make_unique<ComputePool>(1, 2);
  const OpenAtEnd open_at_end{gate};
  ASSERT_TRUE(pool->TrySubmit([&] { gate.Pass(); ++ran; }));
  ASSERT_TRUE(gate.WaitFor(1, 0));
  EXPECT_TRUE(pool->TrySubmit([&] { ++ran; }));
  EXPECT_TRUE(pool->TrySubmit([&] { ++ran; }));
  EXPECT_FALSE(pool->TrySubmit([&] { ++ran; }));  // 2 already wait
  EXPECT_EQ(pool->depth(), 2u);
  gate.Open();
  pool->Stop();
  EXPECT_EQ(ran.load(), 3);
  EXPECT_FALSE(pool->TrySubmit([&] { ++ran; }));
  pool.reset();
  EXPECT_EQ(ran.load(), 3);
}

TEST(ComputePoolTest, DroppedJobsNeverRunAndTheirClosuresAreDestroyed) {
  Gate gate;
  std::atomic<int> ran{0};
  ComputePool pool(1, 8);
  const OpenAtEnd open_at_end{gate};
  ASSERT_TRUE(pool.TrySubmit([&] { gate.Pass(); }));
  ASSERT_TRUE(gate.WaitFor(1, 0));
  auto owned = std::make_shared<int>(7);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool.TrySubmit([&ran, owned] { ran += *owned; }));
  }
  EXPECT_EQ(owned.use_count(), 4);
  pool.DropQueued();
  EXPECT_EQ(pool.depth(), 0u);
  EXPECT_EQ(owned.use_count(), 1);
  gate.Open();
  ASSERT_TRUE(pool.TrySubmit([&] { gate.Done(); }));
  ASSERT_TRUE(gate.WaitFor(1, 1));
  EXPECT_EQ(ran.load(), 0);
}

}  // namespace
}  // namespace bantay::server
