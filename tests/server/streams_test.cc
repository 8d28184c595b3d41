// The stream registry's frame pipeline with a real compute pool whose only
// thread is held, so that what waits, what is dropped and what runs is
// exact; and its limits and ownership.
#include "streams.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "compute_pool.h"
#include "index_service.h"
#include "metrics.h"
#include "test_images.h"

namespace bantay::server {
namespace {

namespace json = boost::json;

class StreamsTest : public ::testing::Test {
 protected:
  StreamsTest() {
    platform_.id = "platform";
    platform_.role = Role::kPlatform;
    lab_.id = "lab";
    lab_.role = Role::kLab;
  }

  // A failed assertion must not leave the pool's thread held (its
  // destructor would wait for it).
  ~StreamsTest() override { Release(); }

  // Holds the pool's thread until Release; returns once it runs the held
  // job (so the queue is empty).
  void Hold() {
    std::promise<void> started;
    ASSERT_TRUE(pool_.TrySubmit([this, &started] {
      started.set_value();
      release_.get_future().wait();
    }));
    started.get_future().wait();
  }
  void Release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
  }

  StreamFrame HashFrame(int64_t t, uint32_t seq) {
    StreamFrame frame;
    frame.kind = StreamFrame::Kind::kHash;
    frame.t_ms = t;
    frame.seq = seq;
    return frame;
  }

