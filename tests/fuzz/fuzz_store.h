// What the server fuzz targets share: a real SQLite store in a fresh
// directory (removed at exit) with a data key, a signing key and three
// listed values (a PDQ hash, an MD5 and a SHA-256, random and benign), a
// server configuration over it with one API key of each role, and the
// reading of an API error.
#ifndef BANTAY_TESTS_FUZZ_FUZZ_STORE_H_
#define BANTAY_TESTS_FUZZ_FUZZ_STORE_H_

#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/server/config.h"

namespace bantay::fuzz {

// The listed PDQ hash, and the texts whose MD5 and SHA-256 are listed.
inline constexpr std::string_view kListedPdq =
    "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
inline constexpr std::string_view kListedMd5Text = "known md5 text";
inline constexpr std::string_view kListedSha256Text = "known sha256 text";

struct FuzzStore {
  std::string dir;
  // store_url, data_key_file, signing_key_file and api_keys set (ids are
  // the role names; rates too high to matter); the rest as the defaults.
  server::ServerConfig config;
  std::vector<std::string> key_texts;   // by role: platform, lab, operator, auditor
  std::vector<std::string> references;  // hex of every listed value
};

// Creates it under /tmp/bantay-NAME-XXXXXX; the directory is removed when
// the process exits. Aborts (a fuzz finding) when it cannot be set up.
// Never destroyed: the fuzz targets' servers use it until the process ends.
const FuzzStore& MakeFuzzStore(std::string_view name);

// The `error` member of an answer in the API's Error schema
// ({"error":{"code":"...","message":"..."}}, nothing else in it), or null.
inline const boost::json::object* ErrorDetail(const boost::json::value& body) {
  const boost::json::object* object = body.if_object();
  const boost::json::value* error = object ? object->if_contains("error") : nullptr;
  const boost::json::object* detail = error ? error->if_object() : nullptr;
  if (detail == nullptr || detail->size() != 2) return nullptr;
  const boost::json::value* code = detail->if_contains("code");
  const boost::json::value* message = detail->if_contains("message");
  return code != nullptr && code->is_string() && message != nullptr && message->is_string()
             ? detail
             : nullptr;
}

}  // namespace bantay::fuzz

#endif  // BANTAY_TESTS_FUZZ_FUZZ_STORE_H_
