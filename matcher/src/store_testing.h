// Interleavings for the tests of Store; nothing is set in a normal run.
#ifndef BANTAY_MATCHER_STORE_TESTING_H_
#define BANTAY_MATCHER_STORE_TESTING_H_

#include <cstdint>
#include <functional>

namespace bantay::matcher {

// Called by Store::RemoveDuplicates after its scan (in a read transaction)
// and before it takes the write lock to remove what the scan found (a test
// changes the store there, through another Store); an empty function:
// nothing. Set it while no RemoveDuplicates runs (read without a lock).
void SetAfterDedupeScanHookForTesting(std::function<void()> hook);

// How many scans Store::RemoveDuplicates has made in this process (one for
// the dry run or before the lock, one more under the lock when the store
// moved on in between).
uint64_t DedupeScansForTesting();

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_STORE_TESTING_H_
