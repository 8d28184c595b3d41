// Fuzz target: hash-list files an operator imports (local_file, CSV, vPDQ
// JSON), which come from other organisations and tools.
//
// The first byte chooses the format and the type of bare values; the rest is
// the file. Properties, besides no crash, leak or undefined behaviour:
// - ParseImport fails only with kInvalidArgument;
// - every record it accepts meets the documented checks: a list, text fields
//   of at most 256 bytes of valid UTF-8 without control characters, a
//   quality of -1 (not given) or min_quality..100, a line number, and an MD5
//   value padded with zeros;
// - accepted records and rejected ones come in file order;
// - every error message (they reach JSON answers, report lines and
//   terminals, quoting the file) is valid UTF-8 without control characters;
// - the local_file reader of `bantay match` (ParseHashList) agrees with the
//   import without a type for bare values on which lines are entries, and
//   gives ids 1, 2, ...
// - with no type given for bare values, local_file lines are read as with
//   pdq given, except that records dropped are PDQ values that do not set
//   128 bits, each now a line error.
#include <bit>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "bantay/matcher/hash_list.h"
#include "bantay/matcher/import_formats.h"
#include "fuzz_check.h"

namespace {

namespace matcher = bantay::matcher;
using matcher::SignalType;

// An oracle written apart from the importer's: strict UTF-8 (RFC 3629).
bool IsUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<uint8_t>(s[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3fu);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

// Valid UTF-8 without control characters.
bool Printable(std::string_view s) {
  if (!IsUtf8(s)) return false;
  for (char ch : s) {
    const auto c = static_cast<uint8_t>(ch);
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

// A text field as the import keeps it: printable, at most 256 bytes.
bool StoredText(std::string_view s) { return s.size() <= 256 && Printable(s); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr matcher::ImportFormat kFormats[] = {
      matcher::ImportFormat::kLocalFile, matcher::ImportFormat::kCsv,
      matcher::ImportFormat::kVpdq};
  static constexpr SignalType kTypes[] = {SignalType::kPdq, SignalType::kMd5,
                                          SignalType::kSha256};
  static const std::string kList = "fuzz-list", kCategory = "A1", kSource = "fuzz";
  matcher::ImportOptions options;
  options.format = kFormats[data[0] % 3];
  options.bare_type = kTypes[(data[0] / 3) % 3];
  if ((data[0] & 0x80) != 0) options.default_list = kList;
  options.default_category = kCategory;
  options.source_name = kSource;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::istringstream in(text);
  const bantay::Result<matcher::ParsedImport> parsed = matcher::ParseImport(in, options);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.error().code() == bantay::ErrorCode::kInvalidArgument, "%s",
               parsed.error().ToString().c_str());
    FUZZ_CHECK(Printable(parsed.error().message()), "message not printable: %s",
               parsed.error().message().c_str());
    return 0;
  }
  int last_line = 0;
  for (const matcher::ImportRecord& r : parsed->records) {
    FUZZ_CHECK(!r.list.empty() && StoredText(r.list), "list '%s'", r.list.c_str());
    FUZZ_CHECK(StoredText(r.category), "category '%s'", r.category.c_str());
    FUZZ_CHECK(!r.reference.empty() && StoredText(r.reference), "reference '%s'",
               r.reference.c_str());
    FUZZ_CHECK(r.quality == -1 || (r.quality >= options.min_quality && r.quality <= 100),
               "quality %d", r.quality);
    FUZZ_CHECK(r.line >= 1 && r.line >= last_line, "line %d after %d", r.line, last_line);
    last_line = r.line;
    if (r.type == SignalType::kMd5) {
      for (size_t i = 16; i < r.value.size(); ++i) {
        FUZZ_CHECK(r.value[i] == 0, "md5 value byte %zu is %d", i, r.value[i]);
      }
    }
  }
  int last_error = 0;
  for (const matcher::LineError& e : parsed->errors) {
    FUZZ_CHECK(e.line >= last_error && !e.message.empty(), "error line %d after %d", e.line,
               last_error);
    FUZZ_CHECK(Printable(e.message), "line %d: message not printable: %s", e.line,
               e.message.c_str());
    last_error = e.line;
  }

  if (options.format == matcher::ImportFormat::kLocalFile) {
    // The same file without a type for bare values (as ParseHashList reads
    // it).
    matcher::ImportOptions implicit = options;
    implicit.bare_type.reset();
    std::istringstream again(text);
    const bantay::Result<matcher::ParsedImport> untyped = matcher::ParseImport(again, implicit);
    FUZZ_CHECK(untyped.ok(), "no bare type: %s", untyped.error().ToString().c_str());
    if (options.bare_type == SignalType::kPdq) {
      FUZZ_CHECK(untyped->records.size() + untyped->errors.size() ==
                     parsed->records.size() + parsed->errors.size(),
                 "no bare type: %zu records and %zu errors; pdq: %zu and %zu",
                 untyped->records.size(), untyped->errors.size(), parsed->records.size(),
                 parsed->errors.size());
      size_t kept = 0;
      for (const matcher::ImportRecord& r : parsed->records) {
        if (kept < untyped->records.size() && untyped->records[kept].line == r.line) {
          const matcher::ImportRecord& same = untyped->records[kept];
          FUZZ_CHECK(same.type == r.type && same.value == r.value,
                     "line %d read otherwise without a bare type", r.line);
          ++kept;
          continue;
        }
        int bits = 0;
        for (uint8_t byte : r.value) bits += std::popcount(byte);
        FUZZ_CHECK(r.type == SignalType::kPdq && bits != 128,
                   "line %d (%d bits) dropped without a bare type", r.line, bits);
      }
      FUZZ_CHECK(kept == untyped->records.size(), "records without a bare type out of order");
    }
    if (!options.default_list.empty()) {
      std::istringstream third(text);
      const matcher::ParsedHashList list = matcher::ParseHashList(third, "fuzz", "fuzz-list");
      for (size_t i = 0; i < list.entries.size(); ++i) {
        FUZZ_CHECK(list.entries[i].id == i + 1, "id %llu at %zu",
                   static_cast<unsigned long long>(list.entries[i].id), i);
      }
      FUZZ_CHECK(list.entries.size() == untyped->records.size(),
                 "ParseHashList: %zu entries, %zu errors; ParseImport without a bare type: %zu "
                 "records",
                 list.entries.size(), list.errors.size(), untyped->records.size());
    }
  }
  return 0;
}
