// Integration tests of API v1: the real server on 127.0.0.1:0 with TLS and a
// real store (SQLite and PostgreSQL), called with the client library.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>
#include <tuple>

#include "bantay/matcher/store.h"
#include "bantay/server/routes.h"
#include "database.h"
#include "server_test_util.h"
#include "store_tamper.h"

namespace bantay::server::testing {
namespace {

using client::HttpResponse;

class ApiTest : public ::testing::TestWithParam<std::string>, public ServerFixture {
 protected:
  void SetUp() override {
    SetUpStore(GetParam());
    if (::testing::Test::HasFatalFailure()) return;
    StartServer();
  }

  // /readyz turns 503 for an index that stays at the setup's version.
  void ExpectUnreadyAtSetupVersion() { ExpectUnreadyAt(setup_version_); }

  // Waits (10 s at most) for /readyz to answer other than 200; its answer.
  HttpResponse WaitUntilUnready() {
    HttpResponse ready;
    for (int i = 0; i < 1000; ++i) {
      ready = Send("", "GET", "/readyz");
      if (ready.status != 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return ready;
  }

  // /readyz turns 503 for an index that stays at `version`.
  void ExpectUnreadyAt(uint64_t version) {
    HttpResponse ready = WaitUntilUnready();
    ExpectError(ready, 503, "unavailable");
    const std::string message(ParseJson(ready.body).at("error").at("message").as_string());
    EXPECT_TRUE(message.starts_with("the index has not followed the store for ")) << message;
    EXPECT_TRUE(message.ends_with(" s (it serves version " + std::to_string(version) +
                                  "; see the server's log)"))
        << message;
    const std::string metrics = Send("operator", "GET", "/metrics").body;
    EXPECT_NE(metrics.find("\nbantay_index_version " + std::to_string(version) + "\n"),
              std::string::npos);
    EXPECT_EQ(metrics.find("\nbantay_index_sync_failures_total 0\n"), std::string::npos);
  }

  // The store opened as the CLI opens it to write (the setup's signing
  // key), with these data keys (the first seals); null on failure.
  std::unique_ptr<matcher::Store> OpenWriter(std::vector<matcher::DataKey> data_keys) {
    matcher::StoreKeys keys;
    keys.data_keys = std::move(data_keys);
    Result<matcher::SigningKey> signer =
        matcher::SigningKey::ReadPemFile(dir_.path() + "/signing.pem");
    EXPECT_TRUE(signer.ok());
    if (!signer.ok()) return nullptr;
    keys.signing_key = std::move(*signer);
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(store_url_, std::move(keys));
    EXPECT_TRUE(store.ok()) << store.error().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  void TearDown() override { StopServer(); }

  HttpResponse SendBytes(const std::string& key, std::string_view target, std::string_view type,
                         const std::vector<uint8_t>& body) {
    std::unique_ptr<client::HttpClient> c = Client(key);
    if (c == nullptr) return {};
    Result<HttpResponse> r = c->Send("POST", target, type, body);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    return r.ok() ? std::move(*r) : HttpResponse{};
  }
  HttpResponse MatchPdq(const std::string& key, const std::string& hex,
                        std::string_view query = "") {
    return Send(key, "POST", "/v1/match" + std::string(query), "application/json",
                R"({"pdq":")" + hex + R"("})");
  }

  static void ExpectError(const HttpResponse& r, int status, std::string_view code) {
    EXPECT_EQ(r.status, status) << r.body;
    json::value v = ParseJson(r.body);
    ASSERT_TRUE(v.is_object()) << r.body;
    EXPECT_EQ(v.at("error").at("code").as_string(), code) << r.body;
    EXPECT_TRUE(v.at("error").at("message").is_string());
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, ApiTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& param) { return param.param; });

// base64 with the standard alphabet (written here, independently of the
// server's decoder).
std::string Base64(const std::vector<uint8_t>& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = bytes[i] << 16;
    if (i + 1 < bytes.size()) n |= bytes[i + 1] << 8;
    if (i + 2 < bytes.size()) n |= bytes[i + 2];
    b64 += kAlphabet[n >> 18 & 63];
    b64 += kAlphabet[n >> 12 & 63];
    b64 += i + 1 < bytes.size() ? kAlphabet[n >> 6 & 63] : '=';
    b64 += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return b64;
}

TEST_P(ApiTest, AListedImageMatchesWithAVerdictOnly) {
  const std::vector<uint8_t> image = bantay::testing::ReadTestFile(std::string("pdq/") + kBridge);
  HttpResponse r = SendBytes("platform", "/v1/match", "image/jpeg", image);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(ParseJson(r.body),
            json::parse(R"({"match":true,"matches":[{"list":"demo","category":"test",)"
                        R"("ref":"case-1"}],"quality":100,"pdq_checked":true,"index_version":)" +
                        std::to_string(setup_version_) + "}"));
  // Never the reference hash, the query's hash or a distance.
  EXPECT_EQ(r.body.find(ReferencePdq(kBridge)), std::string::npos);
  EXPECT_EQ(r.body.find("distance"), std::string::npos);
}

TEST_P(ApiTest, ARotatedImageMatchesOnlyWithDihedral) {
  const std::vector<uint8_t> image =
      bantay::testing::ReadTestFile(std::string("pdq/") + kBridgeRotated);
  HttpResponse plain = SendBytes("platform", "/v1/match", "image/jpeg", image);
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(ParseJson(plain.body).at("match"), json::value(false));
  HttpResponse dihedral = SendBytes("platform", "/v1/match?dihedral=true", "image/jpeg", image);
  ASSERT_EQ(dihedral.status, 200) << dihedral.body;
  EXPECT_EQ(ParseJson(dihedral.body).at("matches"),
            json::parse(R"([{"list":"demo","category":"test","ref":"case-1"}])"));
}

TEST_P(ApiTest, LabKeysSeeDistanceSignalAndId) {
  HttpResponse r = MatchPdq("lab", FlipBits(ReferencePdq(kBridge), 3));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body).at("matches"),
            json::parse(R"([{"list":"demo","category":"test","ref":"case-1","id":1,)"
                        R"("signal":"pdq","distance":3,"variant":"original"}])"));
  // The radius is the lab's to choose: 2 bits are not enough for 3.
  HttpResponse narrow = MatchPdq("lab", FlipBits(ReferencePdq(kBridge), 3), "?radius=2");
  ASSERT_EQ(narrow.status, 200) << narrow.body;
  EXPECT_EQ(ParseJson(narrow.body).at("match"), json::value(false));
  // Platform keys may not move the radius.
  ExpectError(MatchPdq("platform", ReferencePdq(kBridge), "?radius=40"), 403, "forbidden");
  ExpectError(MatchPdq("lab", ReferencePdq(kBridge), "?radius=65"), 400, "invalid_argument");
}

// {"pdq":"<hex>"} is read and answered without a JSON DOM; any other
// spelling of the same query (here an escaped first digit) takes the general
// path. Both give the same bytes, which are those of the batch route's
// answer object for the query (built as a DOM) with index_version added.
TEST_P(ApiTest, ThePlainHashQueryIsAnsweredLikeAnyOtherSpellingOfIt) {
  const std::string near = FlipBits(ReferencePdq(kBridge), 3);
  const std::string far = FlipBits(ReferencePdq(kBridge), 100);
  for (const std::string& key : {std::string("platform"), std::string("lab")}) {
    for (const std::string& hex : {near, far}) {
      for (std::string_view query : {"", "?dihedral=true"}) {
        const HttpResponse plain = MatchPdq(key, hex, query);
        ASSERT_EQ(plain.status, 200) << plain.body;
        const std::string target = "/v1/match" + std::string(query);
        const HttpResponse spaced = Send(key, "POST", target, "application/json",
                                         " {\n\"pdq\" :\t\"" + hex + "\" } ");
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", hex[0]);
        const HttpResponse general =
            Send(key, "POST", target, "application/json",
                 R"({"pdq":")" + std::string(escaped) + hex.substr(1) + R"("})");
        EXPECT_EQ(spaced.body, plain.body);
        EXPECT_EQ(general.body, plain.body) << key << " " << query;
        const HttpResponse batch =
            Send(key, "POST", "/v1/match/batch" + std::string(query), "application/json",
                 R"({"items":[{"pdq":")" + hex + R"("}]})");
        ASSERT_EQ(batch.status, 200) << batch.body;
        const json::value batch_answer = ParseJson(batch.body);
        json::object expected = batch_answer.at("results").at(0).as_object();
        expected["index_version"] = batch_answer.at("index_version");
        EXPECT_EQ(plain.body, json::serialize(expected));
        EXPECT_EQ(ParseJson(plain.body).at("match"), json::value(hex == near));
      }
    }
  }
  // Not quite the plain form: the general path's errors.
  ExpectError(MatchPdq("platform", near.substr(1)), 400, "invalid_argument");
  ExpectError(Send("platform", "POST", "/v1/match", "application/json",
                   R"({"pdq":")" + near + R"("} x)"),
              400, "invalid_argument");
  // A space inside the string after the digits (request_body_fuzz found the
  // plain path taking it for the hash).
  HttpResponse inside = Send("platform", "POST", "/v1/match", "application/json",
                             R"({"pdq":")" + near + R"( "})");
  ExpectError(inside, 400, "invalid_argument");
  EXPECT_EQ(ParseJson(inside.body).at("error").at("message"), "pdq must be 64 hex digits");
}

TEST_P(ApiTest, ExactHashesMatch) {
  const std::string md5 = models::ToHex(models::Md5(Bytes("known md5 text")));
  HttpResponse r = Send("platform", "POST", "/v1/match", "application/json",
                        R"({"md5":")" + md5 + R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body).at("matches"),
            json::parse(R"([{"list":"demo","category":"test","ref":"case-2"}])"));
  const std::string sha = models::ToHex(models::Sha256(Bytes("known sha256 text")));
  r = Send("lab", "POST", "/v1/match", "application/json", R"({"sha256":")" + sha + R"("})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body).at("matches"),
            json::parse(R"([{"list":"other","category":"other-cat","ref":"case-3","id":3,)"
                        R"("signal":"sha256","distance":0,"variant":"original"}])"));
}

// Bytes that cannot be hashed as a picture are still looked up by MD5 and
// SHA-256: a listed file that is damaged, or in a format Bantay does not
// decode, is a match (saying why there is no PDQ hash), not an error.
TEST_P(ApiTest, AListedFileThatIsNotAPictureStillMatchesByItsExactHashes) {
  const std::string version = std::to_string(setup_version_);
  HttpResponse r = Send("platform", "POST", "/v1/match", "image/gif", "known md5 text");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body),
            json::parse(R"({"match":true,"matches":[{"list":"demo","category":"test",)"
                        R"("ref":"case-2"}],"pdq_checked":false,"image_error":)"
                        R"({"code":"unsupported_format","message":)"
                        R"("not a JPEG, PNG, WebP, BMP or TIFF image"},"index_version":)" +
                        version + "}"));
  r = Send("lab", "POST", "/v1/match", "image/png", "known sha256 text");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body),
            json::parse(R"({"match":true,"matches":[{"list":"other","category":"other-cat",)"
                        R"("ref":"case-3","id":3,"signal":"sha256","distance":0,)"
                        R"("variant":"original"}],"pdq_checked":false,"image_error":)"
                        R"({"code":"unsupported_format","message":)"
                        R"("not a JPEG, PNG, WebP, BMP or TIFF image"},"index_version":)" +
                        version + "}"));
  // Unlisted: the error, as before.
  ExpectError(Send("platform", "POST", "/v1/match", "image/gif", "unlisted text"), 415,
              "unsupported_format");
  // An animated WebP (OpenCV 4.6 decodes none).
  const auto still = bantay::testing::Encode(bantay::testing::MakePattern(64, 48), ".webp");
  const auto animated = bantay::testing::ExtendedWebp(still, 64, 48, 0x02, 0);
  r = Send("platform", "POST", "/v1/match", "image/webp",
           std::string(animated.begin(), animated.end()));
  ExpectError(r, 415, "unsupported_format");
  EXPECT_EQ(ParseJson(r.body).at("error").at("message").as_string(),
            "animated webp is not supported");

  // A damaged JPEG whose SHA-256 is listed, alone and as a batch item.
  std::vector<uint8_t> jpeg = bantay::testing::ReadTestFile(std::string("pdq/") + kBridge);
  jpeg.resize(jpeg.size() / 2);
  const std::string damaged(jpeg.begin(), jpeg.end());
  ExpectError(Send("platform", "POST", "/v1/match", "image/jpeg", damaged), 422, "corrupt_data");
  HttpResponse added =
      Send("operator", "POST", "/v1/lists/demo/entries", "application/json",
           R"({"entries":[{"type":"sha256","value":")" + models::ToHex(models::Sha256(jpeg)) +
               R"(","category":"exact","reference":"case-damaged"}]})");
  ASSERT_EQ(added.status, 201) << added.body;
  const std::string now = std::to_string(ParseJson(added.body).at("version").as_int64());
  const std::string answer =
      R"({"match":true,"matches":[{"list":"demo","category":"exact","ref":"case-damaged"}],)"
      R"("pdq_checked":false,"image_error":{"code":"corrupt_data",)"
      R"x("message":"jpeg is truncated (no end-of-image marker)"})x";
  r = Send("platform", "POST", "/v1/match", "image/jpeg", damaged);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body), json::parse(answer + R"(,"index_version":)" + now + "}"));
  r = Send("platform", "POST", "/v1/match/batch", "application/json",
           R"({"items":[{"image":")" + Base64(jpeg) + R"("}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body),
            json::parse(R"({"results":[)" + answer + R"(}],"index_version":)" + now + "}"));
}

