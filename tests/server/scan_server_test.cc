// `bantay scan` against the real server (--server: hashes only, lab and
// platform keys) and against a signed snapshot of the same store (verified
// before use), on the SQLite store of the server fixture.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/matcher/snapshot.h"
#include "server_test_util.h"

namespace bantay::server::testing {
namespace {

struct ScanRun {
  int status = 0;
  std::string out;
  std::string err;
  std::vector<json::object> lines;
};

ScanRun Scan(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  ScanRun run;
  run.status = client::RunScanCommand(args, out, err);
  run.out = out.str();
  run.err = err.str();
  std::istringstream lines(run.out);
  // The entry records: the report's provenance records ("scan" first,
  // "end" last) have a "record" member.
  for (std::string line; std::getline(lines, line);) {
    json::object o = ParseJson(line).as_object();
    if (!o.contains("record")) run.lines.push_back(std::move(o));
  }
  return run;
}

class ScanServerTest : public ::testing::Test, public ServerFixture {
 protected:
  void SetUp() override {
    SetUpStore("sqlite");
    if (::testing::Test::HasFatalFailure()) return;
    StartServer();
    const std::string& dir = dir_.path();
    tree_ = dir + "/tree";
    dir_.Write("tree/a-bridge.jpg",
               bantay::testing::ReadTestFile(std::string("pdq/") + kBridge));
    dir_.Write("tree/b-rotated.jpg",
               bantay::testing::ReadTestFile(std::string("pdq/") + kBridgeRotated));
    const std::string md5_text = "known md5 text";
    dir_.Write("tree/c-notes.txt", {md5_text.begin(), md5_text.end()});
    for (const char* role : {"lab", "platform"}) {
      std::ofstream(dir + "/" + role + ".key") << keys_.at(role) << "\n";
    }
  }
  void TearDown() override { StopServer(); }

  std::vector<std::string> ServerArgs(const std::string& role) {
    return {tree_,   "--server", Url(), "--api-key-file",
            dir_.path() + "/" + role + ".key", "--ca", dir_.path() + "/server.pem",
            "--progress", "none"};
  }

  std::string tree_;
};

TEST_F(ScanServerTest, LabKeysGetDistancesFromTheServer) {
  std::vector<std::string> args = ServerArgs("lab");
  args.push_back("--dihedral");
  ScanRun run = Scan(args);
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 3u) << run.out;
  EXPECT_EQ(json::serialize(run.lines[0].at("matches")),
            R"([{"list":"demo","category":"test","ref":"case-1","signal":"pdq",)"
            R"("distance":0,"variant":"original"}])");
  // The rotated copy, through its exact rotate270 variant (sent as a hash).
  EXPECT_EQ(run.lines[1].at("verdict").as_string(), "match");
  const json::object& rotated = run.lines[1].at("matches").as_array()[0].as_object();
  EXPECT_EQ(rotated.at("ref").as_string(), "case-1");
  EXPECT_EQ(rotated.at("variant").as_string(), "rotate270");
  EXPECT_EQ(rotated.at("distance").as_int64(), 12);  // a re-encoded JPEG
  EXPECT_EQ(json::serialize(run.lines[2].at("matches")),
            R"([{"list":"demo","category":"test","ref":"case-2","signal":"md5",)"
            R"("distance":0}])");
}

TEST_F(ScanServerTest, PlatformKeysGetNoDistances) {
  ScanRun run = Scan(ServerArgs("platform"));
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 3u) << run.out;
  EXPECT_EQ(json::serialize(run.lines[0].at("matches")),
            R"([{"list":"demo","category":"test","ref":"case-1","signal":"pdq",)"
            R"("variant":"original"}])");
  EXPECT_EQ(run.lines[1].at("verdict").as_string(), "no_match");  // no --dihedral
  EXPECT_EQ(run.lines[2].at("verdict").as_string(), "match");
}

TEST_F(ScanServerTest, AWrongKeyOrServerStopsBeforeScanning) {
  std::ofstream(dir_.path() + "/wrong.key") << std::string(64, 'a') << "\n";
  ScanRun run = Scan(ServerArgs("wrong"));
  EXPECT_EQ(run.status, client::kExitUsage);
  EXPECT_EQ(run.err, "bantay scan: the server refused the API key (HTTP 401)\n");
  EXPECT_EQ(run.out, "");
  const std::vector<std::string> args = ServerArgs("lab");
  StopServer();
  run = Scan(args);
  EXPECT_EQ(run.status, client::kExitUsage);
  EXPECT_EQ(run.out, "");
}

TEST_F(ScanServerTest, OfflineAgainstASignedSnapshotVerifiedFirst) {
  const std::string& dir = dir_.path();
  matcher::StoreKeys keys;
  keys.data_keys.push_back(data_key_);
  Result<std::unique_ptr<matcher::Store>> store = matcher::Store::Open(store_url_, std::move(keys));
  ASSERT_TRUE(store.ok()) << store.error().ToString();
  Result<matcher::SigningKey> signer = matcher::SigningKey::ReadPemFile(dir + "/signing.pem");
  ASSERT_TRUE(signer.ok());
  const std::string snapshot = dir + "/index.snapshot";
  ASSERT_TRUE(matcher::ExportSnapshot(**store, data_key_, *signer, snapshot).ok());
  std::ofstream(dir + "/trusted.pem") << matcher::PublicKeyToPem(public_key_);
  std::ofstream(dir + "/other.pem")
      << matcher::PublicKeyToPem(matcher::SigningKey::Generate().public_key());

  ScanRun run = Scan({tree_, "--index", snapshot, "--key", dir + "/data.key", "--public-key",
                      dir + "/trusted.pem", "--progress", "none"});
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 3u);
  EXPECT_EQ(json::serialize(run.lines[0].at("matches")),
            R"([{"list":"demo","category":"test","ref":"case-1","signal":"pdq",)"
            R"("distance":0,"variant":"original"}])");
  EXPECT_EQ(run.lines[2].at("verdict").as_string(), "match");

  // Signed by another key than the trusted one: refused before any file is read.
  run = Scan({tree_, "--index", snapshot, "--key", dir + "/data.key", "--public-key",
              dir + "/other.pem", "--progress", "none"});
  EXPECT_EQ(run.status, client::kExitUsage);
  EXPECT_EQ(run.out, "");
  EXPECT_NE(run.err.find("bantay scan: "), std::string::npos);
  // Without a trusted key at all.
  run = Scan({tree_, "--index", snapshot, "--key", dir + "/data.key", "--progress", "none"});
  EXPECT_EQ(run.status, client::kExitUsage);
  EXPECT_EQ(run.out, "");
  // A damaged snapshot.
  std::string bytes = ReadText(snapshot);
  bytes[bytes.size() / 2] ^= 1;
  std::ofstream(dir + "/damaged.snapshot", std::ios::binary) << bytes;
  run = Scan({tree_, "--index", dir + "/damaged.snapshot", "--key", dir + "/data.key",
              "--public-key", dir + "/trusted.pem", "--progress", "none"});
  EXPECT_EQ(run.status, client::kExitUsage);
  EXPECT_EQ(run.out, "");
}

}  // namespace
}  // namespace bantay::server::testing
