// A global operator new that can be told to fail (std::bad_alloc) the n-th
// allocation of the calling thread, for failure-injection tests. Linked only
// into the binaries that need it (store_fault_test): it replaces the
// allocator of the whole binary.
#ifndef BANTAY_TESTS_MATCHER_FAILING_NEW_H_
#define BANTAY_TESTS_MATCHER_FAILING_NEW_H_

namespace bantay::testing {

// From now on, the calling thread's allocation number `n` (0: the next one)
// throws std::bad_alloc; later ones succeed. -1: none fails.
void FailAllocation(long n);
// Whether the allocation set to fail has been made (and failed).
bool AllocationFailed();

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_MATCHER_FAILING_NEW_H_