// Two entries of one list with the same category and reference (the
// value listed again, 3 bits off: the same value is not added twice) are
// one item in a platform answer, two (with their ids) in a lab's.
TEST_P(ApiTest, APlatformAnswerNamesAnEntryOnce) {
  const std::string entry = R"({"entries":[{"type":"pdq","value":")" +
                            FlipBits(ReferencePdq(kBridge), 3) +
                            R"(","category":"test","reference":"case-1"}]})";
  HttpResponse added = Send("operator", "POST", "/v1/lists/demo/entries", "application/json", entry);
  ASSERT_EQ(added.status, 201) << added.body;
  const std::string version = std::to_string(ParseJson(added.body).at("version").as_int64());
  HttpResponse platform = MatchPdq("platform", ReferencePdq(kBridge));
  ASSERT_EQ(platform.status, 200) << platform.body;
  EXPECT_EQ(ParseJson(platform.body),
            json::parse(R"({"match":true,"matches":[{"list":"demo","category":"test",)"
                        R"("ref":"case-1"}],"pdq_checked":true,"index_version":)" +
                        version + "}"));
  HttpResponse lab = MatchPdq("lab", ReferencePdq(kBridge));
  ASSERT_EQ(lab.status, 200) << lab.body;
  EXPECT_EQ(ParseJson(lab.body).at("matches").as_array().size(), 2u) << lab.body;
}

TEST_P(ApiTest, LowQualityHashesAreNotMatched) {
  HttpResponse r = Send("platform", "POST", "/v1/match", "application/json",
                        R"({"pdq":")" + ReferencePdq(kBridge) + R"(","quality":49})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseJson(r.body), json::parse(R"({"match":false,"matches":[],"quality":49,)"
                                           R"("pdq_checked":false,"index_version":)" +
                                           std::to_string(setup_version_) + "}"));
}

TEST_P(ApiTest, BatchesAnswerEachItemInOrder) {
  const std::vector<uint8_t> image = bantay::testing::ReadTestFile(std::string("pdq/") + kBridge);
  const std::string b64 = Base64(image);
  const std::string body = R"({"items":[{"pdq":")" + ReferencePdq(kBridge) +
                           R"("},{"pdq":"zz"},{"image":")" + b64 + R"("},)" +
                           R"({"md5":")" + std::string(32, '0') + R"("}]})";
  HttpResponse r = Send("platform", "POST", "/v1/match/batch", "application/json", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string hit = R"({"match":true,"matches":[{"list":"demo","category":"test",)"
                          R"("ref":"case-1"}],)";
  EXPECT_EQ(ParseJson(r.body),
            json::parse(R"({"results":[)" + hit + R"("pdq_checked":true},)" +
                        R"({"status":400,"error":{"code":"invalid_argument",)"
                        R"("message":"pdq must be 64 hex digits"}},)" +
                        hit + R"("quality":100,"pdq_checked":true},)" +
                        R"({"match":false,"matches":[]}],"index_version":)" +
                        std::to_string(setup_version_) + "}"));

  config.max_batch_items = 3;
  StopServer();
  AddKey("small-burst", Role::kPlatform, 1000.0, 2.0);
  StartServer();
  ExpectError(Send("platform", "POST", "/v1/match/batch", "application/json", body), 413,
              "too_large");
  // A batch larger than the key's burst could never be paid for: 413 with
  // the key's limit, not a 429 that no retry would cure.
  HttpResponse over_burst =
      Send("small-burst", "POST", "/v1/match/batch", "application/json",
           R"({"items":[{"md5":")" + std::string(32, '0') + R"("},{"md5":")" +
               std::string(32, '1') + R"("},{"md5":")" + std::string(32, '2') + R"("}]})");
  ExpectError(over_burst, 413, "too_large");
  EXPECT_EQ(ParseJson(over_burst.body).at("error").at("message"),
            "this key may send at most 2 items in a batch (its rate limit's burst)");
}

