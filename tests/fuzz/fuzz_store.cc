#include "fuzz_store.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <utility>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "bantay/models/digest.h"
#include "bantay/models/hash256.h"
#include "fuzz_check.h"

namespace bantay::fuzz {
namespace {

namespace matcher = bantay::matcher;
namespace models = bantay::models;

std::span<const uint8_t> Bytes(std::string_view text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

FuzzStore* g_store = nullptr;

void RemoveDir() {
  std::error_code ec;
  if (g_store != nullptr) std::filesystem::remove_all(g_store->dir, ec);
}

}  // namespace

const FuzzStore& MakeFuzzStore(std::string_view name) {
  FUZZ_CHECK(g_store == nullptr, "one store per process");
  auto* store_env = new FuzzStore;
  std::string dir_template = "/tmp/bantay-" + std::string(name) + "-XXXXXX";
  FUZZ_CHECK(mkdtemp(dir_template.data()) != nullptr, "mkdtemp");
  store_env->dir = dir_template;
  g_store = store_env;
  std::atexit(RemoveDir);
  const std::string& dir = store_env->dir;

  const matcher::DataKey data_key = matcher::GenerateDataKey();
  FUZZ_CHECK(matcher::WriteDataKeyFile(dir + "/data.key", data_key).ok(), "data key");
  matcher::SigningKey signer = matcher::SigningKey::Generate();
  FUZZ_CHECK(matcher::WriteSecretFile(dir + "/signing.pem", signer.ToPem()).ok(),
             "signing key");
  const std::string url = "sqlite:" + dir + "/store.db";
  matcher::StoreKeys keys;
  keys.data_keys = {data_key};
  keys.signing_key = std::move(signer);
  bantay::Result<std::unique_ptr<matcher::Store>> store =
      matcher::Store::Init(url, std::move(keys), {"setup", "fuzz"});
  FUZZ_CHECK(store.ok(), "%s", store.ok() ? "" : store.error().ToString().c_str());

  std::vector<matcher::NewEntry> entries(3);
  entries[0].list = "demo";
  entries[0].type = matcher::SignalType::kPdq;
  entries[0].value = models::Hash256::FromHex(kListedPdq)->bytes();
  entries[0].category = "test";
  entries[0].reference = "case-1";
  const models::Md5Digest md5 = models::Md5(Bytes(kListedMd5Text));
  entries[1].list = "demo";
  entries[1].type = matcher::SignalType::kMd5;
  std::copy(md5.begin(), md5.end(), entries[1].value.begin());
  entries[1].category = "test";
  entries[1].reference = "case-2";
  entries[2].list = "other";
  entries[2].type = matcher::SignalType::kSha256;
  entries[2].value = models::Sha256(Bytes(kListedSha256Text));
  entries[2].category = "other-cat";
  entries[2].reference = "case-3";
  FUZZ_CHECK((*store)->AddEntries(entries, {"setup", "fuzz"}, "import").ok(), "entries");
  store_env->references = {std::string(kListedPdq), models::ToHex(md5),
                           models::ToHex(entries[2].value)};
  store->reset();

  server::ServerConfig& c = store_env->config;
  c.store_url = url;
  c.data_key_file = dir + "/data.key";
  c.signing_key_file = dir + "/signing.pem";
  for (server::Role role : {server::Role::kPlatform, server::Role::kLab,
                            server::Role::kOperator, server::Role::kAuditor}) {
    server::ApiKeyConfig key;
    key.id = std::string(server::RoleName(role));
    key.role = role;
    key.rate = 1e9;
    key.burst = 1e9;
    store_env->key_texts.push_back(server::NewApiKey());
    key.sha256 = server::ApiKeyDigest(store_env->key_texts.back());
    c.api_keys.push_back(key);
  }
  return *store_env;
}

}  // namespace bantay::fuzz
