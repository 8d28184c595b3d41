#include "scan_report.h"

#include "bantay/models/text.h"
#include "command_util.h"

#include <time.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string_view>

namespace bantay::client {
namespace {

namespace json = boost::json;

constexpr const char* kCsvColumns[] = {
    "path",         "kind",          "format",         "size",
    "mtime",        "md5",           "sha256",         "pdq",
    "quality",      "width",         "height",         "pdq_checked",
    "frames_hashed", "frames_matched", "verdict",      "match_count",
    "lists",        "categories",    "references",     "signals",
    "distances",    "error_code",    "error_message",  "note",
    "link_target",  "path_hex"};

// Gives back the cell as it was before CsvField neutralised it.
void Unneutralise(std::string* cell) {
  const std::string_view c = *cell;
  if (c.size() > 1 && c[0] == '\'' && NeedsApostrophe(c.substr(1))) {
    cell->erase(0, 1);
  }
}

// One value of a match in a '|'-joined cell: '\\' and '|' escaped with '\\'.
std::string JoinedValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '|' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string Seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

std::string HexOf(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// The bytes written as HexOf gives them; "" when `h` is not such hex.
std::string FromHex(std::string_view h) {
  std::string out;
  auto digit = [](char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  if (h.size() % 2 != 0) return "";
  for (size_t i = 0; i < h.size(); i += 2) {
    const int hi = digit(h[i]), lo = digit(h[i + 1]);
    if (hi < 0 || lo < 0) return "";
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// The raw bytes of a path written as "path" (and "path_hex" when it is not
// UTF-8); "" when *_hex is not hexadecimal.
std::string PathOf(const json::object& o) {
  const json::value* hex = o.if_contains("path_hex");
  if (hex == nullptr || !hex->is_string()) {
    return std::string(o.at("path").as_string());
  }
  return FromHex(hex->as_string());
}

json::object MatchObject(const ScanMatch& m) {
  json::object o;
  o["list"] = m.list;
  o["category"] = m.category;
  o["ref"] = m.reference;
  o["signal"] = m.signal;
  if (m.distance >= 0) o["distance"] = m.distance;
  if (!m.variant.empty()) o["variant"] = m.variant;
  if (m.frames > 0) {
    o["frames"] = m.frames;
    o["first_timestamp"] = json::string(Seconds(m.first_timestamp));
  }
  return o;
}

std::string JsonLine(const ScanRecord& r) {
  json::object o;
  PutBytes(&o, "path", r.path);
  o["kind"] = r.kind;
  if (!r.format.empty()) o["format"] = r.format;
  if (r.size) o["size"] = *r.size;
  if (r.mtime_ns) o["mtime"] = IsoTime(*r.mtime_ns);
  if (!r.link_target.empty()) PutBytes(&o, "link_target", r.link_target);
  if (!r.md5.empty()) o["md5"] = r.md5;
  if (!r.sha256.empty()) o["sha256"] = r.sha256;
  if (!r.pdq.empty()) o["pdq"] = r.pdq;
  if (r.quality) o["quality"] = *r.quality;
  if (r.width > 0) {
    o["width"] = r.width;
    o["height"] = r.height;
  }
  if (r.frames_hashed) o["frames_hashed"] = *r.frames_hashed;
  if (r.frames_matched) o["frames_matched"] = *r.frames_matched;
  if (r.duration) o["duration"] = json::string(Seconds(*r.duration));
  if (r.kind == "image" || r.kind == "video") o["pdq_checked"] = r.pdq_checked;
  o["verdict"] = r.Verdict();
  if (!r.matches.empty()) {
    json::array matches;
    for (const ScanMatch& m : r.matches) matches.push_back(MatchObject(m));
    o["matches"] = std::move(matches);
  }
  if (!r.note.empty()) o["note"] = r.note;
  if (r.error) {
    o["error"] = json::object{{"code", ErrorCodeName(r.error->code())},
                              {"message", r.error->message()}};
  }
  return json::serialize(o) + "\n";
}

std::string CsvLine(const ScanRecord& r) {
  auto joined = [&](auto field) {
    std::string s;
    for (size_t i = 0; i < r.matches.size(); ++i) {
      if (i > 0) s += '|';
      s += JoinedValue(field(r.matches[i]));
    }
    return s;
  };
  auto opt = [](const auto& v) {
    return v ? std::to_string(*v) : std::string();
  };
  // As in a JSON record: the file's own bytes do not make the CSV file
  // unreadable as UTF-8; path_hex has them exactly.
  TextAndHex path = BytesAsText(r.path);
  const std::vector<std::string> fields = {
      std::move(path.text),
      r.kind,
      r.format,
      opt(r.size),
      r.mtime_ns ? IsoTime(*r.mtime_ns) : "",
      r.md5,
      r.sha256,
      r.pdq,
      opt(r.quality),
      r.width > 0 ? std::to_string(r.width) : "",
      r.width > 0 ? std::to_string(r.height) : "",
      r.kind == "image" || r.kind == "video"
          ? (r.pdq_checked ? "true" : "false")
          : "",
      opt(r.frames_hashed),
      opt(r.frames_matched),
      r.Verdict(),
      std::to_string(r.matches.size()),
      joined([](const ScanMatch& m) { return m.list; }),
      joined([](const ScanMatch& m) { return m.category; }),
      joined([](const ScanMatch& m) { return m.reference; }),
      joined([](const ScanMatch& m) { return m.signal; }),
      joined([](const ScanMatch& m) {
        return m.distance >= 0 ? std::to_string(m.distance) : std::string();
      }),
      r.error ? std::string(ErrorCodeName(r.error->code())) : "",
      r.error ? r.error->message() : "",
      r.note,
      models::Utf8Lossy(r.link_target),
      std::move(path.hex)};
  std::string line;
  for (const std::string& f : fields) {
    if (!line.empty() || &f != &fields.front()) line += ',';
    line += CsvField(f);
  }
  return line + "\n";
}

Result<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(ErrorCode::kIo, "cannot read the report " + path);
  std::string data((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (in.bad()) return Error(ErrorCode::kIo, "cannot read the report " + path);
  return data;
}


// The index of a column of the CSV report.
size_t CsvColumn(std::string_view name) {
  return static_cast<size_t>(
      std::find(std::begin(kCsvColumns), std::end(kCsvColumns), name) -
      std::begin(kCsvColumns));
}

Error NotARecord(const std::string& path, int64_t line_number,
                 std::string_view why = "") {
  return Error(ErrorCode::kInvalidArgument,
               path + ":" + std::to_string(line_number) +
                   ": not a record of a bantay scan report" +
                   (why.empty() ? "" : " (" + std::string(why) + ")"));
}

Error NoHeader(const std::string& path) {
  return Error(ErrorCode::kInvalidArgument,
               "the report " + path +
                   " has no \"scan\" record (a report of an older bantay): "
                   "what made it is not known, so it cannot be resumed; "
                   "start a new report");
}

// The provenance record (a "record" member naming it) in a JSON object,
// else none.
std::optional<json::object> ProvenanceOf(const json::value& v) {
  const json::object* o = v.if_object();
  const json::value* kind = o != nullptr ? o->if_contains("record") : nullptr;
  if (kind == nullptr || !kind->is_string()) return std::nullopt;
  return *o;
}

// Takes a "resumed" or "end" record into the report; false for any other.
bool KeepProvenance(const json::object& record, ExistingReport* report) {
  const json::string& kind = record.at("record").as_string();
  if (kind == "end") report->end = record;
  return kind == "end" || kind == "resumed";
}

Status ReadJsonLines(const std::string& path, const std::string& data,
                     ExistingReport* out) {
  ExistingReport& report = *out;
  size_t pos = 0;
  int64_t line_number = 0;
  while (pos < data.size()) {
    const size_t end = data.find('\n', pos);
    if (end == std::string::npos) break;  // cut off: dropped
    ++line_number;
    boost::system::error_code ec;
    json::value v = json::parse(std::string_view(data).substr(pos, end - pos), ec);
    const json::object* o = !ec ? v.if_object() : nullptr;
    const json::value* p = o != nullptr ? o->if_contains("path") : nullptr;
    const bool entry = p != nullptr && p->is_string() && o->contains("verdict") &&
                       !o->contains("record");
    std::optional<json::object> provenance;
    if (!ec) provenance = ProvenanceOf(v);
    if (line_number == 1) {
      if (entry) return NoHeader(path);
      if (!provenance || provenance->at("record") != "scan") {
        return NotARecord(path, line_number);
      }
      report.header = std::move(*provenance);
    } else if (report.end) {
      return NotARecord(path, line_number, "after the end record");
    } else if (provenance) {
      if (!KeepProvenance(*provenance, &report)) {
        return NotARecord(path, line_number);
      }
    } else if (!entry) {
      return NotARecord(path, line_number);
    } else {
      std::string raw = PathOf(*o);
      if (raw.empty()) return NotARecord(path, line_number, "bad path_hex");
      report.paths.insert(std::move(raw));
      const json::value* kind = o->if_contains("kind");
      const json::value* matches = o->if_contains("matches");
      report.counts.Count(
          kind != nullptr && kind->is_string() ? kind->as_string() : "",
          matches != nullptr && matches->is_array() &&
              !matches->as_array().empty(),
          o->contains("error"));
    }
    pos = end + 1;
    report.complete_bytes = static_cast<int64_t>(pos);
  }
  return {};
}

// The RFC 4180 row at data[*pos], into *fields; *pos moves past it. False
// when it is cut off (no line break ends it).
bool ReadCsvRow(const std::string& data, size_t* pos,
                std::vector<std::string>* fields) {
  fields->assign(1, "");
  bool quoted = false;
  for (size_t i = *pos; i < data.size(); ++i) {
    const char c = data[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < data.size() && data[i + 1] == '"') {
          fields->back() += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        fields->back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields->emplace_back();
    } else if (c == '\n') {
      *pos = i + 1;
      return true;
    } else {
      fields->back() += c;
    }
  }
  return false;
}

// A row of one cell, '#' and the JSON of a provenance record: that record.
// kInvalidArgument for a row of one cell that starts with '#' but does not
// hold one (entry rows have every column).
Result<std::optional<json::object>> CsvProvenance(
    const std::vector<std::string>& fields) {
  if (fields.size() != 1 || !fields[0].starts_with('#')) {
    return std::optional<json::object>();
  }
  boost::system::error_code ec;
  json::value v = json::parse(std::string_view(fields[0]).substr(1), ec);
  std::optional<json::object> record;
  if (!ec) record = ProvenanceOf(v);
  if (!record) return Error(ErrorCode::kInvalidArgument, "");
  return record;
}

// The "scan" row, the column names, then RFC 4180 records: the path is
// kept, the kind, match count and error code counted.
Status ReadCsv(const std::string& path, const std::string& data,
               ExistingReport* out) {
  static const size_t kKind = CsvColumn("kind");
  static const size_t kMatchCount = CsvColumn("match_count");
  static const size_t kErrorCode = CsvColumn("error_code");
  static const size_t kPathHex = CsvColumn("path_hex");
  ExistingReport& report = *out;
  const std::string columns = CsvHeader();
  const Error another_header(ErrorCode::kInvalidArgument,
                             path + ": not a bantay scan report (another CSV header)");
  std::vector<std::string> fields;
  size_t pos = 0;
  if (!ReadCsvRow(data, &pos, &fields)) return {};  // cut off: nothing kept
  Result<std::optional<json::object>> header = CsvProvenance(fields);
  // The column names at data[at], or the first of them (path_hex came
  // last): an older bantay's.
  auto columns_at = [&](size_t at) {
    const size_t end = data.find('\n', at);
    return end != std::string::npos && end > at &&
           (columns.starts_with(data.substr(at, end - at) + ",") ||
            data.compare(at, columns.size(), columns) == 0);
  };
  if (!header.ok() || !*header || (*header)->at("record") != "scan") {
    if (columns_at(0)) return NoHeader(path);
    return another_header;
  }
  if (data.compare(pos, columns.size(), columns) != 0) {
    if (columns.compare(0, data.size() - pos, data, pos) == 0) return {};
    if (columns_at(pos)) {
      return Error(ErrorCode::kInvalidArgument,
                   "the report " + path +
                       " has the CSV columns of an older bantay (fewer): "
                       "rows of this one's cannot follow them; start a new "
                       "report");
    }
    return another_header;
  }
  report.header = std::move(**header);
  pos += columns.size();
  report.complete_bytes = static_cast<int64_t>(pos);
  // Rows, counted from the column names' (2).
  for (int64_t row = 3; pos < data.size(); ++row) {
    size_t next = pos;
    if (!ReadCsvRow(data, &next, &fields)) break;  // cut off: dropped
    Result<std::optional<json::object>> provenance = CsvProvenance(fields);
    if (report.end) return NotARecord(path, row, "after the end record");
    if (!provenance.ok() ||
        (*provenance && !KeepProvenance(**provenance, &report))) {
      return NotARecord(path, row);
    }
    if (!*provenance) {
      auto field = [&](size_t column) -> std::string_view {
        return column < fields.size() ? fields[column] : std::string_view();
      };
      report.counts.Count(
          field(kKind), !field(kMatchCount).empty() && field(kMatchCount) != "0",
          !field(kErrorCode).empty());
      if (!field(kPathHex).empty()) {
        std::string raw = FromHex(field(kPathHex));
        if (raw.empty()) return NotARecord(path, row, "bad path_hex");
        report.paths.insert(std::move(raw));
      } else {
        Unneutralise(&fields.front());
        report.paths.insert(std::move(fields.front()));
      }
    }
    pos = next;
    report.complete_bytes = static_cast<int64_t>(pos);
  }
  return {};
}

}  // namespace

std::string ScanRecord::Verdict() const {
  if (!matches.empty()) return "match";
  if (kind == "symlink" || kind == "special") return "skipped";
  if (error) return "error";
  return "no_match";
}

std::string FormatRecord(const ScanRecord& record, ReportFormat format) {
  return format == ReportFormat::kCsv ? CsvLine(record) : JsonLine(record);
}

std::string IsoTime(int64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  int64_t frac = ns % 1'000'000'000;
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<long long>(frac));
  return buf;
}

std::string FormatProvenance(const json::object& record, ReportFormat format) {
  const std::string text = json::serialize(record);
  return format == ReportFormat::kCsv ? CsvField("#" + text) + "\n" : text + "\n";
}

TextAndHex BytesAsText(std::string_view raw) {
  if (models::IsValidUtf8(raw)) return {std::string(raw), ""};
  return {models::Utf8Lossy(raw), HexOf(raw)};
}

void PutBytes(json::object* o, std::string_view key, std::string_view raw) {
  TextAndHex text = BytesAsText(raw);
  (*o)[key] = std::move(text.text);
  if (!text.hex.empty()) (*o)[std::string(key) + "_hex"] = std::move(text.hex);
}

std::string CsvHeader() {
  std::string line;
  for (const char* c : kCsvColumns) {
    if (!line.empty()) line += ',';
    line += c;
  }
  return line + "\n";
}

void RecordCounts::Count(std::string_view kind, bool has_matches, bool has_error) {
  ++entries;
  if (kind == "image") {
    ++images;
  } else if (kind == "video") {
    ++videos;
  } else if (kind == "other") {
    ++others;
  } else if (kind == "symlink" || kind == "special") {
    ++skipped;
  }
  if (has_matches) ++matched;
  if (has_error) ++errors;
}

Status ReadExistingReport(const std::string& path, ReportFormat format,
                          ExistingReport* report) {
  Result<std::string> data = ReadAll(path);
  if (!data.ok()) return data.error();
  return format == ReportFormat::kCsv ? ReadCsv(path, *data, report)
                                      : ReadJsonLines(path, *data, report);
}

}  // namespace bantay::client