TEST_P(ApiTest, EveryBadInputGetsItsStatus) {
  const std::string pdq = ReferencePdq(kBridge);
  HttpResponse anonymous =
      Send("", "POST", "/v1/match", "application/json", R"({"pdq":")" + pdq + R"("})");
  ExpectError(anonymous, 401, "unauthenticated");
  EXPECT_EQ(anonymous.Header("WWW-Authenticate"), "Bearer realm=\"bantay\"");
  {
    client::ClientOptions options;
    options.url = Url();
    options.ca_file = dir_.path() + "/server.pem";
    options.api_key = NewApiKey();  // well formed, unknown
    auto c = client::HttpClient::Connect(options);
    ASSERT_TRUE(c.ok());
    Result<HttpResponse> r = (*c)->Send("POST", "/v1/match", "application/json", "{}");
    ASSERT_TRUE(r.ok());
    ExpectError(*r, 401, "unauthenticated");
  }
  ExpectError(Send("platform", "GET", "/v1/lists"), 403, "forbidden");
  ExpectError(Send("operator", "POST", "/v1/match", "application/json", "{}"), 403, "forbidden");
  ExpectError(Send("platform", "GET", "/v1/nothing"), 404, "not_found");
  HttpResponse wrong_method = Send("platform", "GET", "/v1/match");
  ExpectError(wrong_method, 405, "method_not_allowed");
  EXPECT_EQ(wrong_method.Header("Allow"), "POST");
  ExpectError(Send("platform", "POST", "/v1/match", "application/json", "{\"pdq\":"), 400,
              "invalid_argument");
  // A member named twice (Boost.JSON would keep the last; a filter in front
  // of the server might read the first), plainly or behind an escape, in a
  // match or in a batch's item.
  const std::string other = ReferencePdq(kBridgeRotated);
  for (const std::string& body :
       {R"({"pdq":")" + pdq + R"(","pdq":")" + other + R"("})",
        R"({"pdq":")" + pdq + R"(","p\u0064q":")" + other + R"("})"}) {
    HttpResponse twice = Send("platform", "POST", "/v1/match", "application/json", body);
    ExpectError(twice, 400, "invalid_argument");
    EXPECT_EQ(ParseJson(twice.body).at("error").at("message"),
              "the body names the member \"pdq\" twice");
  }
  HttpResponse batch_twice =
      Send("platform", "POST", "/v1/match/batch", "application/json",
           R"({"items":[{"pdq":")" + pdq + R"(","quality":90,"quality":10}]})");
  ExpectError(batch_twice, 400, "invalid_argument");
  EXPECT_EQ(ParseJson(batch_twice.body).at("error").at("message"),
            "the body names the member \"quality\" twice");
  HttpResponse bad_hex =
      Send("platform", "POST", "/v1/match", "application/json", R"({"pdq":"12xy"})");
  ExpectError(bad_hex, 400, "invalid_argument");
  EXPECT_EQ(ParseJson(bad_hex.body).at("error").at("message"), "pdq must be 64 hex digits");
  ExpectError(Send("platform", "POST", "/v1/match", "application/json",
                   R"({"pdq":")" + pdq + R"(","md5":")" + std::string(32, '0') + R"("})"),
              400, "invalid_argument");
  ExpectError(Send("platform", "POST", "/v1/match", "text/plain", "hello"), 415,
              "unsupported_format");
  ExpectError(Send("platform", "POST", "/v1/match", "image/jpeg", "not an image at all"), 415,
              "unsupported_format");

  // A JPEG cut in half: a known format that does not decode.
  std::vector<uint8_t> jpeg = bantay::testing::ReadTestFile(std::string("pdq/") + kBridge);
  jpeg.resize(jpeg.size() / 2);
  ExpectError(SendBytes("platform", "/v1/match", "image/jpeg", jpeg), 422, "corrupt_data");

  // A PNG header declaring 100000 x 100000 pixels: refused before decoding.
  std::vector<uint8_t> bomb = bantay::testing::FromHex(
      "89504e470d0a1a0a0000000d49484452000186a0000186a00806000000");
  bomb.resize(bomb.size() + 4, 0);  // the (unchecked) header CRC
  ExpectError(SendBytes("platform", "/v1/match", "image/png", bomb), 413, "too_large");

  // A JPEG of 501 scans (a decoding-time bomb): counted, not decoded.
  HttpResponse scans =
      SendBytes("platform", "/v1/match", "image/jpeg", bantay::testing::JpegWithScans(501));
  ExpectError(scans, 413, "too_large");
  EXPECT_EQ(ParseJson(scans.body).at("error").at("message"),
            "jpeg has 501 scans, over the limit of 500");

  // A TIFF giving its width twice: libtiff would decode another size than
  // the first one read.
  std::vector<bantay::testing::TiffField> fields = {{256, 3, 1, 4}, {256, 3, 1, 2}, {257, 3, 1, 3}};
  for (const auto& f : bantay::testing::GreyTiffFields(3, 12)) fields.push_back(f);
  HttpResponse twice = SendBytes("platform", "/v1/match", "image/tiff",
                                 bantay::testing::MakeTiff(fields, std::vector<uint8_t>(12, 9)));
  ExpectError(twice, 422, "corrupt_data");
  EXPECT_EQ(ParseJson(twice.body).at("error").at("message"), "tiff gives field 256 twice");

  // A body over max_body_bytes (4 MiB here), refused from its Content-Length.
  std::vector<uint8_t> big(config.max_body_bytes + 1, 0xff);
  ExpectError(SendBytes("platform", "/v1/match", "image/jpeg", big), 413, "too_large");

  // Paging parameters.
  ExpectError(Send("auditor", "GET", "/v1/audit?limit=0"), 400, "invalid_argument");
  ExpectError(Send("auditor", "GET", "/v1/audit?after=x"), 400, "invalid_argument");
  ExpectError(Send("auditor", "GET", "/v1/lists/demo/entries?limit=1001"), 400,
              "invalid_argument");
  HttpResponse unknown = Send("auditor", "GET", "/v1/lists/demo/entries?page=2");
  ExpectError(unknown, 400, "invalid_argument");
  EXPECT_EQ(ParseJson(unknown.body).at("error").at("message"), "unknown query parameter \"page\"");
  // A parameter that decodes to bytes that are not UTF-8 is quoted as
  // printable text: the answer stays JSON (api_fuzz found an answer that
  // was not).
  HttpResponse not_utf8 = Send("auditor", "GET", "/v1/lists/demo/entries?p%FF%1Bge=2");
  ExpectError(not_utf8, 400, "invalid_argument");
  EXPECT_EQ(ParseJson(not_utf8.body).at("error").at("message"),
            "unknown query parameter \"p\\xff\\x1bge\"");

  // Headers over max_header_bytes.
  ExpectError(Send("platform", "GET", "/v1/index?" + std::string(20'000, 'a')), 431,
              "header_too_large");
}

TEST_P(ApiTest, EachKeyHasItsOwnRateLimit) {
  StopServer();
  AddKey("slow", Role::kPlatform, 0.01, 2.0);
  StartServer();
  const std::string pdq = ReferencePdq(kBridge);
  EXPECT_EQ(MatchPdq("slow", pdq).status, 200);
  EXPECT_EQ(MatchPdq("slow", pdq).status, 200);
  HttpResponse limited = MatchPdq("slow", pdq);
  ExpectError(limited, 429, "rate_limited");
  EXPECT_EQ(limited.Header("Retry-After"), "100");  // one token at 0.01/s
  // Other keys are not affected.
  EXPECT_EQ(MatchPdq("platform", pdq).status, 200);
}

// A batch refused for its rate limit costs nothing (its first token, taken
// when it came in, is given back), and Retry-After is the wait for all of
// its items: a client that obeys it is not refused again.
TEST_P(ApiTest, ARefusedBatchCostsNoToken) {
  StopServer();
  AddKey("slow", Role::kPlatform, 0.01, 3.0);
  StartServer();
  const std::string pdq = ReferencePdq(kBridge);
  ASSERT_EQ(MatchPdq("slow", pdq).status, 200);  // 2 tokens left
  const std::string item = R"({"pdq":")" + pdq + R"("})";
  HttpResponse limited = Send("slow", "POST", "/v1/match/batch", "application/json",
                              R"({"items":[)" + item + "," + item + "," + item + "]}");
  ExpectError(limited, 429, "rate_limited");
  EXPECT_EQ(limited.Header("Retry-After"), "100");  // the third token, at 0.01/s
  // The two tokens are still there.
  EXPECT_EQ(MatchPdq("slow", pdq).status, 200);
  EXPECT_EQ(MatchPdq("slow", pdq).status, 200);
  ExpectError(MatchPdq("slow", pdq), 429, "rate_limited");
}

TEST_P(ApiTest, HealthReadinessOpenApiAndMetrics) {
  HttpResponse health = Send("", "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  HttpResponse ready = Send("", "GET", "/readyz");
  ASSERT_EQ(ready.status, 200);
  EXPECT_EQ(ParseJson(ready.body),
            json::parse(R"({"status":"ready","index_version":)" +
                        std::to_string(setup_version_) + "}"));
  HttpResponse openapi = Send("", "GET", "/openapi.json");
  EXPECT_EQ(openapi.status, 200);
  EXPECT_EQ(openapi.body, std::string(OpenApiDocument()));

  for (int i = 0; i < 3; ++i) MatchPdq("platform", ReferencePdq(kBridge));
  MatchPdq("platform", FlipBits(ReferencePdq(kBridge), 100));
  ExpectError(Send("platform", "GET", "/metrics"), 403, "forbidden");
  HttpResponse metrics = Send("auditor", "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.Header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  for (const std::string& line : std::vector<std::string>{
           R"(bantay_requests_total{route="/v1/match",status="200"} 4)",
           R"(bantay_requests_total{route="/metrics",status="403"} 1)",
           R"(bantay_matches_total{list="demo"} 3)",
           R"(bantay_request_duration_seconds_count{route="/v1/match"} 4)",
           "bantay_index_version " + std::to_string(setup_version_),
           R"(bantay_index_entries{type="pdq"} 1)",
           R"(bantay_index_entries{type="md5"} 1)",
           R"(bantay_index_entries{type="sha256"} 1)",
       }) {
    EXPECT_NE(metrics.body.find("\n" + line + "\n"), std::string::npos) << line;
  }
}

TEST_P(ApiTest, TheIndexRouteGivesAVerifiableSignedRoot) {
  HttpResponse r = Send("platform", "GET", "/v1/index");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = ParseJson(r.body);
  EXPECT_EQ(v.at("version"), json::value(setup_version_));
  EXPECT_EQ(v.at("entries"), json::parse(R"({"pdq":1,"md5":1,"sha256":1})"));
  EXPECT_EQ(v.at("lists"),
            json::parse(R"([{"name":"demo","enabled":true,"active":2,"disabled":0},)"
                        R"({"name":"other","enabled":true,"active":1,"disabled":0}])"));
  const json::object& root = v.at("root").as_object();
  EXPECT_EQ(root.at("version"), json::value(setup_version_));
  EXPECT_EQ(root.at("active_count"), json::value(3));
  EXPECT_EQ(root.at("public_key").as_string(), matcher::PublicKeyToPem(public_key_));

  matcher::VersionRecord record;
  record.version = root.at("version").to_number<uint64_t>();
  record.created_at = root.at("created_at").as_int64();
  record.active_count = root.at("active_count").to_number<uint64_t>();
  auto copy_hex = [](const json::value& hex, auto& out) {
    std::vector<uint8_t> bytes = bantay::testing::FromHex(hex.as_string());
    ASSERT_EQ(bytes.size(), out.size());
    std::copy(bytes.begin(), bytes.end(), out.begin());
  };
  copy_hex(root.at("root"), record.root);
  copy_hex(root.at("audit_digest"), record.audit_digest);
  copy_hex(root.at("signature"), record.signature);
  // The whole state is signed with the root (store schema 2).
  ASSERT_TRUE(root.contains("state_digest"));
  record.state_digest.emplace();
  copy_hex(root.at("state_digest"), *record.state_digest);
  record.public_key = public_key_;
  Result<std::unique_ptr<matcher::Store>> store =
      matcher::Store::Open(store_url_, matcher::StoreKeys{{data_key_}, std::nullopt});
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE(matcher::VerifySignature(
      public_key_, matcher::VersionSigningMessage((*store)->store_id(), record),
      record.signature));

  HttpResponse proof = Send("auditor", "GET", "/v1/index/proof/1");
  ASSERT_EQ(proof.status, 200) << proof.body;
  EXPECT_EQ(ParseJson(proof.body).at("root"), root.at("root"));
  EXPECT_EQ(ParseJson(proof.body).at("tree_size"), json::value(3));
  ExpectError(Send("auditor", "GET", "/v1/index/proof/99"), 404, "not_found");
}

TEST_P(ApiTest, ListAdministrationChangesMatchingAtOnce) {
  const std::string op = "operator";
  HttpResponse created = Send(op, "POST", "/v1/lists", "application/json",
                              R"({"name":"hotline","description":"cases from the hotline"})");
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(ParseJson(created.body).at("list"),
            json::parse(R"({"name":"hotline","enabled":true,)"
                        R"("description":"cases from the hotline","active":0,"disabled":0})"));

  // An import with a bad line changes nothing and names the line.
  const std::string fresh = FlipBits(ReferencePdq(kBridge), 60);
  HttpResponse bad = Send(op, "POST", "/v1/lists/hotline/entries", "text/plain",
                          "pdq " + fresh + " ref-a\npdq 1234 ref-b\n");
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_EQ(ParseJson(bad.body).at("error").at("code"), "invalid_entries");
  EXPECT_EQ(ParseJson(bad.body).at("rejected").as_array().size(), 1u);
  EXPECT_EQ(ParseJson(bad.body).at("rejected").at(0).at("line"), json::value(2));
  // A rejected line quotes what it could not read as printable UTF-8.
  HttpResponse quoted = Send(op, "POST", "/v1/lists/hotline/entries", "text/plain",
                             "\xd4pdq " + fresh + " ref-a\n");
  EXPECT_EQ(quoted.status, 422) << quoted.body;
  EXPECT_EQ(ParseJson(quoted.body).at("rejected"),
            json::parse(
                R"j([{"line":1,"message":"unknown signal type '\\xd4pdq' (pdq, md5 or sha256)"}])j"));
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(false));

  HttpResponse added =
      Send(op, "POST", "/v1/lists/hotline/entries?skip_invalid=true&category=c1", "text/plain",
           "pdq " + fresh + " ref-a\npdq 1234 ref-b\n");
  ASSERT_EQ(added.status, 201) << added.body;
  EXPECT_EQ(ParseJson(added.body).at("added"), json::value(1));
  EXPECT_EQ(ParseJson(added.body).at("already_present"), json::value(0));
  // What the list holds already is not added again (whatever its
  // reference): the same import, or a JSON add of the value, changes
  // nothing and answers 200 with the version as it is.
  const json::value added_version = ParseJson(added.body).at("version");
  HttpResponse again =
      Send(op, "POST", "/v1/lists/hotline/entries", "text/plain", "pdq " + fresh + " ref-a\n");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(ParseJson(again.body),
            json::parse(R"({"version":)" + json::serialize(added_version) +
                        R"(,"added":0,"already_present":1,"rejected":[]})"));
  HttpResponse json_again =
      Send(op, "POST", "/v1/lists/hotline/entries", "application/json",
           R"({"entries":[{"type":"pdq","value":")" + fresh + R"(","reference":"other"},)" +
               R"({"type":"pdq","value":")" + fresh + R"(","reference":"twice"}]})");
  ASSERT_EQ(json_again.status, 200) << json_again.body;
  EXPECT_EQ(ParseJson(json_again.body).at("version"), added_version);
  EXPECT_EQ(ParseJson(json_again.body).at("already_present"), json::value(2));
  EXPECT_EQ(ParseJson(Send("auditor", "GET", "/v1/index").body).at("version"), added_version);
  // Visible to the very next match.
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("matches"),
            json::parse(R"([{"list":"hotline","category":"c1","ref":"ref-a"}])"));

  // Entries are listed without their values.
  HttpResponse entries = Send("auditor", "GET", "/v1/lists/hotline/entries");
  ASSERT_EQ(entries.status, 200) << entries.body;
  json::value listed = ParseJson(entries.body);
  ASSERT_EQ(listed.at("entries").as_array().size(), 1u);
  const uint64_t id = listed.at("entries").at(0).at("id").to_number<uint64_t>();
  EXPECT_EQ(id, 4u);
  EXPECT_EQ(listed.at("entries").at(0).at("added_by"), "operator");
  EXPECT_EQ(entries.body.find(fresh), std::string::npos);
  EXPECT_EQ(listed.at("entries").at(0).as_object().count("value"), 0u);

  const std::string entry = "/v1/lists/hotline/entries/" + std::to_string(id);
  ASSERT_EQ(Send(op, "PATCH", entry, "application/json", R"({"status":"disabled"})").status, 200);
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(false));
  // A disabled entry is held still: its value is not added again (it stays
  // disabled; PATCH puts it back).
  HttpResponse disabled_again =
      Send(op, "POST", "/v1/lists/hotline/entries", "text/plain", "pdq " + fresh + " ref-new\n");
  ASSERT_EQ(disabled_again.status, 200) << disabled_again.body;
  EXPECT_EQ(ParseJson(disabled_again.body).at("already_present"), json::value(1));
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(false));
  // The list's counts are those of the version served, at once.
  const json::value hotline_disabled = json::parse(
      R"({"name":"hotline","enabled":true,"description":"cases from the hotline",)"
      R"("active":0,"disabled":1})");
  HttpResponse one = Send("auditor", "GET", "/v1/lists/hotline");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(ParseJson(one.body), hotline_disabled);
  HttpResponse all = Send("auditor", "GET", "/v1/lists");
  ASSERT_EQ(all.status, 200) << all.body;
  bool listed_hotline = false;
  const json::value all_lists = ParseJson(all.body);
  for (const json::value& list : all_lists.at("lists").as_array()) {
    if (list.at("name") == "hotline") {
      listed_hotline = true;
      EXPECT_EQ(list, hotline_disabled);
    }
  }
  EXPECT_TRUE(listed_hotline) << all.body;
  ASSERT_EQ(Send(op, "PATCH", entry, "application/json", R"({"status":"active"})").status, 200);
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(true));
  HttpResponse list_off =
      Send(op, "PATCH", "/v1/lists/hotline", "application/json", R"({"enabled":false})");
  ASSERT_EQ(list_off.status, 200) << list_off.body;
  EXPECT_EQ(ParseJson(list_off.body).at("list"),
            json::parse(R"({"name":"hotline","enabled":false,)"
                        R"("description":"cases from the hotline","active":1,"disabled":0})"));
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(false));
  ASSERT_EQ(Send(op, "PATCH", "/v1/lists/hotline", "application/json", R"({"enabled":true})")
                .status,
            200);
  ASSERT_EQ(Send(op, "DELETE", entry).status, 200);
  EXPECT_EQ(ParseJson(MatchPdq("platform", fresh).body).at("match"), json::value(false));
  ExpectError(Send(op, "GET", entry), 404, "not_found");
  // An entry of another list is not reachable through this one.
  ExpectError(Send(op, "DELETE", "/v1/lists/hotline/entries/1"), 404, "not_found");
  ExpectError(Send(op, "PATCH", "/v1/lists/nope", "application/json", R"({"enabled":true})"),
              404, "not_found");
  ExpectError(Send(op, "PATCH", "/v1/lists/hotline", "application/json", R"({"enable":true})"),
              400, "invalid_argument");

  // JSON adds.
  HttpResponse json_add =
      Send(op, "POST", "/v1/lists/hotline/entries", "application/json",
           R"({"entries":[{"type":"md5","value":")" + std::string(32, 'a') +
               R"(","category":"c2","reference":"ref-c"}]})");
  ASSERT_EQ(json_add.status, 201) << json_add.body;

  // Every change is in the audit log under the key's id.
  HttpResponse audit = Send("auditor", "GET", "/v1/audit?after=" + std::to_string(setup_version_));
  ASSERT_EQ(audit.status, 200) << audit.body;
  std::vector<std::string> actions;
  const json::value audit_records = ParseJson(audit.body);
  for (const json::value& record : audit_records.at("records").as_array()) {
    EXPECT_EQ(record.at("actor"), "operator");
    actions.emplace_back(record.at("action").as_string());
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"describe_list", "import", "disable", "enable",
                                               "disable_list", "enable_list", "remove", "add"}));
  // How the index verified each: a change that only adds entries (a list
  // created, an import, an add) hashes only those; any other takes the
  // hashes this server's writer signed over the same state (its writer
  // prepared once the index was loaded, and each change started from the
  // state the one before left).
  const std::string metrics = Send("operator", "GET", "/metrics").body;
  EXPECT_NE(metrics.find("\nbantay_index_changes_verified_total{how=\"appended\"} 3\n"
                         "bantay_index_changes_verified_total{how=\"hashed\"} 0\n"
                         "bantay_index_changes_verified_total{how=\"writer\"} 5\n"),
            std::string::npos)
      << metrics;
}

