#include "bantay/matcher/import_formats.h"

#include <algorithm>
#include <bit>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <set>
#include <string_view>

#include "bantay/models/text.h"

namespace bantay::matcher {
namespace {

namespace json = boost::json;

constexpr size_t kMaxTextBytes = 256;
constexpr std::string_view kBom = "\xEF\xBB\xBF";

char LowerAscii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool EndsWithNoCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         Lower(s.substr(s.size() - suffix.size())) == suffix;
}

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Type names are case-insensitive in files ("PDQ" from spreadsheets).
Result<SignalType> ParseTypeName(std::string_view name) {
  if (Result<SignalType> t = ParseSignalType(Lower(name)); t.ok()) return t;
  return ParseSignalType(name);  // fails too, with the name as written
}

// Text fields end up in verdicts, audit lines and operators' terminals, so
// they are kept short and printable.
std::optional<std::string> TextProblem(std::string_view field,
                                       std::string_view text) {
  if (text.size() > kMaxTextBytes) {
    return std::string(field) + " is longer than " +
           std::to_string(kMaxTextBytes) + " bytes (" +
           std::to_string(text.size()) + ")";
  }
  for (char ch : text) {
    const auto c = static_cast<uint8_t>(ch);
    if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02x", c);
      return std::string(field) + " contains a control character (" + hex + ")";
    }
  }
  if (!models::IsValidUtf8(text)) return std::string(field) + " is not valid UTF-8";
  return std::nullopt;
}

// Applies the defaults and the checks every format shares. `r.reference`
// empty means "not given".
std::optional<std::string> Complete(ImportRecord& r,
                                    const ImportOptions& options) {
  if (r.quality >= 0 && r.quality < options.min_quality) {
    return "quality " + std::to_string(r.quality) + " is below the minimum " +
           std::to_string(options.min_quality);
  }
  if (r.list.empty()) r.list = options.default_list;
  if (r.category.empty()) r.category = options.default_category;
  if (r.reference.empty())
    r.reference = options.source_name + ":" + std::to_string(r.line);
  if (r.list.empty()) return "no list given (use --list)";
  if (auto p = TextProblem("list", r.list)) return p;
  if (auto p = TextProblem("category", r.category)) return p;
  if (auto p = TextProblem("reference", r.reference)) return p;
  return std::nullopt;
}

std::string QualityError(std::string_view got) {
  return "quality must be an integer from 0 to 100, got '" + models::PrintableText(got) +
         "'";
}

// --- local_file --------------------------------------------------------------

// One `[TYPE] VALUE [REFERENCE]` line: nullopt for blank and comment lines;
// the record has type, value and reference (empty when the line has none).
Result<std::optional<ImportRecord>> ParseLocalFileLine(std::string_view line,
                                                       std::optional<SignalType> bare_type) {
  std::vector<std::string_view> tokens;
  // '\r' is whitespace here, so CRLF files need no special case.
  constexpr std::string_view kSpace = " \t\r\v\f";
  for (size_t at = line.find_first_not_of(kSpace);
       at != std::string_view::npos;) {
    const size_t end = std::min(line.find_first_of(kSpace, at), line.size());
    tokens.push_back(line.substr(at, end - at));
    at = line.find_first_not_of(kSpace, end);
  }
  if (tokens.empty() || tokens[0][0] == '#')
    return std::optional<ImportRecord>();
  ImportRecord r;
  r.type = bare_type.value_or(SignalType::kPdq);
  size_t value_at = 0;
  if (Result<SignalType> named = ParseTypeName(tokens[0]); named.ok()) {
    r.type = *named;
    value_at = 1;
  }
  if (tokens.size() <= value_at)
    return Error(ErrorCode::kInvalidArgument, "no hash after the type");
  Result<std::array<uint8_t, 32>> value =
      ParseSignalValue(r.type, tokens[value_at]);
  if (!value.ok()) {
    // A first token that is not a value but is followed by more is far more
    // likely a misspelt type than a broken hash.
    if (value_at == 0 && tokens.size() > 1)
      return ParseSignalType(tokens[0]).error();
    return value.error();
  }
  if (tokens.size() > value_at + 2) {
    return Error(ErrorCode::kInvalidArgument,
                 "too many columns (expected [TYPE] VALUE [REFERENCE])");
  }
  if (value_at == 0 && !bare_type) {
    // A bare value taken as PDQ by default. PDQ sets a bit for each of its
    // 256 coefficients above their median: 128 bits, in every hash of a
    // picture with any detail; a SHA-256 digest sets 128 only one time in
    // twenty. Lists of SHA-256 digests without their type would otherwise
    // be stored as PDQ hashes and never match anything.
    int bits = 0;
    for (uint8_t byte : *value) bits += std::popcount(byte);
    if (bits != 128) {
      return Error(ErrorCode::kInvalidArgument,
                   "a bare value is read as PDQ, but this one sets " + std::to_string(bits) +
                       " of its 256 bits where a PDQ hash sets 128: name its type "
                       "(\"sha256 VALUE\"), or give the type of bare values");
    }
  }
  r.value = *value;
  if (tokens.size() > value_at + 1) r.reference = tokens[value_at + 1];
  return std::optional<ImportRecord>(std::move(r));
}

