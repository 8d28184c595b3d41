// Stream sessions without a transport: the policy's parsing and bounds, and
// the exact frame and stream verdicts of given frame sequences.
#include "stream_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <boost/json.hpp>

namespace bantay::server {
namespace {

namespace json = boost::json;

// A hash whose first `bits` bits are set (at distance `bits` from zero).
models::Hash256 HashWithBits(int bits) {
  std::array<uint8_t, 32> bytes{};
  for (int k = 0; k < bits; ++k) bytes[k / 8] |= static_cast<uint8_t>(1u << (k % 8));
  return models::Hash256(bytes);
}

// The index of these tests: a hash "matches" when it has at least 200 bits
// set; the distance is 256 - bits (as if the listed hash were all ones).
std::vector<StreamMatch> FakeSearch(const models::Hash256& hash, int* searches) {
  ++*searches;
  const int bits = models::HammingDistance(hash, models::Hash256());
  if (bits < 200) return {};
  return {{"demo", "test", "case-" + std::to_string(bits / 10), 256 - bits}};
}

const models::Hash256 kClean = HashWithBits(0);   // no match
const models::Hash256 kListed = HashWithBits(250);  // match, distance 6

struct Frame {
  int64_t t;
  models::Hash256 hash;
  int quality = 100;
};

class StreamStateTest : public ::testing::Test {
 protected:
  // Runs the frames through a fresh state; returns "verdict/stream" for each
  // frame, in order.
  std::vector<std::string> Run(const StreamPolicy& policy, const std::vector<Frame>& frames,
                               bool lab = false) {
    state_.emplace("0123456789abcdef0123456789abcdef", policy, lab, 1'700'000'000'000);
    std::vector<std::string> out;
    verdict_events_.clear();
    frame_events_.clear();
    for (const Frame& f : frames) {
      uint64_t index = 0;
      FrameOutcome outcome;
      switch (state_->Arrive(f.t, std::nullopt, 1'700'000'000'000 + f.t, &index, &outcome)) {
        case StreamState::Arrival::kOutOfOrder:
          out.push_back("out_of_order");
          continue;
        case StreamState::Arrival::kNotSampled:
          break;
        case StreamState::Arrival::kSample:
          outcome = state_->Evaluate(
              index, f.t, std::nullopt, f.hash, f.quality,
              [&](const models::Hash256& h) { return FakeSearch(h, &searches_); },
              1'700'000'000'000 + f.t);
          break;
      }
      const json::value event = json::parse(outcome.frame_event);
      EXPECT_EQ(event.at("frame").to_number<uint64_t>(), index);
      frame_events_.push_back(event);
      out.push_back(std::string(event.at("verdict").as_string()) + "/" +
                    std::string(event.at("stream").as_string()));
      if (!outcome.verdict_event.empty()) verdict_events_.push_back(json::parse(outcome.verdict_event));
    }
    return out;
  }

  static StreamPolicy EveryFrame(int window, int k) {
    StreamPolicy policy;
    policy.sample_interval_ms = 0;
    policy.skip_distance = -1;
    policy.window = window;
    policy.k = k;
    return policy;
  }