TEST_P(ApiTest, ChangesMadeElsewhereArePickedUpByPolling) {
  const std::string fresh = FlipBits(ReferencePdq(kBridge), 80);
  matcher::StoreKeys keys;
  keys.data_keys = {data_key_};
  Result<matcher::SigningKey> signer =
      matcher::SigningKey::ReadPemFile(dir_.path() + "/signing.pem");
  ASSERT_TRUE(signer.ok());
  keys.signing_key = std::move(*signer);
  Result<std::unique_ptr<matcher::Store>> store = matcher::Store::Open(store_url_, std::move(keys));
  ASSERT_TRUE(store.ok());
  matcher::NewEntry e;
  e.list = "cli";
  e.value = models::Hash256::FromHex(fresh)->bytes();
  e.category = "c";
  e.reference = "from-the-cli";
  ASSERT_TRUE((*store)->AddEntries({e}, {"cli-user", "cli"}).ok());
  // Polled every 50 ms here; the bound only keeps a broken build from
  // hanging.
  bool seen = false;
  for (int i = 0; i < 500 && !seen; ++i) {
    seen = ParseJson(MatchPdq("platform", fresh).body).at("match").as_bool();
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(seen);
}

// A backup of the whole store, taken and restored with SQL inside its own
// database (every table copied to bak_<table> and back, in one
// transaction), as an operator restores a copy of the database: the
// append-only triggers are dropped for it.
class TableBackup {
 public:
  explicit TableBackup(std::string store_url) : store_url_(std::move(store_url)) {}

  void Take() {
    std::unique_ptr<matcher::db::Connection> conn = Open();
    ASSERT_NE(conn, nullptr);
    tables_ = Tables(*conn);
    ASSERT_FALSE(tables_.empty());
    for (const std::string& table : tables_) {
      ASSERT_TRUE(conn->ExecScript("DROP TABLE IF EXISTS bak_" + table + "; CREATE TABLE bak_" +
                                   table + " AS SELECT * FROM " + table)
                      .ok())
          << table;
    }
  }

  void Restore() {
    std::unique_ptr<matcher::db::Connection> conn = Open();
    ASSERT_NE(conn, nullptr);
    ASSERT_EQ(Tables(*conn), tables_);
    const bool sqlite = store_url_.starts_with("sqlite:");
    Status dropped = bantay::testing::DropAppendOnlyTriggers(*conn, sqlite);
    (void)dropped;  // dropped already by an earlier restore
    ASSERT_TRUE(conn->BeginWrite().ok());
    // entries refers to lists: emptied first, filled last.
    std::vector<std::string> order = {"entries"};
    for (const std::string& table : tables_) {
      if (table != "entries") order.push_back(table);
    }
    for (const std::string& table : order) {
      ASSERT_TRUE(conn->Execute("DELETE FROM " + table, {}).ok()) << table;
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      ASSERT_TRUE(conn->Execute("INSERT INTO " + *it + " SELECT * FROM bak_" + *it, {}).ok())
          << *it;
    }
    ASSERT_TRUE(conn->Commit().ok());
  }

 private:
  std::unique_ptr<matcher::db::Connection> Open() {
    Result<std::unique_ptr<matcher::db::Connection>> raw =
        matcher::db::Connection::Open(store_url_, false);
    EXPECT_TRUE(raw.ok()) << raw.error().ToString();
    return raw.ok() ? std::move(*raw) : nullptr;
  }

  std::vector<std::string> Tables(matcher::db::Connection& conn) {
    std::vector<std::string> names;
    const std::string sql =
        conn.backend() == matcher::db::Backend::kSqlite
            ? "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
              "AND name NOT LIKE 'bak%' ORDER BY name"
            : "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
              "AND tablename NOT LIKE 'bak%' ORDER BY tablename";
    EXPECT_TRUE(conn.Execute(sql, {}, [&](const matcher::db::Row& row) {
                      names.emplace_back(row.Text(0));
                    }).ok());
    return names;
  }

  std::string store_url_;
  std::vector<std::string> tables_;
};

// Waits (10 s at most) for /readyz to answer 200; its answer.
HttpResponse WaitUntilReadyz(ServerFixture& fixture) {
  HttpResponse ready;
  for (int i = 0; i < 1000; ++i) {
    ready = fixture.Send("", "GET", "/readyz");
    if (ready.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return ready;
}

std::string ReadyAt(uint64_t version) {
  return R"({"status":"ready","index_version":)" + std::to_string(version) + "}";
}

// A store edited with SQL before the server starts.
class ApiEditedStoreTest : public ApiTest {
 protected:
  void Edit(const std::vector<std::string>& statements) {
    Result<std::unique_ptr<matcher::db::Connection>> raw =
        matcher::db::Connection::Open(store_url_, false);
    ASSERT_TRUE(raw.ok()) << raw.error().ToString();
    ASSERT_TRUE(
        bantay::testing::DropAppendOnlyTriggers(**raw, store_url_.starts_with("sqlite:")).ok());
    for (const std::string& sql : statements) {
      ASSERT_TRUE((*raw)->Execute(sql, {}).ok()) << sql;
    }
  }

  // Starts the server and expects its index never to load.
  void ExpectNotServed() {
    Result<std::unique_ptr<Server>> server = Server::Start(config);
    ASSERT_TRUE(server.ok()) << server.error().ToString();
    server_ = std::move(*server);
    HttpResponse ready;
    for (int i = 0; i < 1000; ++i) {
      ready = Send("", "GET", "/readyz");
      if (ParseJson(ready.body).at("error").at("message") != "the index is loading") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ExpectError(ready, 503, "unavailable");
    EXPECT_EQ(ParseJson(ready.body).at("error").at("message"),
              "the index failed to load (retrying; see the server's log)");
    HttpResponse match = MatchPdq("platform", ReferencePdq(kBridge));
    ExpectError(match, 503, "unavailable");
    EXPECT_EQ(ParseJson(match.body).at("error").at("message"), "the index is loading");
    StopServer();
  }
};

// A row deleted with SQL (the signed root no longer covers the entries): not
// served, with or without store.verify_on_load, which skips the store's
// history but not the load's own check of the entries against the signed
// root.
TEST_P(ApiEditedStoreTest, AStoreEditedBehindItsBackIsNotServed) {
  StopServer();
  Edit({"DELETE FROM entries WHERE reference = 'case-1'"});
  ExpectNotServed();
  config.verify_on_load = false;
  ExpectNotServed();
}

// An audit record edited with SQL: the history does not verify, and the
// server refuses to serve the store; with store.verify_on_load = false the
// history is not read at start (the entries are still checked against the
// signed root, and they are intact), so it serves them.
TEST_P(ApiEditedStoreTest, AnEditedHistoryIsOnlyFoundByTheLoadsVerification) {
  StopServer();
  Edit({"UPDATE audit SET actor = 'someone-else' WHERE seq = 2"});
  ExpectNotServed();
  config.verify_on_load = false;
  StartServer();
  HttpResponse match = MatchPdq("platform", ReferencePdq(kBridge));
  ASSERT_EQ(match.status, 200) << match.body;
  EXPECT_EQ(ParseJson(match.body).at("match"), true);
}

// A store that does not verify at start is loaded again after
// store.corrupt_retry_ms (here 200 ms; the wait below is far shorter than
// the default minute): once it is repaired (the backup taken before the
// edit restored), it is served.
TEST_P(ApiEditedStoreTest, ARepairedStoreIsServedAfterTheRetryInterval) {
  StopServer();
  TableBackup backup(store_url_);
  backup.Take();
  Edit({"DELETE FROM entries WHERE reference = 'case-1'"});
  config.corrupt_retry_ms = 200;
  Result<std::unique_ptr<Server>> server = Server::Start(config);
  ASSERT_TRUE(server.ok()) << server.error().ToString();
  server_ = std::move(*server);
  EXPECT_FALSE(server_->WaitUntilReady());  // the first load failed
  HttpResponse ready = Send("", "GET", "/readyz");
  ExpectError(ready, 503, "unavailable");
  EXPECT_EQ(ParseJson(ready.body).at("error").at("message"),
            "the index failed to load (retrying; see the server's log)");
  backup.Restore();
  ready = WaitUntilReadyz(*this);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ParseJson(ready.body), json::parse(ReadyAt(setup_version_)));
  HttpResponse match = MatchPdq("platform", ReferencePdq(kBridge));
  ASSERT_EQ(match.status, 200) << match.body;
  EXPECT_EQ(ParseJson(match.body).at("match"), true);
}

INSTANTIATE_TEST_SUITE_P(Backends, ApiEditedStoreTest, ::testing::Values("sqlite", "postgres"));

// Changes written into the database after the server loaded it, behind the
// store's back, are not applied: the server keeps serving the last version
// the key signed, says so in /readyz once store.stale_after_ms has passed,
// and counts the failed syncs. (Two ways here; the matcher's tests go
// through the others, with the exact reasons.)
class ApiTamperTest : public ApiTest {
 protected:
  // The reference picture still matches, at the setup's version.
  void ExpectStillMatched() {
    HttpResponse match = MatchPdq("platform", ReferencePdq(kBridge));
    ASSERT_EQ(match.status, 200) << match.body;
    EXPECT_EQ(ParseJson(match.body).at("match"), true) << match.body;
    EXPECT_EQ(ParseJson(match.body).at("index_version"), setup_version_) << match.body;
  }

  std::unique_ptr<matcher::db::Connection> Raw() {
    Result<std::unique_ptr<matcher::db::Connection>> raw =
        matcher::db::Connection::Open(store_url_, false);
    EXPECT_TRUE(raw.ok()) << raw.error().ToString();
    return raw.ok() ? std::move(*raw) : nullptr;
  }
};

// A list disabled and the version bumped with SQL: no signed version. (Was
// applied: the list stopped matching on every replica within a poll.)
TEST_P(ApiTamperTest, AnUnsignedVersionIsNotApplied) {
  StopServer();
  config.stale_after_ms = 200;
  StartServer();
  std::unique_ptr<matcher::db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(raw->Execute("UPDATE lists SET enabled = 0 WHERE name = 'demo'", {}).ok());
  ASSERT_TRUE(raw->Execute("UPDATE state SET version = version + 1", {}).ok());
  ExpectUnreadyAtSetupVersion();
  ExpectStillMatched();
}

// A signed change (another writer disables the reference's entry) whose
// row is then made to look unchanged since the setup, so that the feed
// leaves it out
// (the index would go on matching an entry the operator disabled); the
// server syncs when a change is made through the API (polling is off
// here). The change set does not give the signed root: nothing is applied.
TEST_P(ApiTamperTest, AChangeHiddenFromTheFeedIsNotApplied) {
  StopServer();
  config.stale_after_ms = 200;
  config.poll_interval_ms = 3'600'000;
  StartServer();
  {
    std::unique_ptr<matcher::Store> store = OpenWriter({data_key_});
    ASSERT_NE(store, nullptr);
    Result<std::vector<matcher::StoredEntry>> entries = store->Entries("demo", 0, 10);
    ASSERT_TRUE(entries.ok());
    ASSERT_EQ(entries->front().reference, "case-1");
    ASSERT_TRUE(store
                    ->SetEntriesStatus({entries->front().id}, matcher::EntryStatus::kDisabled,
                                       {"cli-user", "cli"})
                    .ok());
  }
  std::unique_ptr<matcher::db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(
      raw->Execute("UPDATE entries SET status_version = 1 WHERE reference = 'case-1'", {}).ok());
  HttpResponse added = Send("operator", "PATCH", "/v1/lists/other", "application/json",
                            R"({"enabled":false})");
  ASSERT_EQ(added.status, 200) << added.body;
  ExpectUnreadyAtSetupVersion();
  ExpectStillMatched();
  // The API's own change (list "other" disabled) is not applied either: it
  // comes after one that does not verify, so "other"'s SHA-256 still matches.
  const std::string sha = models::ToHex(models::Sha256(Bytes("known sha256 text")));
  HttpResponse other = Send("platform", "POST", "/v1/match", "application/json",
                            R"({"sha256":")" + sha + R"("})");
  ASSERT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(ParseJson(other.body).at("match"), true) << other.body;
}

// An unsigned version bump (as above), repaired with SQL: the index follows
// the store again at the next try, store.corrupt_retry_ms (here 300 ms;
// the wait below is far shorter than the default minute) after the one
// that failed, and applies the signed changes made after.
TEST_P(ApiTamperTest, ARepairedStoreIsFollowedAgainAfterTheRetryInterval) {
  StopServer();
  config.stale_after_ms = 200;
  config.corrupt_retry_ms = 300;
  StartServer();
  std::unique_ptr<matcher::db::Connection> raw = Raw();
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(raw->Execute("UPDATE lists SET enabled = 0 WHERE name = 'demo'", {}).ok());
  ASSERT_TRUE(raw->Execute("UPDATE state SET version = version + 1", {}).ok());
  ExpectUnreadyAtSetupVersion();
  ExpectStillMatched();
  ASSERT_TRUE(raw->Execute("UPDATE lists SET enabled = 1 WHERE name = 'demo'", {}).ok());
  ASSERT_TRUE(raw->Execute("UPDATE state SET version = version - 1", {}).ok());
  HttpResponse ready = WaitUntilReadyz(*this);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ParseJson(ready.body), json::parse(ReadyAt(setup_version_)));
  ExpectStillMatched();
  // Following again: a change through the API is applied before it is
  // answered.
  const std::string fresh = FlipBits(ReferencePdq(kBridge), 80);
  HttpResponse added =
      Send("operator", "POST", "/v1/lists/demo/entries", "application/json",
           R"({"entries":[{"type":"pdq","value":")" + fresh + R"(","reference":"after"}]})");
  ASSERT_EQ(added.status, 201) << added.body;
  EXPECT_EQ(ParseJson(added.body).at("version"), setup_version_ + 1);
  HttpResponse match = MatchPdq("lab", fresh, "?radius=0");
  ASSERT_EQ(match.status, 200) << match.body;
  EXPECT_EQ(ParseJson(match.body).at("matches").at(0).at("ref"), "after") << match.body;
  EXPECT_EQ(ParseJson(match.body).at("index_version"), setup_version_ + 1) << match.body;
  EXPECT_EQ(ParseJson(Send("", "GET", "/readyz").body), json::parse(ReadyAt(setup_version_ + 1)));
}

// The store's history forks under a running replica: a backup taken at the
// setup's version is restored after the replica applied a later version,
// then written (signed by the trusted key, but not following on from what
// the replica applied). The replica refuses the older copy and the
// rewritten version it serves, keeps serving what it has, and serves the
// fork's store, reloaded and verified, once it is at a later version.
TEST_P(ApiTamperTest, AReplicaServesAForkedStoreOnlyAtALaterVersion) {
  StopServer();
  config.stale_after_ms = 100;
  config.corrupt_retry_ms = 200;
  StderrToFile log(dir_.path() + "/stderr.log");
  StartServer();
  const uint64_t v0 = setup_version_;
  TableBackup backup(store_url_);
  backup.Take();
  const std::string lost = FlipBits(ReferencePdq(kBridge), 80);
  const std::string kept = FlipBits(ReferencePdq(kBridge), 160);
  const std::string later = FlipBits(ReferencePdq(kBridge), 240);
  auto add = [&](const std::string& pdq, const std::string& reference) -> uint64_t {
    std::unique_ptr<matcher::Store> store = OpenWriter({data_key_});
    EXPECT_NE(store, nullptr);
    if (store == nullptr) return 0;
    matcher::NewEntry e;
    e.list = "demo";
    e.value = models::Hash256::FromHex(pdq)->bytes();
    e.reference = reference;
    Result<uint64_t> version = store->AddEntries({e}, {"cli-user", "cli"});
    EXPECT_TRUE(version.ok()) << version.error().ToString();
    return version.ok() ? *version : 0;
  };
  // The reference of `pdq` served, at `version` ("" for none).
  auto expect_served = [&](const std::string& pdq, const std::string& reference,
                           uint64_t version) {
    HttpResponse match = MatchPdq("lab", pdq, "?radius=0");
    ASSERT_EQ(match.status, 200) << match.body;
    const json::value answer = ParseJson(match.body);
    EXPECT_EQ(answer.at("index_version"), version) << match.body;
    if (reference.empty()) {
      EXPECT_EQ(answer.at("matches"), json::array()) << match.body;
    } else {
      EXPECT_EQ(answer.at("matches").at(0).at("ref"), json::value(reference)) << match.body;
    }
  };

  ASSERT_EQ(add(lost, "lost"), v0 + 1);
  HttpResponse seen;
  for (int i = 0; i < 1000; ++i) {
    seen = MatchPdq("lab", lost, "?radius=0");
    if (ParseJson(seen.body).at("index_version") == v0 + 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  expect_served(lost, "lost", v0 + 1);

  // The backup restored: an older copy. Refused at the retry.
  backup.Restore();
  const std::string served = " (it serves version " + std::to_string(v0 + 1) + "): ";
  ASSERT_TRUE(log.Says(served + "corrupt_data: the changes from version " +
                       std::to_string(v0 + 1) + " to " + std::to_string(v0) +
                       " do not verify: the store went back to an older version (an older "
                       "copy of the database?); the store reloaded is at version " +
                       std::to_string(v0) + ", older than version " + std::to_string(v0 + 1) +
                       " served: not served (an older copy of the database?)\n"));
  ExpectUnreadyAt(v0 + 1);
  expect_served(lost, "lost", v0 + 1);

  // Written: version v0 + 1 again, over other entries. Refused too.
  ASSERT_EQ(add(kept, "kept"), v0 + 1);
  ASSERT_TRUE(log.Says(served + "corrupt_data: the store's version " + std::to_string(v0 + 1) +
                       " is not the signed version the index serves; the store reloaded is at "
                       "version " + std::to_string(v0 + 1) +
                       " with another root than the one served: not served (the index goes "
                       "only to a later version)\n"));
  ExpectUnreadyAt(v0 + 1);
  expect_served(lost, "lost", v0 + 1);
  expect_served(kept, "", v0 + 1);

  // A later version on the fork: served, whole.
  ASSERT_EQ(add(later, "later"), v0 + 2);
  HttpResponse ready = WaitUntilReadyz(*this);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ParseJson(ready.body), json::parse(ReadyAt(v0 + 2)));
  expect_served(lost, "", v0 + 2);
  expect_served(kept, "kept", v0 + 2);
  expect_served(later, "later", v0 + 2);
  EXPECT_TRUE(log.Says("verified against the trusted key at version " + std::to_string(v0 + 2) +
                       ", is served instead (the store's history after version " +
                       std::to_string(v0 + 1) + " was rewritten: a backup restored, then "
                       "written?)\n"));
  EXPECT_TRUE(log.Says("the index follows the store again (version " + std::to_string(v0 + 2) +
                       ")\n"));
  // GET /v1/index gives the fork's signed root.
  std::unique_ptr<matcher::Store> store = OpenWriter({data_key_});
  ASSERT_NE(store, nullptr);
  Result<matcher::VersionRecord> root = store->Root(v0 + 2);
  ASSERT_TRUE(root.ok());
  const json::value index = ParseJson(Send("platform", "GET", "/v1/index").body);
  EXPECT_EQ(index.at("version"), v0 + 2);
  EXPECT_EQ(index.at("root").at("root"), json::value(models::ToHex(root->root)));
  EXPECT_EQ(index.at("entries"), json::parse(R"({"pdq":3,"md5":1,"sha256":1})"));
  StopServer();
}

INSTANTIATE_TEST_SUITE_P(Backends, ApiTamperTest, ::testing::Values("sqlite", "postgres"));

// store.min_version and store.pin_file against an older copy of a SQLite
// store file (any signed version loads: without them, the copy is served).
class ApiPinTest : public ApiTest {
 protected:
  // The pin file's text for `version` of the store at `url`.
  std::string PinOf(const std::string& url, uint64_t version) {
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(url, matcher::StoreKeys{{data_key_}, std::nullopt});
    EXPECT_TRUE(store.ok());
    if (!store.ok()) return "";
    Result<matcher::VersionRecord> record = (*store)->Root(version);
    EXPECT_TRUE(record.ok());
    if (!record.ok()) return "";
    return R"({"store_id":")" + models::ToHex((*store)->store_id()) + R"(","version":)" +
           std::to_string(version) + R"(,"root":")" + models::ToHex(record->root) +
           R"(","public_key":")" + PublicKeyHex() + "\"}\n";
  }

  // The public half of the signing key, in hex.
  std::string PublicKeyHex() {
    Result<matcher::SigningKey> signer =
        matcher::SigningKey::ReadPemFile(dir_.path() + "/signing.pem");
    EXPECT_TRUE(signer.ok());
    return signer.ok() ? models::ToHex(signer->public_key()) : "";
  }

  // Adds an entry to the store at `url` as the CLI does; the new version.
  uint64_t AddWithTheCli(const std::string& url, const std::string& pdq) {
    matcher::StoreKeys keys;
    keys.data_keys = {data_key_};
    Result<matcher::SigningKey> signer =
        matcher::SigningKey::ReadPemFile(dir_.path() + "/signing.pem");
    EXPECT_TRUE(signer.ok());
    if (!signer.ok()) return 0;
    keys.signing_key = std::move(*signer);
    Result<std::unique_ptr<matcher::Store>> store = matcher::Store::Open(url, std::move(keys));
    EXPECT_TRUE(store.ok());
    if (!store.ok()) return 0;
    matcher::NewEntry e;
    e.list = "cli";
    e.value = models::Hash256::FromHex(pdq)->bytes();
    e.reference = "from-the-cli";
    Result<uint64_t> version = (*store)->AddEntries({e}, {"cli-user", "cli"});
    EXPECT_TRUE(version.ok());
    return version.ok() ? *version : 0;
  }

  // Starts the server; expects its index not to be served, the log to say
  // `why`, and /readyz that the load failed.
  void StartRefused(StderrToFile& log, const std::string& why) {
    log.Skip();
    Result<std::unique_ptr<Server>> server = Server::Start(config);
    ASSERT_TRUE(server.ok()) << server.error().ToString();
    server_ = std::move(*server);
    EXPECT_FALSE(server_->WaitUntilReady());
    EXPECT_TRUE(log.Says("bantay-server: loading the index failed: corrupt_data: " + why + "\n"));
    HttpResponse ready = Send("", "GET", "/readyz");
    ExpectError(ready, 503, "unavailable");
    EXPECT_EQ(ParseJson(ready.body).at("error").at("message"),
              "the index failed to load (retrying; see the server's log)");
    ExpectError(MatchPdq("platform", ReferencePdq(kBridge)), 503, "unavailable");
  }

  // Starts the server; expects it ready at `version`.
  void StartServedAt(uint64_t version) {
    StartServer();
    HttpResponse ready = Send("", "GET", "/readyz");
    EXPECT_EQ(ready.status, 200) << ready.body;
    EXPECT_EQ(ParseJson(ready.body), json::parse(ReadyAt(version)));
  }
};

INSTANTIATE_TEST_SUITE_P(Sqlite, ApiPinTest, ::testing::Values("sqlite"));

TEST_P(ApiPinTest, AnOlderCopyOfTheStoreIsRefusedWithAPinOrAMinimumVersion) {
  StopServer();
  StderrToFile log(dir_.path() + "/stderr.log");
  const uint64_t v0 = setup_version_;
  const std::string pin = dir_.path() + "/pin.json";
  config.pin_file = pin;
  config.corrupt_retry_ms = 100;
  StartServer();
  EXPECT_EQ(ReadText(pin), PinOf(store_url_, v0));
  EXPECT_FALSE(std::filesystem::exists(pin + ".tmp"));
  StopServer();
  // The copy, of the store file closed (no write-ahead log left).
  const std::string copy = dir_.path() + "/copy.db";
  ASSERT_FALSE(std::filesystem::exists(dir_.path() + "/store.db-wal"));
  std::filesystem::copy_file(dir_.path() + "/store.db", copy);
  const std::string copy_url = "sqlite:" + copy;

  // The server pins each version it applies.
  StartServer();
  const std::string fresh = FlipBits(ReferencePdq(kBridge), 80);
  HttpResponse added =
      Send("operator", "POST", "/v1/lists/demo/entries", "application/json",
           R"({"entries":[{"type":"pdq","value":")" + fresh + R"(","reference":"after"}]})");
  ASSERT_EQ(added.status, 201) << added.body;
  ASSERT_EQ(ParseJson(added.body).at("version"), v0 + 1);
  const std::string pinned = PinOf(store_url_, v0 + 1);
  EXPECT_EQ(ReadText(pin), pinned);
  StopServer();

  // The older copy: refused with the pin (which stays), served without.
  config.store_url = copy_url;
  StartRefused(log, "the store is at version " + std::to_string(v0) + ", older than version " +
                        std::to_string(v0 + 1) + " pinned in store.pin_file " + pin +
                        " (an older copy of the database?)");
  StopServer();
  EXPECT_EQ(ReadText(pin), pinned);
  config.pin_file = "";
  StartServedAt(v0);
  StopServer();

  // With store.min_version: refused, and tried again until the store is
  // at that version (written to on its own, here).
  config.min_version = static_cast<int64_t>(v0 + 1);
  StartRefused(log, "the store is at version " + std::to_string(v0) +
                        ", below store.min_version " + std::to_string(v0 + 1) +
                        " (an older copy of the database?)");
  ASSERT_EQ(AddWithTheCli(copy_url, FlipBits(ReferencePdq(kBridge), 160)), v0 + 1);
  HttpResponse ready = WaitUntilReadyz(*this);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ParseJson(ready.body), json::parse(ReadyAt(v0 + 1)));
  StopServer();
  config.min_version = 0;

  // The copy is now at the pinned version with another root: refused with
  // the pin, served without; the original store is served with it.
  config.pin_file = pin;
  StartRefused(log, "the store's version " + std::to_string(v0 + 1) +
                        " has another signed root than the one pinned in store.pin_file " + pin +
                        " (the store's history was rewritten)");
  StopServer();
  EXPECT_EQ(ReadText(pin), pinned);
  config.pin_file = "";
  StartServedAt(v0 + 1);
  StopServer();
  config.pin_file = pin;
  config.store_url = store_url_;
  StartServedAt(v0 + 1);
  StopServer();
  EXPECT_EQ(ReadText(pin), pinned);
}

// A replica configured without a key trusts the key the store holds: whoever
// can write to the database can sign every version again with a key of
// their own (and store it), and the replica serves that. Its pin file holds
// the key it found first, and stops the start.
TEST_P(ApiPinTest, AStoreSignedAgainWithAnotherKeyIsRefusedByThePin) {
  StopServer();
  const std::string pin = dir_.path() + "/pin.json";
  config.signing_key_file = "";
  config.public_key_file = "";
  config.pin_file = pin;
  const uint64_t version = AddWithTheCli(store_url_, ReferencePdq(kBridge));
  StartServedAt(version);
  StopServer();
  EXPECT_EQ(ReadText(pin), PinOf(store_url_, version));
  const std::string original_key = PublicKeyHex();

  // Every version signed again with another key, which the store now holds.
  const matcher::SigningKey other = matcher::SigningKey::Generate();
  {
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(store_url_, matcher::StoreKeys{{data_key_}, std::nullopt});
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    Result<std::unique_ptr<matcher::db::Connection>> raw =
        matcher::db::Connection::Open(store_url_, false);
    ASSERT_TRUE(raw.ok()) << raw.error().ToString();
    ASSERT_TRUE(bantay::testing::DropAppendOnlyTriggers(**raw, true).ok());
    for (uint64_t v = 1; v <= version; ++v) {
      Result<matcher::VersionRecord> record = (*store)->Root(v);
      ASSERT_TRUE(record.ok()) << record.error().ToString();
      record->public_key = other.public_key();
      record->signature = other.Sign(matcher::VersionSigningMessage((*store)->store_id(), *record));
      const matcher::db::Param params[] = {
          matcher::db::Param::Blob(record->public_key), matcher::db::Param::Blob(record->signature),
          matcher::db::Param::Int(static_cast<int64_t>(v))};
      ASSERT_TRUE((*raw)
                      ->Execute("UPDATE versions SET public_key = $1, signature = $2 WHERE "
                                "version = $3",
                                params)
                      .ok());
    }
    const matcher::db::Param key[] = {matcher::db::Param::Blob(other.public_key())};
    ASSERT_TRUE(
        (*raw)->Execute("UPDATE meta SET value = $1 WHERE key = 'public_key'", key).ok());
  }
  // Without the pin it is served, at the same version and root.
  config.pin_file = "";
  StartServedAt(version);
  StopServer();
  // With it, the start stops.
  config.pin_file = pin;
  Result<std::unique_ptr<Server>> refused = Server::Start(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(),
            "store.pin_file: " + pin + " pins the signing key " + original_key +
                ", but the store's versions are to be verified with key " +
                models::ToHex(other.public_key()) +
                " (the key the store holds; delete the pin file if the key was changed on "
                "purpose)");
  EXPECT_NE(original_key, models::ToHex(other.public_key()));
}

// A pin file that cannot be read or is not a pin stops the start, with its
// reason; a missing one is written.
TEST_P(ApiPinTest, AnUnreadablePinFileStopsTheStart) {
  StopServer();
  const std::string pin = dir_.path() + "/pin.json";
  config.pin_file = pin;
  const std::string good = PinOf(store_url_, setup_version_);
  ASSERT_FALSE(good.empty());
  const std::string id = good.substr(13, 32);
  const std::string root = good.substr(good.find(R"("root":")") + 8, 64);
  const std::string version = std::to_string(setup_version_);
  const std::string key = PublicKeyHex();
  auto pin_text = [&key](const std::string& store_id, const std::string& number,
                         const std::string& hex_root, std::optional<std::string> hex_key = {}) {
    return R"({"store_id":")" + store_id + R"(","version":)" + number + R"(,"root":")" +
           hex_root + R"(","public_key":")" + hex_key.value_or(key) + "\"}";
  };
  ASSERT_EQ(pin_text(id, version, root) + "\n", good);
  // As written before the key was pinned.
  const std::string keyless =
      R"({"store_id":")" + id + R"(","version":)" + version + R"(,"root":")" + root + "\"}\n";
  std::string extra = pin_text(id, version, root);
  extra.insert(1, R"("extra":0,)");
  std::string upper = root;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::pair<std::string, std::string> cases[] = {
      {"", "it is not JSON: incomplete JSON"},
      {"garbage\n", "it is not JSON: syntax error"},
      {good.substr(0, 40), "it is not JSON: incomplete JSON"},
      {pin_text(id, version + R"(,"version":)" + version, root),
       "it names the member \"version\" twice"},
      {"[1, 2]\n", "not a JSON object"},
      {R"({"version":1,"root":")" + root + "\"}",
       "not the members store_id, version, root and public_key"},
      {extra, "not the members store_id, version, root and public_key"},
      {R"({"store_id":")" + id + R"(","version":)" + version + R"(,"public_key":")" + key + "\"}",
       "not the members store_id, version, root and public_key"},
      {pin_text(id, version, root, key.substr(2)), "public_key is not 64 lower-case hex digits"},
      {pin_text(id, version, root, root.substr(1) + "G"),
       "public_key is not 64 lower-case hex digits"},
      {pin_text(id.substr(2), version, root), "store_id is not 32 lower-case hex digits"},
      {pin_text(id, version, upper), "root is not 64 lower-case hex digits"},
      {pin_text(id, version, root.substr(1) + "g"), "root is not 64 lower-case hex digits"},
      {pin_text(id, "-1", root), "version is not a whole number"},
      {pin_text(id, "1.5", root), "version is not a whole number"},
      {pin_text(id, "\"2\"", root), "version is not a whole number"},
      {std::string(5000, ' ') + good, "it is larger than a pin"},
  };
  for (const auto& [text, why] : cases) {
    SCOPED_TRACE(text);
    std::ofstream(pin, std::ios::trunc) << text;
    Result<std::unique_ptr<Server>> refused = Server::Start(config);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(refused.error().message(),
              "store.pin_file: " + pin + " is not a pin file (" + why +
                  "; expected one line {\"store_id\":\"<32 hex>\",\"version\":N,"
                  "\"root\":\"<64 hex>\",\"public_key\":\"<64 hex>\"}): restore it, or "
                  "delete it to pin the version the server loads next");
  }
  // Another store's pin.
  const std::string other(32, '0');
  std::ofstream(pin, std::ios::trunc) << pin_text(other, version, root) << "\n";
  Result<std::unique_ptr<Server>> refused = Server::Start(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
  EXPECT_EQ(refused.error().message(),
            "store.pin_file: " + pin + " pins store " + other + ", but store.url holds store " +
                id + " (delete the pin file if the store was replaced on purpose)");
  // Not a file.
  std::filesystem::remove(pin);
  std::filesystem::create_directory(pin);
  refused = Server::Start(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kIo);
  EXPECT_EQ(refused.error().message(), "store.pin_file: " + pin + ": Is a directory");
  // Missing: the first start, which pins the version it serves.
  std::filesystem::remove(pin);
  StartServer();
  EXPECT_EQ(ReadText(pin), good);
  // The same pin, well formed: served.
  StopServer();
  StartServer();
  EXPECT_EQ(ReadText(pin), good);
  // A pin written before the key was pinned: served, and the key added.
  StopServer();
  std::ofstream(pin, std::ios::trunc) << keyless;
  StartServer();
  EXPECT_EQ(ReadText(pin), good);
  StopServer();
  // A pin of another key: the store's versions were signed again with
  // another key (or the configured key changed). Refused, whichever key the
  // server trusts: its own signing key's, a public key file, or (a replica
  // configured with neither) the key the store holds.
  const std::string other_key(64, 'e');
  std::ofstream(pin, std::ios::trunc) << pin_text(id, version, root, other_key) << "\n";
  const std::string public_key_file = dir_.path() + "/public.pem";
  Result<matcher::SigningKey> signer = matcher::SigningKey::ReadPemFile(config.signing_key_file);
  ASSERT_TRUE(signer.ok());
  std::ofstream(public_key_file) << matcher::PublicKeyToPem(signer->public_key());
  const std::string signing_key_file = config.signing_key_file;
  for (const auto& [signing, public_file, source] :
       {std::tuple<std::string, std::string, std::string>{
            signing_key_file, "", "the public half of store.signing_key_file"},
        {signing_key_file, public_key_file, "store.public_key_file"},
        {"", public_key_file, "store.public_key_file"},
        {"", "", "the key the store holds"}}) {
    SCOPED_TRACE(source);
    config.signing_key_file = signing;
    config.public_key_file = public_file;
    refused = Server::Start(config);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code(), ErrorCode::kCorruptData);
    EXPECT_EQ(refused.error().message(),
              "store.pin_file: " + pin + " pins the signing key " + other_key +
                  ", but the store's versions are to be verified with key " + key + " (" + source +
                  "; delete the pin file if the key was changed on purpose)");
    EXPECT_EQ(ReadText(pin), pin_text(id, version, root, other_key) + "\n");
  }
  // The replica with the right key pinned: served.
  std::ofstream(pin, std::ios::trunc) << good;
  StartServer();
  EXPECT_EQ(ReadText(pin), good);
}

