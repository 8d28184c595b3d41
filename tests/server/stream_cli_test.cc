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
  std::istringstream lines(
      ReadText(bantay::testing::TestDataPath(reference_file)));
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
      json::array{json::object{{"reference", "chair-orig"},
                               {"list", "videos"},
                               {"category", "test"},
                               {"frames", std::move(frames)}}});
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
      std::ofstream(dir_.path() + "/" + role + ".key")
          << keys_.at(role) << "\n";
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
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(store_url_, std::move(keys));
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    Result<uint64_t> version =
        (*store)->AddEntries(entries, {"setup", "test"}, "import");
    ASSERT_TRUE(version.ok()) << version.error().ToString();
  }

  std::vector<std::string> Args(const std::string& video,
                                const std::string& role) {
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

// The lines of a run: each a JSON object with a "type".
std::vector<std::string> Types(const CliRun& run) {
  std::vector<std::string> types;
  for (const json::object& line : run.lines)
    types.emplace_back(line.at("type").as_string());
  return types;
}

TEST_F(StreamCliTest, TheGreyBarChairReachesMatch) {
  // Default policy: 1 frame a second of stream time, 2 of the last 10
  // matching, borders trimmed, dihedral.
  CliRun run = RunCommand(client::RunStreamCommand,
                          Args("chair-22-sd-grey-bar.mp4", "platform"));
  EXPECT_EQ(run.status, client::kExitStreamMatch) << run.err;
  EXPECT_EQ(run.err, "");
  ASSERT_EQ(Types(run),
            (std::vector<std::string>{"verdict", "verdict", "final"}))
      << run.out;
  const json::object& suspect = run.lines[0];
  EXPECT_EQ(suspect.at("stream").as_string(), "suspect");
  EXPECT_EQ(suspect.at("previous").as_string(), "clean");
  EXPECT_EQ(suspect.at("first_match_t").as_int64(), 0);
  const json::object& match = run.lines[1];
  EXPECT_EQ(match.at("stream").as_string(), "match");
  EXPECT_EQ(match.at("previous").as_string(), "suspect");
  EXPECT_EQ(match.at("first_match_t").as_int64(), 0);
  // The second sampled frame (t = 1 s) is the k-th match.
  EXPECT_EQ(match.at("last_match_t").as_int64(), 1000);
  // Hashed and matched: the first two frames. With 2 frames in flight, the
  // third may have arrived already (the fourth waits for the second's answer).
  const json::object& counts = match.at("frames").as_object();
  EXPECT_EQ(counts.at("hashed").as_int64(), 2);
  EXPECT_EQ(counts.at("matched").as_int64(), 2);
  EXPECT_EQ(counts.at("dropped").as_int64(), 0);
  const int64_t received = counts.at("received").as_int64();
  EXPECT_TRUE(received == 2 || received == 3) << received;
  for (const json::value& m : match.at("matches").as_array()) {
    EXPECT_EQ(m.at("list").as_string(), "videos");
    EXPECT_TRUE(m.at("ref").as_string().starts_with("chair-orig@")) << m;
    EXPECT_FALSE(m.as_object().contains("distance"));  // a platform key
  }
  // Every sampled frame of the 22.4 s video (t = 0, 1000, ... 22000) sent
  // once, none dropped, the session ended.
  const json::object& final_state = run.lines[2];
  EXPECT_EQ(final_state.at("stream").as_string(), "match");
  EXPECT_EQ(final_state.at("first_match_t").as_int64(), 0);
  EXPECT_EQ(final_state.at("last_match_t").as_int64(), 22000);
  EXPECT_EQ(
      json::serialize(final_state.at("frames")),
      R"({"received":23,"hashed":23,"matched":23,"skipped":0,"low_quality":0,)"
      R"("not_sampled":0,"dropped":0,"errors":0})");
  std::unique_ptr<client::HttpClient> http = Client("platform");
  ASSERT_NE(http, nullptr);
  Result<client::HttpResponse> gone = http->Send(
      "GET", "/v1/streams/" + std::string(final_state.at("id").as_string()));
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->status, 404);
}

