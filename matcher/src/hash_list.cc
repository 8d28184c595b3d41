#include "bantay/matcher/hash_list.h"

#include "bantay/matcher/import_formats.h"
#include "bantay/models/hash256.h"

namespace bantay::matcher {

Result<std::array<uint8_t, 32>> ParseSignalValue(SignalType type, std::string_view hex) {
  if (type == SignalType::kMd5) {
    if (hex.size() != 32) {
      return Error(ErrorCode::kInvalidArgument,
                   "an md5 is 32 hexadecimal digits, got " + std::to_string(hex.size()) +
                       " characters");
    }
    // Pad to the 64-digit form and reuse the PDQ parser's checks.
    Result<models::Hash256> h = models::Hash256::FromHex(std::string(hex) + std::string(32, '0'));
    if (!h.ok()) return h.error();
    return h->bytes();
  }
  Result<models::Hash256> h = models::Hash256::FromHex(hex);
  if (!h.ok()) {
    if (type == SignalType::kSha256 && hex.size() != 64) {
      return Error(ErrorCode::kInvalidArgument,
                   "a sha256 is 64 hexadecimal digits, got " + std::to_string(hex.size()) +
                       " characters");
    }
    return h.error();
  }
  return h->bytes();
}

ParsedHashList ParseHashList(std::istream& in, const std::string& source_name,
                             const std::string& list_name) {
  ImportOptions options;
  options.format = ImportFormat::kLocalFile;
  options.default_list = list_name;
  options.source_name = source_name;
  ParsedHashList out;
  Result<ParsedImport> parsed = ParseImport(in, options);
  if (!parsed.ok()) {
    out.errors.push_back({0, parsed.error().message()});
    return out;
  }
  out.errors = std::move(parsed->errors);
  out.entries.reserve(parsed->records.size());
  for (ImportRecord& r : parsed->records) {
    IndexEntry e;
    e.id = out.entries.size() + 1;
    e.list = std::move(r.list);
    e.type = r.type;
    e.value = r.value;
    e.category = std::move(r.category);
    e.reference = std::move(r.reference);
    out.entries.push_back(std::move(e));
  }
  return out;
}

}  // namespace bantay::matcher
