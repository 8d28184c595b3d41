// ComputePool: the fixed set of threads that decode, hash and search, with a
// bounded queue. I/O threads only submit; when the queue is full a
// submission is refused at once (the request is answered 503), so overload
// never grows memory or latency without bound.
//
// Thread safety: TrySubmit and depth are thread-safe; Stop is called once.
#ifndef BANTAY_SERVER_COMPUTE_POOL_H_
#define BANTAY_SERVER_COMPUTE_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bantay::server {

class ComputePool {
 public:
  // Starts `threads` workers, each running `init` first (e.g. to pin OpenMP
  // to one thread). `queue_limit` jobs may wait; more are refused.
  ComputePool(int threads, size_t queue_limit, std::function<void()> init = {});
  ~ComputePool();  // Stop()
  ComputePool(const ComputePool&) = delete;
  ComputePool& operator=(const ComputePool&) = delete;

  // Queues a job; false (job dropped) when the queue is full or stopped.
  bool TrySubmit(std::function<void()> job);
  // Jobs waiting (not running).
  size_t depth() const;
  // Drops the jobs waiting (not the running ones); their closures are
  // destroyed without being run.
  void DropQueued();
  // Runs the jobs still queued, refuses new ones, joins the threads.
  void Stop();

 private:
  void Work(const std::function<void()>& init);

  const size_t queue_limit_;
  mutable std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

// Lowers the calling thread's priority (nice +10; on Linux a thread's own,
// inherited by the threads it starts) so that it runs on what the matching
// threads leave: for work that can wait — changes to the store and the
// index following them, O(entries) each (about a third of a second of CPU
// at 1M entries) — so that a run of changes does not starve matching. A
// failure is ignored (the thread keeps its priority).
void RunBehindMatching();

}  // namespace bantay::server

#endif  // BANTAY_SERVER_COMPUTE_POOL_H_