TEST_F(StreamCliTest, TheGreyBarChairFrameByFrame) {
  // Every frame event with --verbose; k = 3 of 5 and one frame each 2 s.
  std::vector<std::string> args = Args("chair-22-sd-grey-bar.mp4", "lab");
  for (const char* a :
       {"--verbose", "--every", "2", "--k", "3", "--window", "5"}) {
    args.push_back(a);
  }
  CliRun run = RunCommand(client::RunStreamCommand, args);
  EXPECT_EQ(run.status, client::kExitStreamMatch) << run.err;
  // 12 frame events in order, 2 verdict events (the server may write a
  // verdict event after the next frame's event), the final state last.
  ASSERT_FALSE(run.lines.empty());
  EXPECT_EQ(run.lines.back().at("type").as_string(), "final");
  std::vector<int64_t> t;
  std::vector<std::string> streams;
  std::vector<json::object> verdicts;
  for (const json::object& line : run.lines) {
    if (line.at("type").as_string() == "verdict") verdicts.push_back(line);
    if (line.at("type").as_string() != "frame") continue;
    t.push_back(line.at("t").as_int64());
    streams.emplace_back(line.at("stream").as_string());
    EXPECT_EQ(line.at("verdict").as_string(), "match") << line;
    EXPECT_EQ(line.at("seq").as_int64(), static_cast<int64_t>(t.size()) - 1);
    EXPECT_TRUE(line.contains("distance"));  // a lab key
  }
  EXPECT_EQ(t, (std::vector<int64_t>{0, 2000, 4000, 6000, 8000, 10000, 12000,
                                     14000, 16000, 18000, 20000, 22000}));
  std::vector<std::string> expected_streams = {"suspect", "suspect"};
  expected_streams.resize(12, "match");
  EXPECT_EQ(streams, expected_streams);
  ASSERT_EQ(verdicts.size(), 2u) << run.out;
  EXPECT_EQ(verdicts[0].at("stream").as_string(), "suspect");
  EXPECT_EQ(verdicts[1].at("stream").as_string(), "match");
  // The third sampled frame.
  EXPECT_EQ(verdicts[1].at("last_match_t").as_int64(), 4000);
  EXPECT_EQ(run.lines.size(), 15u);
}

// A truncated copy of the doorknob (52 of its 120 frames decode): the frames
// before the damage are played, and the end says the video ended early — in
// the final line and in the exit status — instead of calling it clean.
TEST_F(StreamCliTest, ATruncatedVideoIsAnErrorNotClean) {
  const std::vector<uint8_t> doorknob =
      bantay::testing::ReadTestFile("vpdq/doorknob-hd-no-bar.mp4");
  const std::string cut = dir_.path() + "/cut.mp4";
  std::ofstream(cut, std::ios::binary)
      .write(reinterpret_cast<const char*>(doorknob.data()), 240000);
  std::vector<std::string> args = Args("doorknob-hd-no-bar.mp4", "platform");
  args[0] = cut;
  CliRun run = RunCommand(client::RunStreamCommand, args);
  EXPECT_EQ(run.status, client::kExitSomeFailed) << run.err;
  EXPECT_EQ(run.err, "bantay stream: " + cut +
                         ": the video ends early: 52 of 120 frames decoded\n");
  ASSERT_EQ(Types(run), (std::vector<std::string>{"final"})) << run.out;
  const json::object& final_state = run.lines[0];
  EXPECT_EQ(final_state.at("stream").as_string(), "clean");
  EXPECT_EQ(final_state.at("frames").at("received").as_int64(), 2);
  EXPECT_EQ(json::serialize(final_state.at("error")),
            "{\"code\":\"corrupt_data\",\"message\":\"" + cut +
                ": the video ends early: 52 of 120 frames decoded\"}");
}

