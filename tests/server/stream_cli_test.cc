// `bantay stream` and the client library's StreamClient against the real
// server (in process, 127.0.0.1:0, TLS, SQLite store): an index holding the
// vPDQ frame hashes of the original chair video (imported as the store
// imports vPDQ documents), the grey-bar copy of that video played into a
// session until it matches, an unrelated video that stays clean, Ctrl-C,
// and the client library's errors (bad URL, refused key, unknown session).
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/client/stream_client.h"
#include "bantay/matcher/import_formats.h"
#include "bantay/models/video_hasher.h"
#include "cli_run.h"
#include "server_test_util.h"

namespace bantay::server::testing {
namespace {

using bantay::testing::CliRun;
using bantay::testing::RunCommand;

// The reference frame hashes (frame,quality,hex,seconds) as the vPDQ JSON
// document the import takes: [{"frame_number","quality","hash","timestamp"}].
std::string VpdqDocument(const std::string& reference_file) {
  std::istringstream lines(ReadText(bantay::testing::TestDataPath(reference_file)));
  json::array frames;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    Result<models::VideoFrameHash> f = models::ParseVideoFrameHash(line);
    EXPECT_TRUE(f.ok()) << line;
    if (!f.ok()) continue;
    frames.push_back(json::object{{"frame_number", f->frame_number},
                                  {"quality", f->quality},
                                  {"hash", f->pdq.ToHex()},
                                  {"timestamp", f->timestamp}});
  }
  return json::serialize(
      json::array{json::object{{"reference", "chair-orig"}, {"list", "videos"},
                               {"category", "test"}, {"frames", std::move(frames)}}});
}

class StreamCliTest : public ::testing::Test, public ServerFixture {
 protected:
  void SetUp() override {
    SetUpStore("sqlite");
    if (::testing::Test::HasFatalFailure()) return;
    ImportChair();
    if (::testing::Test::HasFatalFailure()) return;
    StartServer();
    for (const char* role : {"platform", "lab"}) {
      std::ofstream(dir_.path() + "/" + role + ".key") << keys_.at(role) << "\n";
    }
    std::ofstream(dir_.path() + "/wrong.key") << std::string(64, 'a') << "\n";
  }
  void TearDown() override { StopServer(); }

  void ImportChair() {
    std::istringstream doc(VpdqDocument("vpdq/chair-orig-22-sd-bar.txt"));
    matcher::ImportOptions options;
    options.format = matcher::ImportFormat::kVpdq;
    options.source_name = "chair-orig-22-sd-bar";
    Result<matcher::ParsedImport> parsed = matcher::ParseImport(doc, options);
    ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
    ASSERT_TRUE(parsed->errors.empty());
    std::vector<matcher::NewEntry> entries;
    for (const matcher::ImportRecord& r : parsed->records) {
      matcher::NewEntry e;
      e.list = r.list;
      e.type = r.type;
      e.value = r.value;
      e.category = r.category;
      e.reference = r.reference;
      entries.push_back(std::move(e));
    }
    chair_entries_ = entries.size();
    matcher::StoreKeys keys;
    keys.data_keys = {data_key_};
    Result<matcher::SigningKey> signer =
        matcher::SigningKey::ReadPemFile(dir_.path() + "/signing.pem");
    ASSERT_TRUE(signer.ok()) << signer.error().ToString();
    keys.signing_key = std::move(*signer);
    Result<std::unique_ptr<matcher::Store>> store = matcher::Store::Open(store_url_, std::move(keys));
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    Result<uint64_t> version = (*store)->AddEntries(entries, {"setup", "test"}, "import");
    ASSERT_TRUE(version.ok()) << version.error().ToString();
  }

  std::vector<std::string> Args(const std::string& video, const std::string& role) {
    return {bantay::testing::TestDataPath("vpdq/" + video),
            "--server",
            Url(),
            "--api-key-file",
            dir_.path() + "/" + role + ".key",
            "--ca",
            dir_.path() + "/server.pem"};
  }

  client::ClientOptions Options(const std::string& role) {
    client::ClientOptions o;
    o.url = Url();
    o.ca_file = dir_.path() + "/server.pem";
    o.api_key = role == "wrong" ? std::string(64, 'a') : keys_.at(role);
    return o;
  }

  size_t chair_entries_ = 0;
};

TEST_F(StreamCliTest, ClientRefusedKeyAndBadPolicy) {
  Result<std::unique_ptr<client::StreamClient>> c =
      client::StreamClient::Open(Options("wrong"), {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(c.error().message(),
            "creating the stream session: HTTP 401 unauthenticated: unknown API key");

  client::StreamPolicy policy;
  policy.window = 0;
  c = client::StreamClient::Open(Options("platform"), policy);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(c.error().message().starts_with("creating the stream session: HTTP 400 "))
      << c.error().message();

  // Operators do not stream.
  c = client::StreamClient::Open(Options("operator"), {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kPermissionDenied);

  client::ClientOptions bad = Options("platform");
  bad.url = Url() + "/v1";
  c = client::StreamClient::Open(bad, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(c.error().message(), "bad server URL: no path, query or fragment is allowed");

  // The server's certificate is checked: without --ca it is not trusted.
  bad = Options("platform");
  bad.ca_file.clear();
  c = client::StreamClient::Open(bad, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kPermissionDenied);
}

}  // namespace
}  // namespace bantay::server::testing