// An index that cannot follow the store (here: the store's data key was
// rotated, and the server still has the old one, so new values do not
// open) keeps serving what it has, counts the failures, and /readyz turns
// 503 once that has lasted store.stale_after_ms.
TEST_P(ApiTest, AnIndexThatCannotFollowTheStoreTurnsUnready) {
  StopServer();
  config.stale_after_ms = 300;
  StartServer();
  EXPECT_EQ(Send("", "GET", "/readyz").status, 200);
  const std::string fresh = FlipBits(ReferencePdq(kBridge), 80);
  {
    std::unique_ptr<matcher::Store> store = OpenWriter({matcher::GenerateDataKey(), data_key_});
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Rekey({"cli-user", "cli"}).ok());
    matcher::NewEntry e;
    e.list = "cli";
    e.value = models::Hash256::FromHex(fresh)->bytes();
    e.reference = "after-the-rekey";
    ASSERT_TRUE(store->AddEntries({e}, {"cli-user", "cli"}).ok());
  }
  // The rekey's own version changes no entry's state, so a poll between the
  // two changes follows it; the addition's value does not open. Once the
  // server is unready, the version it serves is settled.
  WaitUntilUnready();
  const uint64_t served =
      static_cast<uint64_t>(ParseJson(MatchPdq("platform", fresh).body).at("index_version")
                                .as_int64());
  EXPECT_TRUE(served == setup_version_ || served == setup_version_ + 1) << served;
  ExpectUnreadyAt(served);
  // It still answers, from the version it has.
  HttpResponse match = MatchPdq("platform", fresh);
  ASSERT_EQ(match.status, 200) << match.body;
  EXPECT_EQ(ParseJson(match.body),
            json::parse(R"({"match":false,"matches":[],"pdq_checked":true,"index_version":)" +
                        std::to_string(served) + "}"));
  const std::string metrics = Send("operator", "GET", "/metrics").body;
  const std::string failures = "\nbantay_index_sync_failures_total ";
  const size_t at = metrics.find(failures);
  ASSERT_NE(at, std::string::npos);
  // At least the polls of the 300 ms (every 50 ms here).
  EXPECT_GE(std::stoll(metrics.substr(at + failures.size())), 5) << metrics.substr(at, 60);
}