TEST_F(StreamCliTest, TheDoorknobStaysClean) {
  std::vector<std::string> args = Args("doorknob-hd-no-bar.mp4", "platform");
  args.push_back("--verbose");
  CliRun run = RunCommand(client::RunStreamCommand, args);
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  EXPECT_EQ(run.err, "");
  ASSERT_EQ(Types(run), (std::vector<std::string>{"frame", "frame", "frame",
                                                  "frame", "final"}))
      << run.out;
  std::vector<std::string> verdicts;
  std::vector<int64_t> quality;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(run.lines[i].at("t").as_int64(), 1000 * i);
    EXPECT_EQ(run.lines[i].at("stream").as_string(), "clean");
    verdicts.emplace_back(run.lines[i].at("verdict").as_string());
    quality.push_back(run.lines[i].at("quality").as_int64());
  }
  // The last two seconds of the video are too dark and flat to hash well.
  EXPECT_EQ(verdicts, (std::vector<std::string>{"no_match", "no_match",
                                                "low_quality", "low_quality"}));
  EXPECT_EQ(quality, (std::vector<int64_t>{100, 69, 0, 24}));
  const json::object& final_state = run.lines[4];
  EXPECT_EQ(final_state.at("stream").as_string(), "clean");
  EXPECT_TRUE(final_state.at("first_match_t").is_null());
  EXPECT_EQ(
      json::serialize(final_state.at("frames")),
      R"({"received":4,"hashed":4,"matched":0,"skipped":0,"low_quality":2,)"
      R"("not_sampled":0,"dropped":0,"errors":0})");
  EXPECT_EQ(json::serialize(final_state.at("matches")), "[]");
}

TEST_F(StreamCliTest, CtrlCEndsTheSessionCleanly) {
  // The program itself, paced to stream time: frames at 0 and 3 s; Ctrl-C
  // once the first frame is answered.
  std::vector<std::string> argv = {BANTAY_CLI, "stream"};
  for (const std::string& a : Args("doorknob-hd-no-bar.mp4", "platform"))
    argv.push_back(a);
  for (const char* a : {"--realtime", "--verbose", "--every", "3"})
    argv.push_back(a);
  bantay::testing::ChildProcess child;
  const std::string log = dir_.path() + "/stream.log";
  ASSERT_TRUE(child.Start(argv, log));
  bool answered = false;
  for (int i = 0; i < 2000 && !answered; ++i) {
    answered = ReadText(log).find("\"type\":\"frame\"") != std::string::npos;
    if (!answered) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(answered) << ReadText(log);
  kill(child.pid(), SIGINT);
  EXPECT_EQ(child.Wait(), 130);
  std::istringstream lines(ReadText(log));
  std::vector<json::object> out;
  for (std::string line; std::getline(lines, line);)
    out.push_back(ParseJson(line).as_object());
  ASSERT_EQ(out.size(), 2u) << ReadText(log);
  EXPECT_EQ(out[0].at("t").as_int64(), 0);
  EXPECT_EQ(out[1].at("type").as_string(), "final");
  EXPECT_EQ(out[1].at("frames").at("received").as_int64(), 1);
  std::unique_ptr<client::HttpClient> http = Client("platform");
  ASSERT_NE(http, nullptr);
  Result<client::HttpResponse> gone = http->Send(
      "GET", "/v1/streams/" + std::string(out[1].at("id").as_string()));
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->status, 404);
}