Result<ParsedImport> ParseLocalFile(std::istream& in,
                                    const ImportOptions& options) {
  ParsedImport out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::string_view text = line;
    if (number == 1 && text.starts_with(kBom)) text.remove_prefix(kBom.size());
    Result<std::optional<ImportRecord>> parsed =
        ParseLocalFileLine(text, options.bare_type);
    if (!parsed.ok()) {
      out.errors.push_back({number, parsed.error().message()});
      continue;
    }
    if (!parsed->has_value()) continue;
    ImportRecord r = std::move(**parsed);
    r.line = number;
    if (auto problem = Complete(r, options)) {
      out.errors.push_back({number, std::move(*problem)});
      continue;
    }
    out.records.push_back(std::move(r));
  }
  if (in.bad())
    return Error(ErrorCode::kIo, "reading " + options.source_name + " failed");
  return out;
}

// --- csv ---------------------------------------------------------------------

struct CsvRecord {
  std::vector<std::string> fields;
  int line = 0;       // first physical line
  std::string error;  // malformed quoting
};

// Reads the next RFC 4180 record, which spans lines while a quoted field is
// open. Blank lines between records are skipped. Returns false at the end.
bool ReadCsvRecord(std::istream& in, int* line_number, CsvRecord* rec) {
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };
  rec->fields.clear();
  rec->error.clear();
  std::string physical;
  std::string field;
  State state = State::kFieldStart;
  while (true) {
    if (!std::getline(in, physical)) {
      if (state != State::kQuoted) return false;
      rec->error = "unterminated quoted field";
      return true;
    }
    ++*line_number;
    std::string_view text = physical;
    if (*line_number == 1 && text.starts_with(kBom))
      text.remove_prefix(kBom.size());
    if (text.ends_with('\r')) text.remove_suffix(1);
    if (state == State::kQuoted) {
      field += '\n';
    } else if (TrimBlanks(text).empty()) {
      continue;
    } else {
      rec->line = *line_number;
    }
    for (size_t i = 0; i < text.size() && rec->error.empty(); ++i) {
      const char c = text[i];
      auto field_no = [&] { return std::to_string(rec->fields.size() + 1); };
      switch (state) {
        case State::kFieldStart:
        case State::kUnquoted:
          if (c == ',') {
            rec->fields.push_back(std::move(field));
            field.clear();
            state = State::kFieldStart;
          } else if (c == '"' && state == State::kFieldStart) {
            state = State::kQuoted;
          } else if (c == '"') {
            rec->error = "a quote inside unquoted field " + field_no() +
                         " (quote the field)";
          } else {
            field += c;
            state = State::kUnquoted;
          }
          break;
        case State::kQuoted:
          if (c == '"') {
            state = State::kQuoteInQuoted;
          } else {
            field += c;
          }
          break;
        case State::kQuoteInQuoted:
          if (c == '"') {
            field += '"';
            state = State::kQuoted;
          } else if (c == ',') {
            rec->fields.push_back(std::move(field));
            field.clear();
            state = State::kFieldStart;
          } else {
            rec->error =
                "characters after the closing quote of field " + field_no();
          }
          break;
      }
    }
    if (!rec->error.empty()) return true;
    if (state != State::kQuoted) {
      rec->fields.push_back(std::move(field));
      return true;
    }
  }
}

