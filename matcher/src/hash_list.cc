#include "bantay/matcher/hash_list.h"

#include <sstream>

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
  ParsedHashList out;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream fields(line);
    std::vector<std::string> tokens;
    for (std::string t; fields >> t;) tokens.push_back(t);
    if (tokens.empty() || tokens[0][0] == '#') continue;
    SignalType type = SignalType::kPdq;
    size_t value_at = 0;
    if (Result<SignalType> named = ParseSignalType(tokens[0]); named.ok()) {
      type = *named;
      value_at = 1;
    }
    if (tokens.size() <= value_at) {
      out.errors.push_back({number, "no hash after the type"});
      continue;
    }
    if (tokens.size() > value_at + 2) {
      out.errors.push_back({number, "too many columns (expected [TYPE] VALUE [REFERENCE])"});
      continue;
    }
    Result<std::array<uint8_t, 32>> value = ParseSignalValue(type, tokens[value_at]);
    if (!value.ok()) {
      out.errors.push_back({number, value.error().message()});
      continue;
    }
    IndexEntry e;
    e.id = out.entries.size() + 1;
    e.list = list_name;
    e.type = type;
    e.value = *value;
    e.reference = tokens.size() > value_at + 1 ? tokens[value_at + 1]
                                               : source_name + ":" + std::to_string(number);
    out.entries.push_back(std::move(e));
  }
  return out;
}

}  // namespace bantay::matcher