TEST_F(StreamCliTest, AServerThatGoesAwayIsAnError) {
  // Paced to stream time (frames at 0 and 3 s); the server stops after the
  // first frame was answered.
  std::vector<std::string> args = Args("doorknob-hd-no-bar.mp4", "platform");
  for (const char* a : {"--realtime", "--verbose", "--every", "3"}) {
    args.push_back(a);
  }
  const int port = server_->port();
  CliRun run;
  std::thread streaming(
      [&] { run = RunCommand(client::RunStreamCommand, args); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  StopServer();
  streaming.join();
  EXPECT_EQ(run.status, client::kExitSomeFailed);
  ASSERT_EQ(Types(run), std::vector<std::string>{"frame"}) << run.out;
  // Then the session cannot be ended: the server is gone.
  EXPECT_EQ(run.err,
            "bantay stream: the server closed the stream's WebSocket (code "
            "1001)\nbantay stream: cannot connect to 127.0.0.1:" +
                std::to_string(port) + ": connection refused\n");
}

// Sessions a client lost track of: listed, then ended by id, from the
// library and the command line.
TEST_F(StreamCliTest, LostSessionsAreListedAndEnded) {
  client::StreamPolicy policy;
  policy.label = "camera 7";
  Result<std::unique_ptr<client::StreamClient>> first =
      client::StreamClient::Open(Options("platform"), policy);
  ASSERT_TRUE(first.ok()) << first.error().ToString();
  policy.label = "camera 8";
  Result<std::unique_ptr<client::StreamClient>> second =
      client::StreamClient::Open(Options("platform"), policy);
  ASSERT_TRUE(second.ok()) << second.error().ToString();
  const std::string a = (*first)->session().id;
  const std::string b = (*second)->session().id;

  // The library: each state as GET /v1/streams/{id} gives it.
  Result<std::unique_ptr<client::HttpClient>> http =
      client::HttpClient::Connect(Options("platform"));
  ASSERT_TRUE(http.ok()) << http.error().ToString();
  Result<std::vector<std::string>> states = client::ListStreams(**http);
  ASSERT_TRUE(states.ok()) << states.error().ToString();
  Result<std::string> state_a = (*first)->GetState();
  Result<std::string> state_b = (*second)->GetState();
  ASSERT_TRUE(state_a.ok() && state_b.ok());
  EXPECT_EQ(*states, (std::vector<std::string>{*state_a, *state_b}));
  // Another key's list is its own.
  Result<std::unique_ptr<client::HttpClient>> lab = client::HttpClient::Connect(Options("lab"));
  ASSERT_TRUE(lab.ok());
  states = client::ListStreams(**lab);
  ASSERT_TRUE(states.ok());
  EXPECT_TRUE(states->empty());
  Result<std::string> ended = client::EndStream(**lab, a);
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(ended.error().message(),
            "ending the stream session: HTTP 404 not_found: no such stream");
  ended = client::EndStream(**http, "../" + a.substr(3));
  ASSERT_FALSE(ended.ok());
  EXPECT_EQ(ended.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ended.error().message(),
            "a stream session's id is 32 lower-case hex digits (got \"../" + a.substr(3) + "\")");
  Result<std::unique_ptr<client::HttpClient>> operator_http =
      client::HttpClient::Connect(Options("operator"));
  ASSERT_TRUE(operator_http.ok());
  states = client::ListStreams(**operator_http);
  ASSERT_FALSE(states.ok());
  EXPECT_EQ(states.error().code(), ErrorCode::kPermissionDenied);

  // The command line: --list prints the states, one a line; --end ends one
  // and prints its final state.
  std::vector<std::string> connection = Args("unused", "platform");
  connection.erase(connection.begin());  // the video
  auto with = [&](std::vector<std::string> first_args) {
    first_args.insert(first_args.end(), connection.begin(), connection.end());
    return first_args;
  };
  CliRun run = RunCommand(client::RunStreamCommand, with({"--list"}));
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  EXPECT_EQ(run.out, *state_a + "\n" + *state_b + "\n");
  EXPECT_EQ(run.err, "");
  run = RunCommand(client::RunStreamCommand, with({"--end", a}));
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 1u) << run.out;
  json::object expected = ParseJson(*state_a).as_object();
  expected["type"] = "final";
  expected["updated_at"] = run.lines[0].at("updated_at");
  EXPECT_EQ(run.lines[0], expected);
  run = RunCommand(client::RunStreamCommand, with({"--list"}));
  EXPECT_EQ(run.status, client::kExitOk) << run.err;
  ASSERT_EQ(run.lines.size(), 1u) << run.out;
  EXPECT_EQ(run.lines[0].at("id").as_string(), b);
  // Ended already: no such session.
  run = RunCommand(client::RunStreamCommand, with({"--end", a}));
  EXPECT_EQ(run.status, client::kExitSomeFailed);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "bantay stream: ending the stream session: HTTP 404 not_found: no such stream\n");
  // Usage errors, asked of no server.
  const std::pair<std::vector<std::string>, std::string> usage[] = {
      {with({"--end", "ABC"}),
       "bantay stream: --end takes a session's id, 32 lower-case hex digits (got \"ABC\")\n"},
      {with({"--list", "--end", b}), "bantay stream: give --list or --end, not both\n"},
      {with({"--list", "--every", "1"}),
       "bantay stream: --list takes no --every (only the connection options)\n"},
      {with({"--end", b, "video.mp4"}), "bantay stream: --end takes no video FILE\n"},
      {{"--list"}, "bantay stream: --list needs --server URL\n"},
  };
  for (const auto& [args, message] : usage) {
    run = RunCommand(client::RunStreamCommand, args);
    EXPECT_EQ(run.status, client::kExitUsage);
    EXPECT_EQ(run.err, message);
    EXPECT_EQ(run.out, "");
  }
  run = RunCommand(client::RunStreamCommand, with({"--list"}));
  EXPECT_EQ(run.lines.size(), 1u) << run.out;
}