enum Column { kType, kValue, kList, kCategory, kReference, kQuality, kColumns };
constexpr std::string_view kColumnNames[kColumns] = {
    "type", "value", "list", "category", "reference", "quality"};

Result<ParsedImport> ParseCsv(std::istream& in, const ImportOptions& options) {
  ParsedImport out;
  int line_number = 0;
  CsvRecord rec;
  if (!ReadCsvRecord(in, &line_number, &rec)) {
    if (in.bad())
      return Error(ErrorCode::kIo,
                   "reading " + options.source_name + " failed");
    return out;
  }
  if (!rec.error.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "the CSV header is malformed: " + rec.error);
  }
  std::array<int, kColumns> at;
  at.fill(-1);
  for (size_t i = 0; i < rec.fields.size(); ++i) {
    const std::string name = Lower(TrimBlanks(rec.fields[i]));
    int column = 0;
    while (column < kColumns && kColumnNames[column] != name) ++column;
    if (column == kColumns) {
      return Error(ErrorCode::kInvalidArgument,
                   "unknown column '" + models::PrintableText(name) +
                       "' in the CSV header (type, value, list, category, "
                       "reference, quality)");
    }
    if (at[column] >= 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "column '" + models::PrintableText(name) + "' appears twice in the CSV header");
    }
    at[column] = static_cast<int>(i);
  }
  for (Column required : {kType, kValue}) {
    if (at[required] < 0) {
      return Error(ErrorCode::kInvalidArgument,
                   "the CSV header has no '" +
                       std::string(kColumnNames[required]) + "' column");
    }
  }
  const size_t width = rec.fields.size();
  while (ReadCsvRecord(in, &line_number, &rec)) {
    auto reject = [&](std::string message) {
      out.errors.push_back({rec.line, std::move(message)});
    };
    if (!rec.error.empty()) {
      reject(rec.error);
      continue;
    }
    if (rec.fields.size() != width) {
      reject("expected " + std::to_string(width) + " fields, got " +
             std::to_string(rec.fields.size()));
      continue;
    }
    auto field = [&](Column c) -> std::string_view {
      return at[c] < 0 ? std::string_view()
                       : std::string_view(rec.fields[at[c]]);
    };
    ImportRecord r;
    r.line = rec.line;
    const std::string_view type = TrimBlanks(field(kType));
    if (type.empty()) {
      reject("no type given");
      continue;
    }
    Result<SignalType> parsed_type = ParseTypeName(type);
    if (!parsed_type.ok()) {
      reject(parsed_type.error().message());
      continue;
    }
    r.type = *parsed_type;
    Result<std::array<uint8_t, 32>> value =
        ParseSignalValue(r.type, TrimBlanks(field(kValue)));
    if (!value.ok()) {
      reject(value.error().message());
      continue;
    }
    r.value = *value;
    if (const std::string_view q = TrimBlanks(field(kQuality)); !q.empty()) {
      int quality = -1;
      const auto [end, ec] =
          std::from_chars(q.data(), q.data() + q.size(), quality);
      if (ec != std::errc() || end != q.data() + q.size() || quality < 0 ||
          quality > 100) {
        reject(QualityError(q));
        continue;
      }
      r.quality = quality;
    }
    r.list = field(kList);
    r.category = field(kCategory);
    r.reference = field(kReference);
    if (auto problem = Complete(r, options)) {
      reject(std::move(*problem));
      continue;
    }
    out.records.push_back(std::move(r));
  }
  if (in.bad())
    return Error(ErrorCode::kIo, "reading " + options.source_name + " failed");
  return out;
}

