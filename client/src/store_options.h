// Options shared by the commands that open a store or a snapshot: where the
// store is and where its keys come from. Keys are read from files (or, for
// the data key, an environment variable), never from the command line,
// where other users of the machine could read them in the process list.
//
//   --store URL          sqlite:PATH or postgresql://...   (env BANTAY_STORE)
//   --key FILE           the data key file                 (env BANTAY_DATA_KEY_FILE,
//                                                           or BANTAY_DATA_KEY: 64 hex digits)
//   --signing-key FILE   the operator's Ed25519 key (PEM)  (env BANTAY_SIGNING_KEY_FILE)
//   --public-key FILE    a trusted public key (PEM)        (env BANTAY_PUBLIC_KEY_FILE)
#ifndef BANTAY_CLIENT_STORE_OPTIONS_H_
#define BANTAY_CLIENT_STORE_OPTIONS_H_

#include <optional>
#include <string>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "bantay/models/status.h"

namespace bantay::client {

struct StoreOptions {
  std::string store;
  std::string key_file;
  std::string signing_key_file;
  std::string public_key_file;

  // Consumes args[*i] (and its value) when it is one of the options above.
  // Returns false when args[*i] is not one of them; sets *missing_value
  // when it is, but has no value.
  bool Parse(const std::vector<std::string>& args, size_t* i, bool* missing_value);
  // Fills unset options from the environment.
  void FromEnvironment();

  Result<matcher::DataKey> DataKey() const;
  // Whether a data key is given at all (--key, BANTAY_DATA_KEY_FILE or
  // BANTAY_DATA_KEY).
  bool HasDataKey() const;
  Result<std::optional<matcher::SigningKey>> SigningKey(bool required) const;
  Result<std::optional<matcher::PublicKey>> PublicKey(bool required) const;
  // The data key, and the signing key when given.
  Result<matcher::StoreKeys> Keys(bool signing_required) const;
};

// Whether a --index/--store argument names a database rather than a file.
bool IsStoreUrl(const std::string& s);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_STORE_OPTIONS_H_