  ServerConfig config_;
  Metrics metrics_;
  // Never started: frames that reach the search find no index (an "error"
  // frame event, "unavailable").
  IndexService index_{config_, &metrics_};
  ComputePool pool_{1, 2};
  StreamRegistry registry_{config_, &index_, &pool_, &metrics_};
  ApiKeyConfig platform_;
  ApiKeyConfig lab_;
  std::promise<void> release_;
  bool released_ = false;
};

TEST_F(StreamsTest, AFrameArrivingWhenTwoAreHeldReplacesTheWaitingOne) {
  StreamPolicy policy;
  policy.sample_interval_ms = 0;
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> stream = registry_.Create(platform_, policy, &error);
  ASSERT_NE(stream, nullptr);
  Hold();
  std::vector<FrameResult> results(4);
  std::vector<std::promise<void>> done(4);
  for (uint32_t i = 0; i < 4; ++i) {
    registry_.Submit(stream, platform_, HashFrame(i * 10, i), [&, i](FrameResult result) {
      results[i] = std::move(result);
      done[i].set_value();
    });
  }
  // 0 is in the pool (behind the held job), 3 waits; 1 and 2 were dropped,
  // each when the next one came.
  using namespace std::chrono_literals;
  ASSERT_EQ(done[1].get_future().wait_for(0s), std::future_status::ready);
  ASSERT_EQ(done[2].get_future().wait_for(0s), std::future_status::ready);
  auto first = done[0].get_future();
  auto last = done[3].get_future();
  EXPECT_EQ(first.wait_for(50ms), std::future_status::timeout);
  EXPECT_EQ(last.wait_for(0s), std::future_status::timeout);
  EXPECT_EQ(json::parse(results[1].outcome.frame_event),
            json::parse(R"({"type":"frame","seq":1,"t":10,"frame":1,"verdict":"dropped",)"
                        R"("stream":"clean"})"));
  EXPECT_FALSE(results[1].error.has_value());
  EXPECT_EQ(json::parse(results[2].outcome.frame_event).at("frame"), 2);
  Release();
  ASSERT_EQ(first.wait_for(10s), std::future_status::ready);
  ASSERT_EQ(last.wait_for(10s), std::future_status::ready);
  for (int i : {0, 3}) {
    EXPECT_EQ(results[i].outcome.verdict, FrameVerdict::kError);
    ASSERT_TRUE(results[i].error.has_value());
    EXPECT_EQ(results[i].error_code, "unavailable");
  }
  EXPECT_EQ(json::parse(stream->StateJson()).at("frames"),
            json::parse(R"({"received":4,"hashed":0,"matched":0,"skipped":0,)"
                        R"("low_quality":0,"not_sampled":0,"dropped":2,"errors":2})"));
}

TEST_F(StreamsTest, AFullComputeQueueAnswersUnavailableAndCountsTheFrameDropped) {
  StreamPolicy policy;
  policy.sample_interval_ms = 0;
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> stream = registry_.Create(platform_, policy, &error);
  Hold();
  // Fill the queue (2) behind the held job.
  ASSERT_TRUE(pool_.TrySubmit([] {}));
  ASSERT_TRUE(pool_.TrySubmit([] {}));
  FrameResult result;
  bool called = false;
  registry_.Submit(stream, platform_, HashFrame(0, 9), [&](FrameResult r) {
    result = std::move(r);
    called = true;
  });
  ASSERT_TRUE(called);
  ASSERT_TRUE(result.error.has_value());
  EXPECT_EQ(result.error_code, "unavailable");
  EXPECT_EQ(result.outcome.verdict, FrameVerdict::kDropped);
  Release();
  while (pool_.depth() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // The next frame goes through.
  std::promise<FrameResult> next;
  registry_.Submit(stream, platform_, HashFrame(1, 10),
                   [&](FrameResult r) { next.set_value(std::move(r)); });
  EXPECT_EQ(next.get_future().get().outcome.verdict, FrameVerdict::kError);
}

TEST_F(StreamsTest, LimitsOwnershipAndRemoval) {
  config_.streams_max_per_key = 2;
  config_.streams_max_total = 3;
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> a = registry_.Create(platform_, {}, &error);
  std::shared_ptr<Stream> b = registry_.Create(platform_, {}, &error);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(a->id().size(), 32u);
  EXPECT_EQ(registry_.Create(platform_, {}, &error), nullptr);
  EXPECT_EQ(error, StreamRegistry::CreateError::kTooManyForKey);
  ASSERT_NE(registry_.Create(lab_, {}, &error), nullptr);
  EXPECT_EQ(registry_.Create(lab_, {}, &error), nullptr);
  EXPECT_EQ(error, StreamRegistry::CreateError::kTooManyInAll);
  EXPECT_EQ(registry_.Find(a->id(), lab_), nullptr);
  EXPECT_EQ(registry_.Remove(a->id(), lab_), nullptr);
  EXPECT_EQ(registry_.Find(a->id(), platform_), a);

  using Reason = Stream::CloseReason;
  std::vector<Reason> first, second;
  const uint64_t one =
      a->SetListeners([](std::string) {}, [&](Reason r) { first.push_back(r); });
  ASSERT_NE(one, 0u);
  // A second pair takes over: the first is told, once.
  const uint64_t two =
      a->SetListeners([](std::string) {}, [&](Reason r) { second.push_back(r); });
  ASSERT_NE(two, 0u);
  EXPECT_NE(two, one);
  EXPECT_EQ(first, std::vector<Reason>{Reason::kReplaced});
  // The replaced listeners' end does not remove their successor.
  a->ClearListeners(one);
  EXPECT_EQ(registry_.Remove(a->id(), platform_), a);
  EXPECT_EQ(first, std::vector<Reason>{Reason::kReplaced});
  EXPECT_EQ(second, std::vector<Reason>{Reason::kEnded});
  EXPECT_EQ(registry_.Find(a->id(), platform_), nullptr);
  EXPECT_EQ(a->SetListeners([](std::string) {}, [](Reason) {}), 0u);
  EXPECT_EQ(registry_.active(), 2u);
  ASSERT_NE(registry_.Create(platform_, {}, &error), nullptr);
  EXPECT_EQ(registry_.active(), 3u);
  EXPECT_EQ(registry_.Sweep(), 0u);  // nothing idle for a minute
  registry_.CloseAll();
  EXPECT_EQ(registry_.active(), 0u);
}

// Holds a pool's only thread from construction until Release (or the
// end of the scope): jobs submitted meanwhile wait in its queue.
class PoolHold {
 public:
  explicit PoolHold(ComputePool& pool) {
    // The held job owns what it uses: it may still be returning from its
    // wait after this object is gone.
    auto started = std::make_shared<std::promise<void>>();
    std::future<void> running = started->get_future();
    std::shared_future<void> released = release_.get_future().share();
    EXPECT_TRUE(pool.TrySubmit([started, released] {
      started->set_value();
      released.wait();
    }));
    running.wait();
  }
  ~PoolHold() { Release(); }
  void Release() {
    if (released_) return;
    released_ = true;
    release_.set_value();
  }

 private:
  std::promise<void> release_;
  bool released_ = false;
};

// A registry whose index holds one PDQ entry (a SQLite store), so that a
// frame of that hash matches and changes the stream's verdict.
class StreamsWithIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    platform_.id = "platform";
    platform_.role = Role::kPlatform;
    const std::string& dir = dir_.path();
    const matcher::DataKey data_key = matcher::GenerateDataKey();
    ASSERT_TRUE(matcher::WriteDataKeyFile(dir + "/data.key", data_key).ok());
    matcher::SigningKey signer = matcher::SigningKey::Generate();
    ASSERT_TRUE(matcher::WriteSecretFile(dir + "/signing.pem", signer.ToPem()).ok());
    matcher::StoreKeys keys;
    keys.data_keys = {data_key};
    keys.signing_key = std::move(signer);
    config_.store_url = "sqlite:" + dir + "/store.db";
    config_.data_key_file = dir + "/data.key";
    config_.signing_key_file = dir + "/signing.pem";
    Result<std::unique_ptr<matcher::Store>> store =
        matcher::Store::Init(config_.store_url, std::move(keys), {"setup", "test"});
    ASSERT_TRUE(store.ok()) << store.error().ToString();
    known_.fill(0x5a);
    matcher::NewEntry entry;
    entry.list = "demo";
    entry.type = matcher::SignalType::kPdq;
    entry.value = known_;
    entry.category = "test";
    ASSERT_TRUE((*store)->AddEntries({entry}, {"setup", "test"}).ok());
    index_ = std::make_unique<IndexService>(config_, &metrics_);
    Status started = index_->Start();
    ASSERT_TRUE(started.ok()) << started.error().ToString();
    for (int i = 0; i < 3000 && !index_->ready(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(index_->ready());
    registry_ = std::make_unique<StreamRegistry>(config_, index_.get(), &pool_, &metrics_);
  }

  // Every frame sampled; one match makes the stream's verdict "match".
  static StreamPolicy MatchOnOneFrame() {
    StreamPolicy policy;
    policy.sample_interval_ms = 0;
    policy.window = 1;
    policy.k = 1;
    return policy;
  }
  // A hash frame of the entry's hash.
  StreamFrame KnownFrame() const {
    StreamFrame frame;
    frame.kind = StreamFrame::Kind::kHash;
    frame.pdq = models::Hash256(known_);
    return frame;
  }

  // A session deleted while one of its frames waits in the pool: the frame is
  // answered not_found and not counted (the session keeps the state DELETE
  // answered), and the end is told once that frame's turn is over, or when
  // the pool drops the frame unrun (`dropped`: shutdown).
  void EndWhileAFrameWaits(bool dropped) {
    StreamRegistry& registry = *registry_;
    const ApiKeyConfig& platform = platform_;
    StreamRegistry::CreateError error;
    std::shared_ptr<Stream> stream = registry.Create(platform, MatchOnOneFrame(), &error);
    ASSERT_NE(stream, nullptr);
    std::mutex mu;
    std::vector<std::string> events;
    std::promise<void> first, second;
    registry.SetVerdictHook([&](const ApiKeyConfig&, const std::string& event) {
      size_t n = 0;
      {
        std::lock_guard lock(mu);
        events.push_back(event);
        n = events.size();
      }
      if (n == 1) first.set_value();
      if (n == 2) second.set_value();
    });
    registry.Submit(stream, platform, KnownFrame(), [](FrameResult) {});
    ASSERT_EQ(first.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
    std::promise<FrameResult> answer;
    std::string at_delete;
    {
      PoolHold hold(pool_);
      StreamFrame waiting_frame = KnownFrame();
      waiting_frame.t_ms = 1000;
      registry.Submit(stream, platform, std::move(waiting_frame),
                      [&](FrameResult result) { answer.set_value(std::move(result)); });
      at_delete = stream->StateJson();
      ASSERT_EQ(registry.Remove(stream->id(), platform), stream);
      {
        std::lock_guard lock(mu);
        EXPECT_EQ(events.size(), 1u);  // not before the frame's turn is over
      }
      if (dropped) pool_.DropQueued();
      hold.Release();
      ASSERT_EQ(second.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
    }
    auto answered = answer.get_future();
    if (dropped) {
      EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
    } else {
      ASSERT_EQ(answered.wait_for(std::chrono::seconds(30)), std::future_status::ready);
      const FrameResult result = answered.get();
      ASSERT_TRUE(result.error.has_value());
      EXPECT_EQ(result.error_code, "not_found");
    }
    std::lock_guard lock(mu);
    const json::value ended = json::parse(events[1]);
    EXPECT_EQ(ended.at("reason"), "deleted");
    EXPECT_EQ(ended.at("frames").at("received"), 2);
    EXPECT_EQ(ended.at("frames").at("hashed"), 1);
    EXPECT_EQ(ended.at("frames"), json::parse(at_delete).at("frames"));
    EXPECT_EQ(json::parse(stream->StateJson()).at("frames"), ended.at("frames"));
  }

  bantay::testing::TempDir dir_;
  ServerConfig config_;
  Metrics metrics_;
  std::unique_ptr<IndexService> index_;
  std::unique_ptr<StreamRegistry> registry_;
  ComputePool pool_{1, 2};  // destroyed first: its jobs use the registry
  ApiKeyConfig platform_;
  std::array<uint8_t, 32> known_{};
};

// A second socket that takes over while a frame that changes the verdict is
// answered (here: from the frame's own answer, which runs between the
// verdict listener being taken and called) gets the verdict event: the
// first one's close was queued before that event, so it would be lost.
TEST_F(StreamsWithIndexTest, AVerdictReachesListenersThatTookOverWhileItWasAnswered) {
  using Reason = Stream::CloseReason;
  StreamPolicy policy;
  policy.sample_interval_ms = 0;
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> stream = registry_->Create(platform_, policy, &error);
  ASSERT_NE(stream, nullptr);
  std::mutex mu;
  std::vector<std::string> log;
  std::string second_event;
  auto record = [&](std::string entry) {
    std::lock_guard lock(mu);
    log.push_back(std::move(entry));
  };
  ASSERT_NE(stream->SetListeners([&](std::string) { record("1:verdict"); },
                                 [&](Reason) { record("1:close"); }),
            0u);
  std::promise<void> hooked;
  registry_->SetVerdictHook([&](const ApiKeyConfig&, const std::string&) { hooked.set_value(); });
  StreamFrame frame = KnownFrame();
  frame.seq = 1;
  FrameVerdict verdict = FrameVerdict::kError;
  registry_->Submit(stream, platform_, std::move(frame), [&](FrameResult result) {
    verdict = result.outcome.verdict;
    stream->SetListeners(
        [&](std::string event) {
          record("2:verdict");
          std::lock_guard lock(mu);
          second_event = std::move(event);
        },
        [&](Reason) { record("2:close"); });
  });
  ASSERT_EQ(hooked.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(verdict, FrameVerdict::kMatch);
  std::lock_guard lock(mu);
  EXPECT_EQ(log, (std::vector<std::string>{"1:close", "1:verdict", "2:verdict"}));
  ASSERT_FALSE(second_event.empty());
  const json::value event = json::parse(second_event);
  EXPECT_EQ(event.at("type"), "verdict");
  EXPECT_EQ(event.at("stream"), "suspect");
  EXPECT_EQ(event.at("previous"), "clean");
}

// The hook hears of a session's end (here: the server shutting down) only
// when its verdict changed; the "ended" event holds the final state.
TEST_F(StreamsWithIndexTest, TheEndOfASessionIsToldWhenItsVerdictChanged) {
  const StreamPolicy policy = MatchOnOneFrame();
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> clean = registry_->Create(platform_, policy, &error);
  std::shared_ptr<Stream> matched = registry_->Create(platform_, policy, &error);
  ASSERT_NE(clean, nullptr);
  ASSERT_NE(matched, nullptr);
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> events;  // key id, event
  std::promise<void> verdict, end;
  registry_->SetVerdictHook([&](const ApiKeyConfig& key, const std::string& event) {
    size_t n = 0;
    {
      std::lock_guard lock(mu);
      events.emplace_back(key.id, event);
      n = events.size();
    }
    if (n == 1) verdict.set_value();
    if (n == 2) end.set_value();
  });
  StreamFrame frame = KnownFrame();
  registry_->Submit(matched, platform_, std::move(frame), [](FrameResult) {});
  ASSERT_EQ(verdict.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const std::string final_state = matched->StateJson();
  registry_->CloseAll();
  // Told at once, or (when the frame's turn in the pool is not over yet)
  // when it is.
  ASSERT_EQ(end.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  std::lock_guard lock(mu);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].first, "platform");
  json::object ended = json::parse(events[1].second).as_object();
  json::object expected = json::parse(final_state).as_object();
  EXPECT_EQ(expected.at("stream"), "match");
  expected.erase("previous");
  expected["type"] = "ended";
  expected["reason"] = "shutdown";
  EXPECT_EQ(ended, expected);
  EXPECT_EQ(json::parse(events[0].second).at("type"), "verdict");
}

// A session that ends while a frame that changes its verdict is answered
// (here: deleted from the frame's own answer) tells its end after that
// verdict, not before.
TEST_F(StreamsWithIndexTest, TheEndOfASessionIsToldAfterTheVerdictOfAFrameInThePool) {
  const StreamPolicy policy = MatchOnOneFrame();
  StreamRegistry::CreateError error;
  std::shared_ptr<Stream> stream = registry_->Create(platform_, policy, &error);
  ASSERT_NE(stream, nullptr);
  std::mutex mu;
  std::vector<std::string> types;
  std::promise<void> both;
  registry_->SetVerdictHook([&](const ApiKeyConfig&, const std::string& event) {
    const json::value parsed = json::parse(event);
    size_t n = 0;
    {
      std::lock_guard lock(mu);
      types.push_back(std::string(parsed.at("type").as_string()) +
                      (parsed.as_object().contains("reason")
                           ? ":" + std::string(parsed.at("reason").as_string())
                           : ""));
      n = types.size();
    }
    if (n == 2) both.set_value();
  });
  StreamFrame frame = KnownFrame();
  registry_->Submit(stream, platform_, std::move(frame), [&](FrameResult result) {
    EXPECT_EQ(result.outcome.verdict, FrameVerdict::kMatch);
    EXPECT_EQ(registry_->Remove(stream->id(), platform_), stream);
  });
  ASSERT_EQ(both.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  std::lock_guard lock(mu);
  EXPECT_EQ(types, (std::vector<std::string>{"verdict", "ended:deleted"}));
}

TEST_F(StreamsWithIndexTest, AFrameOfASessionEndedWhileItWaitedIsNotCounted) {
  EndWhileAFrameWaits(/*dropped=*/false);
}

TEST_F(StreamsWithIndexTest, AnEndDeferredBehindAFrameDroppedUnrunIsTold) {
  EndWhileAFrameWaits(/*dropped=*/true);
}

}  // namespace
}  // namespace bantay::server