// --- vpdq --------------------------------------------------------------------

std::optional<double> JsonNumber(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double() && std::isfinite(v.get_double())) return v.get_double();
  return std::nullopt;
}

// A JSON value as an operator would write it in a message (Boost.JSON
// serialises 100.5 as "1.005E2").
std::string Describe(const json::value& v) {
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  if (v.is_double()) {
    char text[32];
    std::snprintf(text, sizeof(text), "%g", v.get_double());
    return text;
  }
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  std::string text = json::serialize(v);
  if (text.size() > 40) {
    size_t cut = 37;
    while (cut > 0 && (static_cast<uint8_t>(text[cut]) & 0xc0) == 0x80) --cut;
    text = text.substr(0, cut) + "...";
  }
  return text;
}

// One frame into `r` (type, value, quality, reference); an error message
// otherwise.
std::optional<std::string> ParseFrame(const json::value& frame,
                                      const std::string& video_reference,
                                      ImportRecord& r) {
  const json::object* o = frame.if_object();
  if (o == nullptr) return "not a JSON object";
  const json::value* hash = o->if_contains("hash");
  if (hash == nullptr || !hash->is_string())
    return "\"hash\" is missing or not a string";
  Result<std::array<uint8_t, 32>> value =
      ParseSignalValue(SignalType::kPdq, hash->get_string());
  if (!value.ok()) return value.error().message();
  r.type = SignalType::kPdq;
  r.value = *value;
  const json::value* quality = o->if_contains("quality");
  if (quality == nullptr) return "\"quality\" is missing";
  const std::optional<double> q = JsonNumber(*quality);
  if (!q || *q != std::floor(*q) || *q < 0 || *q > 100)
    return QualityError(Describe(*quality));
  r.quality = static_cast<int>(*q);
  const json::value* timestamp = o->if_contains("timestamp");
  if (timestamp == nullptr) return "\"timestamp\" is missing";
  std::optional<double> t = JsonNumber(*timestamp);
  if (!t || *t < 0)
    return "timestamp must be a number >= 0, got " + Describe(*timestamp);
  if (*t == 0) t = 0.0;  // not "-0.000"
  // Milliseconds, as vPDQ prints timestamps.
  const int n = std::snprintf(nullptr, 0, "@%.3fs", *t);
  std::string seconds(static_cast<size_t>(n), '\0');
  std::snprintf(seconds.data(), seconds.size() + 1, "@%.3fs", *t);
  r.reference = video_reference + seconds;
  return std::nullopt;
}

struct Video {
  const json::array* frames = nullptr;
  std::string reference, list, category;
};

Result<std::string> OptionalString(const json::object& video,
                                   std::string_view key, int number) {
  const json::value* v = video.if_contains(key);
  if (v == nullptr) return std::string();
  if (!v->is_string()) {
    return Error(ErrorCode::kInvalidArgument,
                 "video " + std::to_string(number) + ": \"" + std::string(key) +
                     "\" is not a string");
  }
  return std::string(v->get_string());
}

