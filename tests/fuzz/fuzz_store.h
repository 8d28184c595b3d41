// What the server fuzz targets share: a real SQLite store in a fresh
// directory (removed at exit) with a data key, a signing key and three
// listed values (a PDQ hash, an MD5 and a SHA-256, random and benign), and
// a server configuration over it with one API key of each role.
#ifndef BANTAY_TESTS_FUZZ_FUZZ_STORE_H_
#define BANTAY_TESTS_FUZZ_FUZZ_STORE_H_

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

}  // namespace bantay::fuzz

#endif  // BANTAY_TESTS_FUZZ_FUZZ_STORE_H_