// The data key rotates while the server runs (server/README.md): the new
// key is given as store.extra_data_key_file, the store is rekeyed, the keys
// swap places, the store is rekeyed again (values the server sealed with the
// old key meanwhile), and the old key goes. The index follows throughout.
TEST_P(ApiTest, TheDataKeyRotatesWhileTheServerRuns) {
  const matcher::DataKey old_key = data_key_;
  const matcher::DataKey new_key = matcher::GenerateDataKey();
  ASSERT_TRUE(matcher::WriteDataKeyFile(dir_.path() + "/new.key", new_key).ok());
  auto rekey = [&](std::vector<matcher::DataKey> keys_first_seals) {
    std::unique_ptr<matcher::Store> store = OpenWriter(std::move(keys_first_seals));
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Rekey({"cli-user", "cli"}).ok());
  };
  // Values by data key id, as the store counts them.
  auto values_by_key = [&] {
    matcher::StoreKeys keys;
    keys.data_keys = {new_key, old_key};
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Open(store_url_, std::move(keys));
    EXPECT_TRUE(store.ok());
    Result<matcher::StoreStats> stats = (*store)->Stats();
    EXPECT_TRUE(stats.ok());
    return std::map<std::string, uint64_t>(stats->values_by_key.begin(),
                                           stats->values_by_key.end());
  };
  auto add = [&](const std::string& pdq, const std::string& reference) {
    HttpResponse added =
        Send("operator", "POST", "/v1/lists/demo/entries", "application/json",
             R"({"entries":[{"type":"pdq","value":")" + pdq + R"(","reference":")" + reference +
                 R"("}]})");
    ASSERT_EQ(added.status, 201) << added.body;
  };
  // Each reference matches (the index follows), and nothing lags.
  auto expect_served = [&](const std::vector<std::pair<std::string, std::string>>& matches) {
    for (const auto& [pdq, reference] : matches) {
      HttpResponse match;
      for (int i = 0; i < 500; ++i) {
        match = Send("lab", "POST", "/v1/match", "application/json",
                     R"({"pdq":")" + pdq + R"(","quality":100})");
        if (match.status == 200 && match.body.find(reference) != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      EXPECT_NE(match.body.find(R"("ref":")" + reference + R"(")"), std::string::npos)
          << match.body;
    }
    EXPECT_EQ(Send("", "GET", "/readyz").status, 200);
    EXPECT_NE(Send("operator", "GET", "/metrics").body.find(
                  "\nbantay_index_sync_failures_total 0\n"),
              std::string::npos);
  };
  const std::string a = ReferencePdq(kBridge);
  const std::string b = FlipBits(a, 80);
  const std::string c = FlipBits(a, 160);

  using Counts = std::map<std::string, uint64_t>;
  const uint64_t values = 3;  // the setup's entries
  EXPECT_EQ(values_by_key(), (Counts{{old_key.id, values}}));

  StopServer();
  config.extra_data_key_file = dir_.path() + "/missing.key";
  Result<std::unique_ptr<Server>> refused = Server::Start(config);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.error().message().starts_with("store.extra_data_key_file: "))
      << refused.error().ToString();
  config.extra_data_key_file = dir_.path() + "/new.key";
  StartServer();
  rekey({new_key, old_key});
  add(b, "sealed-by-the-server-with-the-old-key");
  expect_served({{a, "case-1"}, {b, "sealed-by-the-server-with-the-old-key"}});
  EXPECT_EQ(values_by_key(), (Counts{{new_key.id, values}, {old_key.id, 1}}));

  StopServer();
  config.data_key_file = dir_.path() + "/new.key";
  config.extra_data_key_file = dir_.path() + "/data.key";
  StartServer();
  add(c, "sealed-by-the-server-with-the-new-key");
  expect_served({{a, "case-1"}, {b, "sealed-by-the-server-with-the-old-key"},
                 {c, "sealed-by-the-server-with-the-new-key"}});
  rekey({new_key, old_key});
  EXPECT_EQ(values_by_key(), (Counts{{new_key.id, values + 2}}));

  StopServer();
  config.extra_data_key_file = "";
  StartServer();
  expect_served({{a, "case-1"}, {b, "sealed-by-the-server-with-the-old-key"},
                 {c, "sealed-by-the-server-with-the-new-key"}});
}

