// A replaced global operator new (failing_new.h). operator new[] and the
// nothrow forms call this one; the aligned forms are left as they are.
#include "failing_new.h"

#include <cstdlib>
#include <new>

namespace {

thread_local long countdown = -1;  // allocations left before one fails; -1: none fails

}  // namespace

void* operator new(std::size_t size) {
  if (countdown >= 0 && countdown-- == 0) throw std::bad_alloc();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace bantay::testing {

void FailAllocation(long n) { countdown = n; }
bool AllocationFailed() { return countdown < 0; }

}  // namespace bantay::testing
