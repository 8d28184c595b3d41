#include "store_options.h"

#include "command_util.h"

#include <cstdlib>

namespace bantay::client {
bool StoreOptions::Parse(const std::vector<std::string>& args, size_t* i, bool* missing_value) {
  const std::string& a = args[*i];
  std::string* target = a == "--store"         ? &store
                        : a == "--key"         ? &key_file
                        : a == "--signing-key" ? &signing_key_file
                        : a == "--public-key"  ? &public_key_file
                                               : nullptr;
  if (target == nullptr) return false;
  if (*i + 1 >= args.size()) {
    *missing_value = true;
    return true;
  }
  *target = args[++*i];
  return true;
}

void StoreOptions::FromEnvironment() {
  if (store.empty()) store = Env("BANTAY_STORE");
  if (key_file.empty()) key_file = Env("BANTAY_DATA_KEY_FILE");
  if (signing_key_file.empty()) signing_key_file = Env("BANTAY_SIGNING_KEY_FILE");
  if (public_key_file.empty()) public_key_file = Env("BANTAY_PUBLIC_KEY_FILE");
}

Result<matcher::DataKey> StoreOptions::DataKey() const {
  if (!key_file.empty()) return matcher::ReadDataKeyFile(key_file);
  const std::string hex = Env("BANTAY_DATA_KEY");
  if (!hex.empty()) {
    Result<matcher::DataKey> key = matcher::DataKeyFromHex(hex);
    if (!key.ok()) {
      return Error(ErrorCode::kInvalidArgument,
                   "BANTAY_DATA_KEY: " + key.error().message());
    }
    return key;
  }
  return Error(ErrorCode::kInvalidArgument,
               "no data key: give --key FILE (or set BANTAY_DATA_KEY_FILE or BANTAY_DATA_KEY)");
}

bool StoreOptions::HasDataKey() const {
  return !key_file.empty() || !Env("BANTAY_DATA_KEY").empty();
}

Result<std::optional<matcher::SigningKey>> StoreOptions::SigningKey(bool required) const {
  if (signing_key_file.empty()) {
    if (!required) return std::optional<matcher::SigningKey>();
    return Error(ErrorCode::kInvalidArgument,
                 "no signing key: give --signing-key FILE (or set BANTAY_SIGNING_KEY_FILE); "
                 "every change to the store is signed");
  }
  Result<matcher::SigningKey> key = matcher::SigningKey::ReadPemFile(signing_key_file);
  if (!key.ok()) return key.error();
  return std::optional<matcher::SigningKey>(std::move(*key));
}

Result<std::optional<matcher::PublicKey>> StoreOptions::PublicKey(bool required) const {
  if (public_key_file.empty()) {
    if (!required) return std::optional<matcher::PublicKey>();
    return Error(ErrorCode::kInvalidArgument,
                 "no trusted public key: give --public-key FILE (or set "
                 "BANTAY_PUBLIC_KEY_FILE)");
  }
  Result<matcher::PublicKey> key = matcher::ReadPublicKeyPemFile(public_key_file);
  if (!key.ok()) return key.error();
  return std::optional<matcher::PublicKey>(*key);
}

Result<matcher::StoreKeys> StoreOptions::Keys(bool signing_required) const {
  matcher::StoreKeys keys;
  Result<matcher::DataKey> data = DataKey();
  if (!data.ok()) return data.error();
  keys.data_keys.push_back(*data);
  Result<std::optional<matcher::SigningKey>> signing = SigningKey(signing_required);
  if (!signing.ok()) return signing.error();
  keys.signing_key = std::move(*signing);
  return keys;
}

bool IsStoreUrl(const std::string& s) {
  return s.starts_with("sqlite:") || s.starts_with("postgresql://") ||
         s.starts_with("postgres://");
}

}  // namespace bantay::client