Result<ParsedImport> ParseVpdq(std::istream& in, const ImportOptions& options) {
  std::string text(std::istreambuf_iterator<char>(in), {});
  if (in.bad())
    return Error(ErrorCode::kIo, "reading " + options.source_name + " failed");
  std::string_view body = text;
  if (body.starts_with(kBom)) body.remove_prefix(kBom.size());
  ParsedImport out;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return out;
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  if (ec)
    return Error(ErrorCode::kInvalidArgument,
                 "not valid JSON: " + ec.message());
  const json::array* top = doc.if_array();
  if (top == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "expected a JSON array of frames or of videos");
  }
  std::vector<Video> videos;
  const json::object* first = top->empty() ? nullptr : (*top)[0].if_object();
  if (!top->empty() && first == nullptr) {
    return Error(ErrorCode::kInvalidArgument,
                 "expected a JSON array of frames or of videos");
  }
  if (first != nullptr && first->contains("frames")) {
    for (size_t i = 0; i < top->size(); ++i) {
      const int number = static_cast<int>(i + 1);
      const json::object* o = (*top)[i].if_object();
      const json::value* frames =
          o == nullptr ? nullptr : o->if_contains("frames");
      if (frames == nullptr || !frames->is_array()) {
        return Error(ErrorCode::kInvalidArgument,
                     "video " + std::to_string(number) +
                         " is not an object with a \"frames\" array");
      }
      Video v;
      v.frames = &frames->get_array();
      Result<std::string> reference = OptionalString(*o, "reference", number);
      Result<std::string> list = OptionalString(*o, "list", number);
      Result<std::string> category = OptionalString(*o, "category", number);
      for (const Result<std::string>* r : {&reference, &list, &category}) {
        if (!r->ok()) return r->error();
      }
      v.reference = *reference;
      v.list = *list;
      v.category = *category;
      videos.push_back(std::move(v));
    }
  } else if (first != nullptr) {
    videos.push_back({top, "", "", ""});
  }
  int ordinal = 0;
  for (size_t i = 0; i < videos.size(); ++i) {
    const Video& video = videos[i];
    const std::string video_reference =
        video.reference.empty()
            ? options.source_name + "#" + std::to_string(i + 1)
            : video.reference;
    std::set<std::array<uint8_t, 32>> seen;
    for (size_t f = 0; f < video.frames->size(); ++f) {
      ++ordinal;
      ImportRecord r;
      r.line = ordinal;
      r.list = video.list;
      r.category = video.category;
      std::optional<std::string> problem =
          ParseFrame((*video.frames)[f], video_reference, r);
      if (!problem) problem = Complete(r, options);
      if (problem) {
        out.errors.push_back({ordinal, "video " + std::to_string(i + 1) +
                                           ", frame " + std::to_string(f + 1) +
                                           ": " + *problem});
        continue;
      }
      if (!seen.insert(r.value).second) continue;
      out.records.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace

std::string_view ImportFormatName(ImportFormat format) {
  switch (format) {
    case ImportFormat::kLocalFile:
      return "local_file";
    case ImportFormat::kCsv:
      return "csv";
    case ImportFormat::kVpdq:
      return "vpdq";
  }
  return "local_file";
}

Result<ImportFormat> ParseImportFormat(std::string_view name) {
  for (ImportFormat f :
       {ImportFormat::kLocalFile, ImportFormat::kCsv, ImportFormat::kVpdq}) {
    if (name == ImportFormatName(f)) return f;
  }
  return Error(ErrorCode::kInvalidArgument, "unknown import format '" +
                                                models::PrintableText(name) +
                                                "' (local_file, csv or vpdq)");
}

ImportFormat GuessImportFormat(std::string_view file_name) {
  if (EndsWithNoCase(file_name, ".csv")) return ImportFormat::kCsv;
  if (EndsWithNoCase(file_name, ".json")) return ImportFormat::kVpdq;
  return ImportFormat::kLocalFile;
}

Result<ParsedImport> ParseImport(std::istream& in,
                                 const ImportOptions& options) {
  switch (options.format) {
    case ImportFormat::kLocalFile:
      return ParseLocalFile(in, options);
    case ImportFormat::kCsv:
      return ParseCsv(in, options);
    case ImportFormat::kVpdq:
      return ParseVpdq(in, options);
  }
  return Error(ErrorCode::kInvalidArgument, "unknown import format");
}

}  // namespace bantay::matcher