TEST_F(StreamCliTest, ClientRefusedKeyAndBadPolicy) {
  Result<std::unique_ptr<client::StreamClient>> c =
      client::StreamClient::Open(Options("wrong"), {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_EQ(
      c.error().message(),
      "creating the stream session: HTTP 401 unauthenticated: unknown API key");

  client::StreamPolicy policy;
  policy.window = 0;
  c = client::StreamClient::Open(Options("platform"), policy);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(
      c.error().message().starts_with("creating the stream session: HTTP 400 "))
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
  EXPECT_EQ(c.error().message(),
            "bad server URL: no path, query or fragment is allowed");

  // The server's certificate is checked: without --ca it is not trusted.
  bad = Options("platform");
  bad.ca_file.clear();
  c = client::StreamClient::Open(bad, {});
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kPermissionDenied);
}

TEST_F(StreamCliTest, ClientSessionLifeAndUnknownSession) {
  client::StreamPolicy policy;
  policy.sample_interval_ms = 0;
  policy.label = "camera 7";
  Result<std::unique_ptr<client::StreamClient>> opened =
      client::StreamClient::Open(Options("platform"), policy);
  ASSERT_TRUE(opened.ok()) << opened.error().ToString();
  client::StreamClient& c = **opened;
  EXPECT_EQ(c.session().id.size(), 32u);
  EXPECT_EQ(c.session().ws_path, "/v1/streams/" + c.session().id + "/ws");
  EXPECT_EQ(c.session().sample_interval_ms, 0);

  // One hash frame of a chair frame (text message) and one JPEG frame of
  // a generated picture (binary message): a match, then no match.
  std::istringstream lines(
      ReadText(bantay::testing::TestDataPath("vpdq/chair-orig-22-sd-bar.txt")));
  std::string first;
  std::getline(lines, first);
  Result<models::VideoFrameHash> frame = models::ParseVideoFrameHash(first);
  ASSERT_TRUE(frame.ok());
  ASSERT_TRUE(c.SendHash(frame->pdq.ToHex(), frame->quality, 0, 41).ok());
  Result<std::optional<std::string>> event = c.ReadEvent(10'000);
  ASSERT_TRUE(event.ok()) << event.error().ToString();
  ASSERT_TRUE(event->has_value());
  json::object e = ParseJson(**event).as_object();
  EXPECT_EQ(e.at("type").as_string(), "frame");
  EXPECT_EQ(e.at("seq").as_int64(), 41);
  EXPECT_EQ(e.at("t").as_int64(), 0);
  EXPECT_EQ(e.at("verdict").as_string(), "match");
  EXPECT_EQ(e.at("stream").as_string(), "suspect");
  EXPECT_FALSE(e.contains("distance"));  // a platform key
  // The stream verdict changed: a verdict event follows.
  event = c.ReadEvent(10'000);
  ASSERT_TRUE(event.ok() && event->has_value());
  e = ParseJson(**event).as_object();
  EXPECT_EQ(e.at("type").as_string(), "verdict");
  EXPECT_EQ(e.at("stream").as_string(), "suspect");
  EXPECT_EQ(e.at("previous").as_string(), "clean");
  EXPECT_EQ(e.at("label").as_string(), "camera 7");

  client::FrameHeader header;
  header.sequence = 42;
  header.t_ms = 40;
  // A generated picture the index does not hold.
  const std::vector<uint8_t> pattern =
      bantay::testing::Encode(bantay::testing::MakePattern(640, 360), ".jpg");
  ASSERT_TRUE(c.SendFrame(header, pattern).ok());
  event = c.ReadEvent(10'000);
  ASSERT_TRUE(event.ok() && event->has_value());
  e = ParseJson(**event).as_object();
  EXPECT_EQ(e.at("seq").as_int64(), 42);
  EXPECT_EQ(e.at("t").as_int64(), 40);
  EXPECT_EQ(e.at("verdict").as_string(), "no_match");

  // A malformed message: an error event, and the connection stays.
  header.sequence = 43;
  header.t_ms = 50;
  header.kind = client::FrameKind::kRawRgb;
  header.width = 2;
  header.height = 2;
  const std::vector<uint8_t> short_pixels(5, 0);
  ASSERT_TRUE(c.SendFrame(header, short_pixels).ok());
  event = c.ReadEvent(10'000);
  ASSERT_TRUE(event.ok() && event->has_value());
  e = ParseJson(**event).as_object();
  EXPECT_EQ(e.at("type").as_string(), "error");
  EXPECT_EQ(e.at("seq").as_int64(), 43);
  // Nothing more to read.
  event = c.ReadEvent(200);
  ASSERT_TRUE(event.ok());
  EXPECT_FALSE(event->has_value());

  Result<std::string> state = c.GetState();
  ASSERT_TRUE(state.ok()) << state.error().ToString();
  json::object s = ParseJson(*state).as_object();
  EXPECT_EQ(s.at("stream").as_string(), "suspect");
  EXPECT_EQ(s.at("first_match_t").as_int64(), 0);
  // The frame is within the radius of many of the original's frames: the
  // first 32 distinct ones are listed, the nearest first seen.
  const json::array& matches = s.at("matches").as_array();
  ASSERT_EQ(matches.size(), 32u);
  EXPECT_EQ(json::serialize(matches[0]),
            R"({"list":"videos","category":"test","ref":"chair-orig@0.000s"})");

  c.Close();
  event = c.ReadEvent(1000);
  ASSERT_FALSE(event.ok());
  EXPECT_EQ(event.error().code(), ErrorCode::kUnavailable);
  Status after_close = c.SendFrame(header, short_pixels);
  ASSERT_FALSE(after_close.ok());
  EXPECT_EQ(after_close.error().code(), ErrorCode::kUnavailable);

  Result<std::string> final_state = c.Delete();
  ASSERT_TRUE(final_state.ok()) << final_state.error().ToString();
  EXPECT_EQ(ParseJson(*final_state).at("frames").at("received").as_int64(), 2);
  // The session is gone: the same id is now unknown.
  state = c.GetState();
  ASSERT_FALSE(state.ok());
  EXPECT_EQ(state.error().code(), ErrorCode::kNotFound);
  EXPECT_TRUE(state.error().message().starts_with(
      "reading the stream's state: HTTP 404 not_found"))
      << state.error().message();
  final_state = c.Delete();
  ASSERT_FALSE(final_state.ok());
  EXPECT_EQ(final_state.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace bantay::server::testing