TEST_P(ApiTest, AdministrationAndMatchingAtTheSameTime) {
  StopServer();
  AddKey("reader", Role::kPlatform, 1e9, 1e9);
  StartServer();
  std::atomic<bool> stop{false};
  std::atomic<int> last_error_status{0};
  std::atomic<int> matched{0}, errors{0};
  const std::string known = ReferencePdq(kBridge);
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      std::unique_ptr<client::HttpClient> c = Client("reader");
      while (!stop.load()) {
        Result<HttpResponse> r =
            c->Send("POST", "/v1/match", "application/json", R"({"pdq":")" + known + R"("})");
        if (!r.ok() || r->status != 200) {
          last_error_status = r.ok() ? r->status : -1;
          ++errors;
          continue;
        }
        if (ParseJson(r->body).at("match").as_bool()) ++matched;
      }
    });
  }
  std::unique_ptr<client::HttpClient> op = Client("operator");
  for (int i = 0; i < 20; ++i) {
    const std::string value = FlipBits(FlipBits(known, 40), i + 1);
    Result<HttpResponse> added = op->Send(
        "POST", "/v1/lists/live/entries", "application/json",
        R"({"entries":[{"type":"pdq","value":")" + value +
            R"(","category":"c","reference":"live-)" + std::to_string(i) + R"("}]})");
    ASSERT_TRUE(added.ok());
    ASSERT_EQ(added->status, 201) << added->body;
    // Each addition matches as soon as it is answered.
    HttpResponse r = MatchPdq("lab", value, "?radius=0");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(ParseJson(r.body).at("matches").at(0).at("ref"),
              json::value("live-" + std::to_string(i)));
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0) << "last error status " << last_error_status.load();
  EXPECT_GT(matched.load(), 0);
}

}  // namespace
}  // namespace bantay::server::testing
