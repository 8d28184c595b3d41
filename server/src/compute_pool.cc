#include "compute_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <utility>

namespace bantay::server {

ComputePool::ComputePool(int threads, size_t queue_limit, std::function<void()> init)
    : queue_limit_(queue_limit) {
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this, init] { Work(init); });
  }
}

ComputePool::~ComputePool() { Stop(); }

bool ComputePool::TrySubmit(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= queue_limit_) return false;
    queue_.push_back(std::move(job));
  }
  ready_.notify_one();
  return true;
}

size_t ComputePool::depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void ComputePool::DropQueued() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(queue_);
  }
}

void ComputePool::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void ComputePool::Work(const std::function<void()>& init) {
  if (init) init();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

void RunBehindMatching() {
  constexpr int kNice = 10;
  // PRIO_PROCESS with a thread id sets that thread's nice value (Linux).
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kNice);
}

}  // namespace bantay::server
