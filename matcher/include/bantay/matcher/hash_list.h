// Hash-list files in the ThreatExchange/HMA `local_file` style: one entry a
// line, `[TYPE] VALUE [REFERENCE]`, whitespace-separated, where TYPE is
// pdq, md5 or sha256 (pdq when absent) and REFERENCE is the operator's own
// id (when absent: "<file name>:<line>"). Blank lines and lines starting
// with '#' are skipped. (The store's local_file import, import_formats.h,
// with the list named after the file.)
#ifndef BANTAY_MATCHER_HASH_LIST_H_
#define BANTAY_MATCHER_HASH_LIST_H_

#include <istream>
#include <string>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

struct LineError {
  int line = 0;
  std::string message;
};

struct ParsedHashList {
  std::vector<IndexEntry> entries;  // ids 1, 2, ... in file order
  std::vector<LineError> errors;    // every rejected line
};

// Parses a whole list; entries get the given list name. Never fails as a
// whole: rejected lines are reported with their numbers.
ParsedHashList ParseHashList(std::istream& in, const std::string& source_name,
                             const std::string& list_name);

// Parses one hexadecimal digest of a signal type (64 hex digits for pdq and
// sha256, 32 for md5) into the 32-byte value of an IndexEntry.
Result<std::array<uint8_t, 32>> ParseSignalValue(SignalType type, std::string_view hex);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_HASH_LIST_H_
