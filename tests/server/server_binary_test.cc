// The programs themselves: bantay-server started from a configuration file
// as a child process (signals, help, new keys), and `bantay match --server`
// against it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "server_test_util.h"

namespace bantay::server::testing {
namespace {

using bantay::testing::ChildProcess;
using bantay::testing::RunProgram;

class BinaryTest : public ::testing::Test, public ServerFixture {
 protected:
  void SetUp() override { SetUpStore("sqlite"); }

  // Writes the fixture's configuration as a TOML file (on a free port).
  std::string WriteConfig() {
    port_ = bantay::testing::FreeLoopbackPort();
    const std::string path = dir_.path() + "/server.toml";
    std::ofstream out(path);
    out << "[server]\nlisten = \"127.0.0.1\"\nport = " << port_ << "\n"
        << "[tls]\ncert = \"" << config.tls_cert << "\"\nkey = \"" << config.tls_key << "\"\n"
        << "[store]\nurl = \"" << config.store_url << "\"\ndata_key_file = \""
        << config.data_key_file << "\"\n"
        << "[log]\naccess_log = \"" << config.access_log << "\"\n";
    for (const ApiKeyConfig& key : config.api_keys) {
      out << "[[api_keys]]\nid = \"" << key.id << "\"\nrole = \"" << RoleName(key.role)
          << "\"\nsha256 = \"" << models::ToHex(key.sha256) << "\"\n";
    }
    return path;
  }

  std::string KeyFile(const std::string& id) {
    const std::string path = dir_.path() + "/" + id + ".apikey";
    std::ofstream(path) << keys_.at(id) << "\n";
    return path;
  }

  // Waits (bounded, so that a broken build does not hang) for the server's
  // log to say `text`.
  bool LogSays(const std::string& log, const std::string& text) {
    for (int i = 0; i < 1000; ++i) {
      if (ReadText(log).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  int port_ = 0;
};

TEST_F(BinaryTest, HelpAndUsageErrors) {
  std::string out;
  EXPECT_EQ(RunProgram({BANTAY_SERVER, "--help"}, dir_.path() + "/help.log", &out), 0);
  EXPECT_EQ(out, std::string(ServerUsage()));
  EXPECT_EQ(RunProgram({BANTAY_SERVER, "--no-such-flag"}, dir_.path() + "/bad.log", &out), 2);
  EXPECT_NE(out.find("--no-such-flag"), std::string::npos) << out;
  EXPECT_EQ(RunProgram({BANTAY_SERVER, "--version"}, dir_.path() + "/version.log", &out), 0);
  EXPECT_EQ(out, "bantay-server 0.1.0\n");
}

TEST_F(BinaryTest, NewApiKeyPrintsTheKeyAndItsDigestOnly) {
  std::string out;
  ASSERT_EQ(RunProgram({BANTAY_SERVER, "--new-api-key", "lab"}, dir_.path() + "/key.log", &out),
            0);
  std::istringstream lines(out);
  std::string line, key;
  while (std::getline(lines, line)) {
    if (line.size() == 66 && line.starts_with("# ")) key = line.substr(2);
  }
  ASSERT_EQ(key.size(), 64u) << out;
  Result<ServerConfig> parsed = ParseConfig(out, "new-api-key");
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
  ASSERT_EQ(parsed->api_keys.size(), 1u);
  EXPECT_EQ(parsed->api_keys[0].role, Role::kLab);
  EXPECT_EQ(parsed->api_keys[0].sha256, ApiKeyDigest(key));
  EXPECT_EQ(RunProgram({BANTAY_SERVER, "--new-api-key", "root"}, dir_.path() + "/key2.log"), 2);
}

TEST_F(BinaryTest, ServesMatchesToTheCliReloadsOnHupAndStopsOnTerm) {
  const std::string config_path = WriteConfig();
  const std::string log = dir_.path() + "/server.log";
  ChildProcess server;
  ASSERT_TRUE(server.Start({BANTAY_SERVER, "--config", config_path}, log));
  ASSERT_TRUE(LogSays(log, "index loaded, ready")) << ReadText(log);
  const std::string url = "https://127.0.0.1:" + std::to_string(port_);
  const std::string ca = dir_.path() + "/server.pem";

  // A hash, then two images, through `bantay match --server`.
  std::string out;
  const std::string pdq = ReferencePdq(kBridge);
  ASSERT_EQ(RunProgram({BANTAY_CLI, "match", "--server", url, "--ca", ca, "--api-key-file",
                        KeyFile("platform"), "--pdq", pdq},
                       dir_.path() + "/cli1.log", &out),
            0)
      << out;
  EXPECT_EQ(ParseJson(out),
            json::parse(R"({"query":")" + pdq + R"(","match":true,"matches":[{"list":"demo",)"
                        R"("category":"test","ref":"case-1"}],"pdq_checked":true,)"
                        R"("index_version":)" + std::to_string(setup_version_) + "}"));

  const std::string listed = bantay::testing::TestDataPath(std::string("pdq/") + kBridge);
  const std::string other =
      bantay::testing::TestDataPath("pdq/reg-test-input/dih/bridge-3-rotate-180.jpg");
  ASSERT_EQ(RunProgram({BANTAY_CLI, "match", "--server", url, "--ca", ca, "--api-key-file",
                        KeyFile("lab"), listed, other},
                       dir_.path() + "/cli2.log", &out),
            0)
      << out;
  std::istringstream lines(out);
  std::string first, second;
  std::getline(lines, first);
  std::getline(lines, second);
  json::value a = ParseJson(first), b = ParseJson(second);
  EXPECT_EQ(a.at("path"), json::value(listed));
  EXPECT_EQ(a.at("matches").at(0).at("distance"), json::value(0));
  EXPECT_EQ(b.at("path"), json::value(other));
  EXPECT_EQ(b.at("match"), json::value(false));

  // A key the server does not know: the answer is reported, exit status 1.
  std::ofstream(dir_.path() + "/wrong.apikey") << NewApiKey() << "\n";
  ASSERT_EQ(RunProgram({BANTAY_CLI, "match", "--server", url, "--ca", ca, "--api-key-file",
                        dir_.path() + "/wrong.apikey", "--pdq", pdq},
                       dir_.path() + "/cli3.log", &out),
            1)
      << out;
  EXPECT_EQ(ParseJson(out).at("status"), json::value(401));

  ASSERT_EQ(kill(server.pid(), SIGHUP), 0);
  EXPECT_TRUE(LogSays(log, "SIGHUP: TLS certificate and key reloaded")) << ReadText(log);
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  EXPECT_EQ(server.Wait(), 0);
  EXPECT_NE(ReadText(log).find("bantay-server: stopped"), std::string::npos) << ReadText(log);
}

}  // namespace
}  // namespace bantay::server::testing
