// Failure injection for the tests of `bantay scan` (and of the walk it
// shares with `bantay hash -r`); nothing is set in a normal run.
#ifndef BANTAY_CLIENT_SCAN_TESTING_H_
#define BANTAY_CLIENT_SCAN_TESTING_H_

#include <functional>
#include <string>

namespace bantay::client {

// Called by the scan with a file's path after it has read the file and
// before it checks whether the file changed meanwhile (a test changes it
// there); an empty function: nothing. Set it before a scan starts, not
// while one runs (the workers read it without a lock).
void SetScanAfterReadHookForTesting(
    std::function<void(const std::string&)> hook);

// Called by OpenWalkEntry (bantay scan's and bantay hash -r's walks) with a
// file's path just before it opens the file the walk examined (a test puts
// something else in its place there); as above.
void SetWalkOpenHookForTesting(std::function<void(const std::string&)> hook);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_SCAN_TESTING_H_
