// Hash-list files an operator imports into the store, parsed and validated
// line by line before anything is written (so that an import is
// all-or-nothing, or applies exactly the valid lines with --skip-invalid).
//
// Formats:
//  - local_file: ThreatExchange/HMA `local_file` lines, `[TYPE] VALUE
//    [REFERENCE]` (see hash_list.h); a bare VALUE has the type given by
//    ImportOptions::bare_type. Unset, a bare value is PDQ and must set 128
//    of its 256 bits as every PDQ hash of a picture does (a SHA-256 digest
//    does only one time in twenty): a list of digests whose lines do not
//    name their type is refused line by line, not stored as PDQ hashes
//    that would never match.
//  - csv: RFC 4180 CSV with a header row naming the columns `type`, `value`,
//    and optionally `list`, `category`, `reference`, `quality` in any order
//    (names are case-insensitive; other columns are refused so that a typo is
//    not silently ignored). Quoted fields may contain commas and doubled
//    quotes.
//  - vpdq: a JSON document with the frame hashes of videos as ThreatExchange's
//    vPDQ signal serialises them (objects with "hash", "quality",
//    "timestamp", optionally "frame_number"), either a bare array of such
//    frames (one video) or an array of videos
//    {"reference": ..., "list": ..., "category": ..., "frames": [...]}. Each
//    frame becomes a PDQ record whose reference is the video's reference
//    (or "<source name>#<video number>") and "@<timestamp>s"; identical
//    hashes within one video are kept once (the first frame).
//
// Validation per record: bad hex, wrong length, unknown type, a quality
// outside 0..100 or below ImportOptions::min_quality (only where the file
// gives a quality), empty or over-long (> 256 bytes) list/category/reference
// text, control characters in text fields.
//
// Thread safety: free functions without shared state.
#ifndef BANTAY_MATCHER_IMPORT_FORMATS_H_
#define BANTAY_MATCHER_IMPORT_FORMATS_H_

#include <array>
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/hash_list.h"
#include "bantay/models/status.h"

namespace bantay::matcher {

enum class ImportFormat { kLocalFile, kCsv, kVpdq };

// "local_file", "csv", "vpdq"; and the reverse (kInvalidArgument otherwise).
std::string_view ImportFormatName(ImportFormat format);
Result<ImportFormat> ParseImportFormat(std::string_view name);
// By file name: *.csv -> csv, *.json -> vpdq, anything else -> local_file.
ImportFormat GuessImportFormat(std::string_view file_name);

struct ImportOptions {
  ImportFormat format = ImportFormat::kLocalFile;
  // Type of bare values in local_file lines; unset: PDQ, checked for the
  // bit count of a PDQ hash (see above).
  std::optional<SignalType> bare_type;
  // List and category of records whose file does not name one. A record
  // with no list at all is an error.
  std::string default_list;
  std::string default_category;
  // Records whose file gives a quality below this are rejected (PDQ's
  // published threshold by default).
  int min_quality = models::kPdqMinQuality;
  // Used in default references ("<source_name>:<line>") and messages.
  std::string source_name = "input";
};

struct ImportRecord {
  std::string list;
  SignalType type = SignalType::kPdq;
  std::array<uint8_t, 32> value{};  // as IndexEntry::value
  std::string category;
  std::string reference;
  int quality = -1;  // -1: not given
  int line = 0;      // line (local_file, csv) or frame number in file order, 1-based (vpdq)
};

struct ParsedImport {
  std::vector<ImportRecord> records;  // the valid ones, in file order
  std::vector<LineError> errors;      // every rejected record
};

// kInvalidArgument for a file that cannot be read as the format at all (no
// CSV header, a header without `type`/`value`, JSON that does not parse or
// has the wrong shape); otherwise the valid records and the rejected ones.
Result<ParsedImport> ParseImport(std::istream& in, const ImportOptions& options);

}  // namespace bantay::matcher

#endif  // BANTAY_MATCHER_IMPORT_FORMATS_H_