  std::optional<StreamState> state_;
  int searches_ = 0;
  std::vector<json::value> frame_events_;
  std::vector<json::value> verdict_events_;
};

using Strings = std::vector<std::string>;

TEST_F(StreamStateTest, KOfNReachesMatchOnTheKthMatchInTheWindowAndLatches) {
  // Window 3, k 2: matches at 0 and 2 are within 3 frames -> match at 2.
  EXPECT_EQ(Run(EveryFrame(3, 2), {{0, kListed}, {1, kClean}, {2, kListed}, {3, kClean},
                                   {4, kClean}, {5, kClean}}),
            (Strings{"match/suspect", "no_match/suspect", "match/match", "no_match/match",
                     "no_match/match", "no_match/match"}));
  ASSERT_EQ(verdict_events_.size(), 2u);
  EXPECT_EQ(verdict_events_[0].at("stream"), "suspect");
  EXPECT_EQ(verdict_events_[0].at("previous"), "clean");
  EXPECT_EQ(verdict_events_[1].at("stream"), "match");
  EXPECT_EQ(verdict_events_[1].at("previous"), "suspect");
  EXPECT_EQ(verdict_events_[1].at("first_match_t"), 0);
  EXPECT_EQ(verdict_events_[1].at("last_match_t"), 2);
}

TEST_F(StreamStateTest, MatchesOneFrameTooFarApartStaySuspect) {
  // Window 3, k 2: matches at 0 and 3 are 4 frames apart: never 2 in the
  // window; the window forgets the first match at frame 3, not before.
  EXPECT_EQ(Run(EveryFrame(3, 2),
                {{0, kListed}, {1, kClean}, {2, kClean}, {3, kListed}, {4, kClean},
                 {5, kClean}, {6, kClean}}),
            (Strings{"match/suspect", "no_match/suspect", "no_match/suspect", "match/suspect",
                     "no_match/suspect", "no_match/suspect", "no_match/clean"}));
  ASSERT_EQ(verdict_events_.size(), 2u);
  EXPECT_EQ(verdict_events_[1].at("stream"), "clean");
  EXPECT_EQ(verdict_events_[1].at("previous"), "suspect");
  EXPECT_EQ(verdict_events_[1].at("first_match_t"), 0);
  EXPECT_EQ(verdict_events_[1].at("last_match_t"), 3);
}

TEST_F(StreamStateTest, SuspectGoesBackToCleanWhenTheMatchLeavesTheWindow) {
  EXPECT_EQ(Run(EveryFrame(2, 2), {{0, kClean}, {1, kListed}, {2, kClean}, {3, kClean}}),
            (Strings{"no_match/clean", "match/suspect", "no_match/suspect", "no_match/clean"}));
  ASSERT_EQ(verdict_events_.size(), 2u);
  const json::object& last = verdict_events_[1].as_object();
  EXPECT_EQ(last.at("stream"), "clean");
  EXPECT_EQ(last.at("previous"), "suspect");
  EXPECT_EQ(last.at("frames"),
            json::parse(R"({"received":4,"hashed":4,"matched":1,"skipped":0,)"
                        R"("low_quality":0,"not_sampled":0,"dropped":0,"errors":0})"));
  EXPECT_EQ(last.at("matches"), json::parse(R"([{"list":"demo","category":"test","ref":"case-25"}])"));
}

TEST_F(StreamStateTest, KEqualToOneMatchesAtOnce) {
  EXPECT_EQ(Run(EveryFrame(1, 1), {{0, kClean}, {1, kListed}, {2, kClean}}),
            (Strings{"no_match/clean", "match/match", "no_match/match"}));
  ASSERT_EQ(verdict_events_.size(), 1u);
  EXPECT_EQ(verdict_events_[0].at("previous"), "clean");
}

TEST_F(StreamStateTest, LowQualityFramesStayOutOfTheWindowAndAreNotSearched) {
  StreamPolicy policy = EveryFrame(2, 2);
  policy.quality_min = 50;
  // Quality 49 is low, 50 passes. The low-quality frame between two matches
  // does not push the first one out of a window of 2.
  EXPECT_EQ(Run(policy, {{0, kListed, 50}, {1, kClean, 49}, {2, kListed, 100}}),
            (Strings{"match/suspect", "low_quality/suspect", "match/match"}));
  EXPECT_EQ(searches_, 2);
  EXPECT_EQ(frame_events_[1].at("quality"), 49);
  EXPECT_EQ(state_->counters().low_quality, 1u);
  EXPECT_EQ(state_->counters().hashed, 3u);
}

TEST_F(StreamStateTest, SkipsWithinTheDistanceButNotOneBitFurther) {
  StreamPolicy policy = EveryFrame(10, 2);
  policy.skip_distance = 8;
  // From kListed (250 bits): 242 bits is at distance 8 (skipped, repeats the
  // match), 241 at distance 9 (searched again).
  EXPECT_EQ(Run(policy, {{0, kListed}, {1, HashWithBits(242)}, {2, HashWithBits(241)}}),
            (Strings{"match/suspect", "skipped/match", "match/match"}));
  EXPECT_EQ(searches_, 2);
  EXPECT_EQ(state_->counters().skipped, 1u);
  EXPECT_EQ(state_->counters().matched, 2u);
  // The skipped frame counts as a matching frame of the window.
  ASSERT_EQ(verdict_events_.size(), 2u);
  EXPECT_EQ(verdict_events_[1].at("last_match_t"), 1);
}

TEST_F(StreamStateTest, SkippingComparesWithTheLastSearchedFrameNotTheLastSkipped) {
  StreamPolicy policy = EveryFrame(10, 1);
  policy.skip_distance = 8;
  // A slow drift: 0 -> 5 -> 10 bits. 5 is skipped (5 from 0); 10 is 10 from
  // the last searched frame (0), so it is searched, though 5 from the last
  // skipped one.
  EXPECT_EQ(Run(policy, {{0, kClean}, {1, HashWithBits(5)}, {2, HashWithBits(10)}}),
            (Strings{"no_match/clean", "skipped/clean", "no_match/clean"}));
  EXPECT_EQ(searches_, 2);
}

TEST_F(StreamStateTest, SkipDistanceMinusOneSearchesEveryFrame) {
  StreamPolicy policy = EveryFrame(10, 1);
  policy.skip_distance = -1;
  EXPECT_EQ(Run(policy, {{0, kClean}, {1, kClean}, {2, kClean}}),
            (Strings{"no_match/clean", "no_match/clean", "no_match/clean"}));
  EXPECT_EQ(searches_, 3);
  policy.skip_distance = 0;
  searches_ = 0;
  EXPECT_EQ(Run(policy, {{0, kClean}, {1, kClean}, {2, HashWithBits(1)}}),
            (Strings{"no_match/clean", "skipped/clean", "no_match/clean"}));
  EXPECT_EQ(searches_, 2);
}

TEST_F(StreamStateTest, SamplesByStreamTimeAtTheIntervalBoundary) {
  StreamPolicy policy = EveryFrame(10, 2);
  policy.sample_interval_ms = 1000;
  // 999 ms after the last sampled frame: not sampled; 1000: sampled. The
  // interval counts from the last sampled frame (1000), not the last frame.
  EXPECT_EQ(Run(policy, {{0, kClean}, {999, kClean}, {1000, kClean}, {1999, kClean},
                         {2000, kClean}, {2000, kClean}}),
            (Strings{"no_match/clean", "not_sampled/clean", "no_match/clean",
                     "not_sampled/clean", "no_match/clean", "not_sampled/clean"}));
  EXPECT_EQ(searches_, 3);
  EXPECT_EQ(state_->counters().not_sampled, 3u);
  EXPECT_EQ(state_->counters().received, 6u);
  EXPECT_FALSE(frame_events_[1].as_object().contains("quality"));
}

TEST_F(StreamStateTest, FramesBeforeTheLastAcceptedTimeAreOutOfOrder) {
  StreamPolicy policy = EveryFrame(10, 2);
  // Equal times are in order; an earlier one is refused and not counted.
  EXPECT_EQ(Run(policy, {{100, kClean}, {100, kClean}, {99, kClean}, {101, kClean}}),
            (Strings{"no_match/clean", "no_match/clean", "out_of_order", "no_match/clean"}));
  EXPECT_EQ(state_->counters().received, 3u);
  EXPECT_EQ(frame_events_.back().at("frame"), 2);
}

TEST_F(StreamStateTest, DroppedAndFailedFramesAreCountedOutsideTheWindow) {
  StreamState state("id", EveryFrame(10, 1), false, 0);
  uint64_t frame = 0;
  FrameOutcome outcome;
  ASSERT_EQ(state.Arrive(5, 7u, 10, &frame, &outcome), StreamState::Arrival::kSample);
  outcome = state.Dropped(frame, 5, 7u, 11);
  EXPECT_EQ(json::parse(outcome.frame_event),
            json::parse(R"({"type":"frame","seq":7,"t":5,"frame":0,"verdict":"dropped",)"
                        R"("stream":"clean"})"));
  ASSERT_EQ(state.Arrive(6, 8u, 12, &frame, &outcome), StreamState::Arrival::kSample);
  outcome = state.Failed(frame, 6, 8u, Error(ErrorCode::kCorruptData, "bad JPEG"), 13);
  EXPECT_EQ(json::parse(outcome.frame_event),
            json::parse(R"({"type":"frame","seq":8,"t":6,"frame":1,"verdict":"error",)"
                        R"("stream":"clean","error":{"code":"corrupt_data","message":"bad JPEG"}})"));
  EXPECT_TRUE(outcome.verdict_event.empty());
  EXPECT_EQ(json::parse(state.StateJson()).at("frames"),
            json::parse(R"({"received":2,"hashed":0,"matched":0,"skipped":0,)"
                        R"("low_quality":0,"not_sampled":0,"dropped":1,"errors":1})"));
}

// A sampled frame that fails does not use up its sampling interval: the
// next frame is sampled, so that a damaged frame cannot hide the good one
// right after it (found by an audit: 3 failed frames, 3 good ones
// not_sampled, the stream clean).
TEST_F(StreamStateTest, AFailedFrameDoesNotUseUpItsSamplingInterval) {
  StreamPolicy policy = EveryFrame(10, 1);
  policy.sample_interval_ms = 1000;
  StreamState state("id", policy, false, 0);
  uint64_t frame = 0;
  FrameOutcome outcome;
  auto search = [](const models::Hash256&) { return std::vector<StreamMatch>{{"l", "c", "r", 0}}; };
  ASSERT_EQ(state.Arrive(0, std::nullopt, 1, &frame, &outcome), StreamState::Arrival::kSample);
  state.Evaluate(frame, 0, std::nullopt, models::Hash256(), 100, search, 2);
  // 1000: sampled, and fails; 1500 is sampled in its place.
  ASSERT_EQ(state.Arrive(1000, std::nullopt, 3, &frame, &outcome),
            StreamState::Arrival::kSample);
  state.Failed(frame, 1000, std::nullopt, Error(ErrorCode::kCorruptData, "bad JPEG"), 4);
  ASSERT_EQ(state.Arrive(1500, std::nullopt, 5, &frame, &outcome),
            StreamState::Arrival::kSample);
  state.Evaluate(frame, 1500, std::nullopt, models::Hash256(), 100, search, 6);
  // The interval now counts from 1500.
  EXPECT_EQ(state.Arrive(2499, std::nullopt, 7, &frame, &outcome),
            StreamState::Arrival::kNotSampled);
  ASSERT_EQ(state.Arrive(2500, std::nullopt, 8, &frame, &outcome),
            StreamState::Arrival::kSample);
  // A frame that fails after a later one was sampled gives nothing back:
  // 2500 is in flight, 3600 sampled, then 2500 fails; 4000 is not sampled.
  const uint64_t in_flight = frame;
  ASSERT_EQ(state.Arrive(3600, std::nullopt, 9, &frame, &outcome),
            StreamState::Arrival::kSample);
  state.Failed(in_flight, 2500, std::nullopt, Error(ErrorCode::kCorruptData, "bad JPEG"), 10);
  EXPECT_EQ(state.Arrive(4000, std::nullopt, 11, &frame, &outcome),
            StreamState::Arrival::kNotSampled);
  EXPECT_EQ(json::parse(state.StateJson()).at("frames"),
            json::parse(R"({"received":7,"hashed":2,"matched":2,"skipped":0,)"
                        R"("low_quality":0,"not_sampled":2,"dropped":0,"errors":2})"));
}

TEST_F(StreamStateTest, OnlyLabKeysSeeTheDistanceAndNeverAHash) {
  Run(EveryFrame(10, 1), {{0, kListed}}, /*lab=*/false);
  EXPECT_EQ(frame_events_[0],
            json::parse(R"({"type":"frame","t":0,"frame":0,"verdict":"match","quality":100,)"
                        R"("stream":"match"})"));
  Run(EveryFrame(10, 1), {{0, kListed}}, /*lab=*/true);
  EXPECT_EQ(frame_events_[0].at("distance"), 6);
  EXPECT_EQ(state_->StateJson().find(kListed.ToHex()), std::string::npos);
}

TEST_F(StreamStateTest, TheStateNamesAtMost32DistinctMatches) {
  StreamState state("id", EveryFrame(10, 1), false, 0);
  for (int i = 0; i < 40; ++i) {
    uint64_t frame = 0;
    FrameOutcome outcome;
    ASSERT_EQ(state.Arrive(i, std::nullopt, 0, &frame, &outcome), StreamState::Arrival::kSample);
    // Each frame finds its own reference, and "case-0" again.
    state.Evaluate(frame, i, std::nullopt, HashWithBits(i % 2 == 0 ? 0 : 256), 100,
                   [&](const models::Hash256&) {
                     return std::vector<StreamMatch>{{"demo", "test", "case-0", 0},
                                                     {"demo", "test", "ref-" + std::to_string(i), 0}};
                   },
                   0);
  }
  const json::value state_json = json::parse(state.StateJson());
  const json::array& matches = state_json.at("matches").as_array();
  ASSERT_EQ(matches.size(), 32u);
  EXPECT_EQ(matches[0].at("ref"), "case-0");
  EXPECT_EQ(matches[1].at("ref"), "ref-0");
  EXPECT_EQ(matches[31].at("ref"), "ref-30");
  EXPECT_EQ(state_json.at("frames").at("matched"), 40);
}

TEST_F(StreamStateTest, TheStateHasEveryMemberOfTheProtocol) {
  StreamPolicy policy = EveryFrame(10, 2);
  policy.label = "room-7";
  StreamState state("0123456789abcdef0123456789abcdef", policy, false, 1'700'000'000'123);
  EXPECT_EQ(json::parse(state.StateJson()),
            json::parse(R"({"type":"verdict","id":"0123456789abcdef0123456789abcdef",)"
                        R"("label":"room-7","stream":"clean","previous":"clean",)"
                        R"("first_match_t":null,"last_match_t":null,)"
                        R"("frames":{"received":0,"hashed":0,"matched":0,"skipped":0,)"
                        R"("low_quality":0,"not_sampled":0,"dropped":0,"errors":0},"matches":[],)"
                        R"("created_at":"2023-11-14T22:13:20.123Z",)"
                        R"("updated_at":"2023-11-14T22:13:20.123Z"})"));
}

// ---------------------------------------------------------------------------
// The policy

// As a lab key's policy (which may narrow the radius and lower quality_min).
Result<StreamPolicy> ParseLabPolicy(std::string_view body, int max_radius) {
  PolicyLimits limits;
  limits.max_radius = max_radius;
  limits.lab = true;
  return ParseStreamPolicy(body, limits);
}

TEST(StreamPolicyTest, AnEmptyBodyOrObjectGivesTheDefaults) {
  for (std::string_view body : {"", " \n", "{}"}) {
    Result<StreamPolicy> policy = ParseLabPolicy(body, 31);
    ASSERT_TRUE(policy.ok()) << policy.error().ToString();
    EXPECT_EQ(json::parse(StreamPolicyJson(*policy)),
              json::parse(R"({"sample_interval_ms":1000,"quality_min":50,"window":10,"k":2,)"
                          R"("skip_distance":8,"trim_borders":true,"dihedral":true,)"
                          R"("radius":31,"label":""})"));
  }
  // The default radius is the server's.
  EXPECT_EQ(ParseLabPolicy("{}", 20)->radius, 20);
}

// A key that is not a lab's gets the server's radius and at least its
// min_quality: a stream must not let it bisect the radius to learn a
// reference hash's distance, which /v1/match never tells it.
TEST(StreamPolicyTest, OnlyLabKeysNarrowTheRadiusOrLowerTheQualityGate) {
  PolicyLimits platform;
  platform.max_radius = 31;
  platform.min_quality = 60;
  Result<StreamPolicy> defaults = ParseStreamPolicy("{}", platform);
  ASSERT_TRUE(defaults.ok()) << defaults.error().ToString();
  EXPECT_EQ(defaults->radius, 31);
  EXPECT_EQ(defaults->quality_min, 60);  // the server's, by default
  Result<StreamPolicy> same = ParseStreamPolicy(R"({"radius":31,"quality_min":95})", platform);
  ASSERT_TRUE(same.ok()) << same.error().ToString();
  EXPECT_EQ(same->quality_min, 95);
  for (std::string_view body : {R"({"radius":30})", R"({"radius":0})"}) {
    Result<StreamPolicy> policy = ParseStreamPolicy(body, platform);
    ASSERT_FALSE(policy.ok()) << body;
    EXPECT_EQ(policy.error().code(), ErrorCode::kPermissionDenied);
    EXPECT_EQ(policy.error().message(), "only lab keys may set the radius");
  }
  for (std::string_view body : {R"({"quality_min":59})", R"({"quality_min":0})"}) {
    Result<StreamPolicy> policy = ParseStreamPolicy(body, platform);
    ASSERT_FALSE(policy.ok()) << body;
    EXPECT_EQ(policy.error().code(), ErrorCode::kPermissionDenied);
    EXPECT_EQ(policy.error().message(), "only lab keys may set quality_min under the server's (60)");
  }
  // Out of bounds is still a bad request, whoever asks.
  Result<StreamPolicy> over = ParseStreamPolicy(R"({"radius":32})", platform);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code(), ErrorCode::kInvalidArgument);
  PolicyLimits lab = platform;
  lab.lab = true;
  Result<StreamPolicy> narrowed = ParseStreamPolicy(R"({"radius":4,"quality_min":0})", lab);
  ASSERT_TRUE(narrowed.ok()) << narrowed.error().ToString();
  EXPECT_EQ(narrowed->radius, 4);
  EXPECT_EQ(narrowed->quality_min, 0);
}

TEST(StreamPolicyTest, EveryMemberIsRead) {
  Result<StreamPolicy> policy = ParseLabPolicy(
      R"({"sample_interval_ms":0,"quality_min":0,"window":1,"k":1,"skip_distance":-1,)"
      R"("trim_borders":false,"dihedral":false,"radius":0,"label":"x"})",
      31);
  ASSERT_TRUE(policy.ok()) << policy.error().ToString();
  EXPECT_EQ(json::parse(StreamPolicyJson(*policy)),
            json::parse(R"({"sample_interval_ms":0,"quality_min":0,"window":1,"k":1,)"
                        R"("skip_distance":-1,"trim_borders":false,"dihedral":false,)"
                        R"("radius":0,"label":"x"})"));
}

TEST(StreamPolicyTest, BoundsAreCheckedAndTheMemberNamed) {
  struct Case {
    std::string_view body;
    std::string_view message;
  };
  const Case cases[] = {
      {R"({"sample_interval_ms":-1})", "sample_interval_ms must be an integer 0..3600000"},
      {R"({"sample_interval_ms":3600001})", "sample_interval_ms must be an integer 0..3600000"},
      {R"({"quality_min":101})", "quality_min must be an integer 0..100"},
      {R"({"quality_min":"50"})", "quality_min must be an integer 0..100"},
      {R"({"quality_min":50.5})", "quality_min must be an integer 0..100"},
      // Doubles beyond int64_t (found by request_body_fuzz: converting one
      // was undefined behaviour).
      {R"({"radius":20e99})", "radius must be an integer 0..31"},
      {R"({"sample_interval_ms":-1e300})", "sample_interval_ms must be an integer 0..3600000"},
      {R"({"window":9.3e18})", "window must be an integer 1..100"},
      {R"({"window":0})", "window must be an integer 1..100"},
      {R"({"window":101})", "window must be an integer 1..100"},
      {R"({"window":3,"k":4})", "k must be an integer 1..window (3)"},
      {R"({"k":0})", "k must be an integer 1..window (10)"},
      {R"({"window":1})", "k must be an integer 1..window (1); give k with so small a window"},
      {R"({"skip_distance":-2})", "skip_distance must be an integer -1..256"},
      {R"({"radius":32})", "radius must be an integer 0..31"},
      {R"({"dihedral":1})", "dihedral must be true or false"},
      {R"({"trim_borders":"yes"})", "trim_borders must be true or false"},
      {R"({"label":7})", "label must be a string of at most 128 bytes"},
      {R"({"windw":3})", "unknown member \"windw\""},
      {R"({"window":3,"window":4})", "the body names the member \"window\" twice"},
      {R"([1])", "the policy must be a JSON object"},
  };
  for (const Case& c : cases) {
    Result<StreamPolicy> policy = ParseLabPolicy(c.body, 31);
    ASSERT_FALSE(policy.ok()) << c.body;
    EXPECT_EQ(policy.error().code(), ErrorCode::kInvalidArgument) << c.body;
    EXPECT_EQ(policy.error().message(), c.message) << c.body;
  }
  EXPECT_FALSE(ParseLabPolicy("{", 31).ok());
  EXPECT_TRUE(ParseLabPolicy(R"({"label":")" + std::string(128, 'a') + R"("})", 31).ok());
  EXPECT_FALSE(ParseLabPolicy(R"({"label":")" + std::string(129, 'a') + R"("})", 31).ok());
  EXPECT_TRUE(ParseLabPolicy(R"({"window":100,"k":100,"skip_distance":256})", 31).ok());
  // An integer written as a double, and minus zero, are integers.
  Result<StreamPolicy> doubles =
      ParseLabPolicy(R"({"sample_interval_ms":1.5e3,"window":-0.0e0,"radius":2e1})", 31);
  ASSERT_FALSE(doubles.ok());
  EXPECT_EQ(doubles.error().message(), "window must be an integer 1..100");
  doubles = ParseLabPolicy(R"({"sample_interval_ms":1.5e3,"skip_distance":-0.0,"radius":2e1})", 31);
  ASSERT_TRUE(doubles.ok()) << doubles.error().ToString();
  EXPECT_EQ(doubles->sample_interval_ms, 1500);
  EXPECT_EQ(doubles->skip_distance, 0);
  EXPECT_EQ(doubles->radius, 20);
}

TEST(StreamPolicyTest, Rfc3339) {
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(Rfc3339(1'700'000'000'007), "2023-11-14T22:13:20.007Z");
}

}  // namespace
}  // namespace bantay::server
