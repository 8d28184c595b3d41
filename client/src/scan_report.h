// The report of `bantay scan`: one record per entry of the scanned trees, as
// a JSON line or a CSV row, between provenance records (how the report was
// made), and the reading of an existing report to resume an interrupted
// scan.
#ifndef BANTAY_CLIENT_SCAN_REPORT_H_
#define BANTAY_CLIENT_SCAN_REPORT_H_

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "bantay/models/status.h"

namespace bantay::client {

struct ScanMatch {
  std::string list;
  std::string category;
  std::string reference;
  std::string signal;   // pdq, md5, sha256
  int distance = -1;    // -1: not known (a platform key's answer)
  std::string variant;  // pdq: the dihedral variant that matched
  int64_t frames = 0;   // videos: frames that matched this entry
  double first_timestamp = -1;  // videos: the first such frame, seconds
};

struct ScanRecord {
  std::string path;
  // image, video, other (a regular file of another type), symlink,
  // special (FIFO, socket, device), unknown (could not be examined)
  std::string kind;
  std::string format;  // jpeg, png, ..., mp4, matroska, ...; "" otherwise
  std::optional<int64_t> size;
  std::optional<int64_t> mtime_ns;
  std::string link_target;  // symlink
  std::string md5;          // hex; "" when not computed
  std::string sha256;
  // Images: the PDQ hash, its quality and the picture's size.
  std::string pdq;
  std::optional<int> quality;
  int width = 0;
  int height = 0;
  // Whether a PDQ hash (or, for videos, frame hashes) was matched: false for
  // low-quality hashes, undecodable files, videos without --videos.
  bool pdq_checked = false;
  // Videos: frames hashed, and how many of them matched.
  std::optional<int64_t> frames_hashed;
  std::optional<int64_t> frames_matched;
  std::optional<double> duration;
  std::vector<ScanMatch> matches;
  std::string note;  // why an entry was skipped
  std::optional<Error> error;

  // match, no_match, skipped (not a file that is scanned), error (nothing
  // could be checked, or a check failed and nothing matched).
  std::string Verdict() const;
};

enum class ReportFormat { kJsonLines, kCsv };

// One line, with its line break.
std::string FormatRecord(const ScanRecord& record, ReportFormat format);
// The line of the column names of a CSV report (after its "scan" record).
std::string CsvHeader();

// Provenance records are JSON objects whose "record" member names them:
// "scan", the first record of every report (the tool, the roots, the index
// and the options that change results, the start time); "resumed", where a
// --resume run began to append; "end", after the last entry of a finished
// scan (its time and counts). A JSON-lines report holds each as a line; a
// CSV report as a row of one cell, '#' followed by the JSON (as a CSV
// field: quoted, its quotes doubled; the '#' keeps a spreadsheet from
// running any value in it). Entry records never have a "record" member, and
// entry rows always have every column. One line, with its line break.
std::string FormatProvenance(const boost::json::object& record,
                             ReportFormat format);

// RFC 3339, UTC, with nanoseconds (those the file system keeps), of a time
// in nanoseconds since the epoch.
std::string IsoTime(int64_t ns);

// Bytes that may not be UTF-8 (a file name) as text: the bytes when they
// are UTF-8, and no hex; else them with U+FFFD for the bad bytes, and their
// exact hex (lower case).
struct TextAndHex {
  std::string text;
  std::string hex;
};
TextAndHex BytesAsText(std::string_view raw);

// Sets o[key] to BytesAsText(raw).text, and o[key + "_hex"] to its hex when
// there is one. (A CSV row has the two as columns, "path" and "path_hex".)
void PutBytes(boost::json::object* o, std::string_view key,
              std::string_view raw);

// Records counted as a scan's summary counts them: in all, by kind (image,
// video, other; symlink and special together), with matches, with an
// error. For the records a scan writes and those a report already holds.
struct RecordCounts {
  int64_t entries = 0;
  int64_t images = 0;
  int64_t videos = 0;
  int64_t others = 0;
  int64_t skipped = 0;
  int64_t matched = 0;
  int64_t errors = 0;
  void Count(std::string_view kind, bool has_matches, bool has_error);
};

// What an existing report already holds: its "scan" record, the paths it
// has a record for, and the byte length of its complete records (a record
// cut off by a killed scan is dropped; so is a "scan" record or CSV column
// line cut off, which leaves nothing kept). Errors: kIo; kInvalidArgument
// when it is not a report of that format (a line that does not parse before
// the end, another CSV header, a record after the "end" record) or has no
// "scan" record (a report of an older bantay).
struct ExistingReport {
  std::optional<boost::json::object> header;  // none when nothing is kept
  std::unordered_set<std::string> paths;
  int64_t complete_bytes = 0;
  RecordCounts counts;  // of the complete records
  // The report's "end" record, when the scan that made it finished.
  std::optional<boost::json::object> end;
};
Status ReadExistingReport(const std::string& path, ReportFormat format,
                          ExistingReport* report);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_SCAN_REPORT_H_
