#include "stream_session.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <utility>

#include <boost/json.hpp>

#include "strict_json.h"

namespace bantay::server {

namespace json = boost::json;

namespace {

Error Invalid(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

// An integer member within [low, high]; *out unchanged when absent.
template <typename T>
Status ReadInteger(const json::object& object, std::string_view name, int64_t low, int64_t high,
                   T* out) {
  const json::value* value = object.if_contains(name);
  if (value == nullptr) return {};
  auto bounds = [&] {
    return Invalid(std::string(name) + " must be an integer " + std::to_string(low) + ".." +
                   std::to_string(high));
  };
  int64_t number = 0;
  if (value->is_int64()) {
    number = value->as_int64();
  } else if (value->is_uint64()) {
    return bounds();
  } else if (value->is_double()) {
    // 1e3 is an integer written as a double; 1.5 is not. The bounds are
    // checked on the double first: converting one outside int64_t's range
    // (2e99) is undefined.
    const double d = value->as_double();
    if (!(d >= static_cast<double>(low) && d <= static_cast<double>(high)) || d != std::trunc(d)) {
      return bounds();
    }
    number = static_cast<int64_t>(d);
  } else {
    return bounds();
  }
  if (number < low || number > high) return bounds();
  *out = static_cast<T>(number);
  return {};
}

Status ReadBool(const json::object& object, std::string_view name, bool* out) {
  const json::value* value = object.if_contains(name);
  if (value == nullptr) return {};
  if (!value->is_bool()) return Invalid(std::string(name) + " must be true or false");
  *out = value->as_bool();
  return {};
}

}  // namespace

Result<StreamPolicy> ParseStreamPolicy(std::string_view body, const PolicyLimits& limits) {
  const int max_radius = limits.max_radius;
  StreamPolicy policy;
  policy.radius = max_radius;
  policy.quality_min = limits.min_quality;
  const bool blank = std::all_of(body.begin(), body.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  });
  if (blank) return policy;
  Result<json::value> value = ParseJson(body, "the body");
  if (!value.ok()) return value.error();
  if (!value->is_object()) return Invalid("the policy must be a JSON object");
  const json::object& object = value->as_object();
  static constexpr std::string_view kKnown[] = {
      "sample_interval_ms", "quality_min", "window", "k",     "skip_distance",
      "trim_borders",       "dihedral",    "radius", "label"};
  for (const auto& member : object) {
    if (std::find(std::begin(kKnown), std::end(kKnown), member.key()) == std::end(kKnown)) {
      return Invalid("unknown member \"" + std::string(member.key()) + "\"");
    }
  }
  Status status;
  if (status = ReadInteger(object, "sample_interval_ms", 0, StreamPolicy::kMaxSampleIntervalMs,
                           &policy.sample_interval_ms);
      !status.ok()) {
    return status.error();
  }
  if (status = ReadInteger(object, "quality_min", 0, 100, &policy.quality_min); !status.ok()) {
    return status.error();
  }
  if (!limits.lab && policy.quality_min < limits.min_quality) {
    return Error(ErrorCode::kPermissionDenied,
                 "only lab keys may set quality_min under the server's (" +
                     std::to_string(limits.min_quality) + ")");
  }
  if (status = ReadInteger(object, "window", 1, StreamPolicy::kMaxWindow, &policy.window);
      !status.ok()) {
    return status.error();
  }
  if (status = ReadInteger(object, "k", 1, policy.window, &policy.k); !status.ok()) {
    return Invalid("k must be an integer 1..window (" + std::to_string(policy.window) + ")");
  }
  if (!object.contains("k") && policy.k > policy.window) {
    // The default k (2) with a window of 1.
    return Invalid("k must be an integer 1..window (" + std::to_string(policy.window) +
                   "); give k with so small a window");
  }
  if (status = ReadInteger(object, "skip_distance", -1, 256, &policy.skip_distance);
      !status.ok()) {
    return status.error();
  }
  if (status = ReadBool(object, "trim_borders", &policy.trim_borders); !status.ok()) {
    return status.error();
  }
  if (status = ReadBool(object, "dihedral", &policy.dihedral); !status.ok()) {
    return status.error();
  }
  if (status = ReadInteger(object, "radius", 0, max_radius, &policy.radius); !status.ok()) {
    return status.error();
  }
  if (!limits.lab && policy.radius != max_radius) {
    return Error(ErrorCode::kPermissionDenied, "only lab keys may set the radius");
  }
  if (const json::value* label = object.if_contains("label")) {
    if (!label->is_string() || label->as_string().size() > StreamPolicy::kMaxLabelBytes) {
      return Invalid("label must be a string of at most " +
                     std::to_string(StreamPolicy::kMaxLabelBytes) + " bytes");
    }
    policy.label = std::string(label->as_string());
  }
  return policy;
}

namespace {

json::object PolicyObject(const StreamPolicy& policy) {
  return {{"sample_interval_ms", policy.sample_interval_ms},
          {"quality_min", policy.quality_min},
          {"window", policy.window},
          {"k", policy.k},
          {"skip_distance", policy.skip_distance},
          {"trim_borders", policy.trim_borders},
          {"dihedral", policy.dihedral},
          {"radius", policy.radius},
          {"label", policy.label}};
}

}  // namespace

std::string StreamPolicyJson(const StreamPolicy& policy) {
  return json::serialize(PolicyObject(policy));
}

std::string_view FrameVerdictName(FrameVerdict verdict) {
  switch (verdict) {
    case FrameVerdict::kMatch: return "match";
    case FrameVerdict::kNoMatch: return "no_match";
    case FrameVerdict::kSkipped: return "skipped";
    case FrameVerdict::kLowQuality: return "low_quality";
    case FrameVerdict::kNotSampled: return "not_sampled";
    case FrameVerdict::kDropped: return "dropped";
    case FrameVerdict::kError: return "error";
  }
  return "error";
}

std::string_view StreamVerdictName(StreamVerdict verdict) {
  switch (verdict) {
    case StreamVerdict::kClean: return "clean";
    case StreamVerdict::kSuspect: return "suspect";
    case StreamVerdict::kMatch: return "match";
  }
  return "clean";
}

std::string Rfc3339(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[40];
  const size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03dZ", static_cast<int>(unix_ms % 1000));
  return std::string(text, n) + millis;
}

StreamState::StreamState(std::string id, StreamPolicy policy, bool lab, int64_t created_unix_ms)
    : id_(std::move(id)),
      policy_(std::move(policy)),
      lab_(lab),
      created_unix_ms_(created_unix_ms),
      updated_unix_ms_(created_unix_ms) {}

StreamState::Arrival StreamState::Arrive(int64_t t_ms, std::optional<uint32_t> seq,
                                         int64_t now_unix_ms, uint64_t* frame,
                                         FrameOutcome* outcome) {
  if (last_t_ && t_ms < *last_t_) return Arrival::kOutOfOrder;
  last_t_ = t_ms;
  *frame = counters_.received++;
  updated_unix_ms_ = now_unix_ms;
  if (last_sampled_t_ && t_ms - *last_sampled_t_ < policy_.sample_interval_ms) {
    ++counters_.not_sampled;
    outcome->verdict = FrameVerdict::kNotSampled;
    outcome->frame_event = FrameEvent(FrameVerdict::kNotSampled, *frame, t_ms, seq,
                                      std::nullopt, std::nullopt, nullptr);
    outcome->verdict_event.clear();
    return Arrival::kNotSampled;
  }
  before_last_sampled_t_ = last_sampled_t_;
  last_sampled_t_ = t_ms;
  return Arrival::kSample;
}

void StreamState::Push(bool matched, int64_t t_ms) {
  window_.push_back(matched);
  window_matches_ += matched ? 1 : 0;
  while (window_.size() > static_cast<size_t>(policy_.window)) {
    window_matches_ -= window_.front() ? 1 : 0;
    window_.pop_front();
  }
  if (matched) {
    if (!first_match_t_) first_match_t_ = t_ms;
    last_match_t_ = t_ms;
  }
  StreamVerdict next;
  if (verdict_ == StreamVerdict::kMatch || window_matches_ >= policy_.k) {
    next = StreamVerdict::kMatch;
  } else if (window_matches_ > 0) {
    next = StreamVerdict::kSuspect;
  } else {
    next = StreamVerdict::kClean;
  }
  if (next != verdict_) {
    previous_ = verdict_;
    verdict_ = next;
  }
}

FrameOutcome StreamState::Evaluate(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                                   const models::Hash256& hash, int quality,
                                   const StreamSearch& search, int64_t now_unix_ms) {
  FrameOutcome outcome;
  updated_unix_ms_ = now_unix_ms;
  ++counters_.hashed;
  const StreamVerdict before = verdict_;
  std::optional<int> distance;
  if (quality < policy_.quality_min) {
    ++counters_.low_quality;
    outcome.verdict = FrameVerdict::kLowQuality;
  } else if (policy_.skip_distance >= 0 && last_hash_ &&
             models::HammingDistance(hash, *last_hash_) <= policy_.skip_distance) {
    ++counters_.skipped;
    outcome.verdict = FrameVerdict::kSkipped;
    Push(last_matched_, t_ms);
  } else {
    std::vector<StreamMatch> found = search(hash);
    last_hash_ = hash;
    last_matched_ = !found.empty();
    if (last_matched_) {
      ++counters_.matched;
      outcome.verdict = FrameVerdict::kMatch;
      int best = found.front().distance;
      for (StreamMatch& m : found) {
        best = std::min(best, m.distance);
        const bool known = std::any_of(matches_.begin(), matches_.end(), [&](const StreamMatch& e) {
          return e.list == m.list && e.ref == m.ref;
        });
        if (!known && matches_.size() < kMaxMatches) matches_.push_back(std::move(m));
      }
      if (lab_) distance = best;
    } else {
      outcome.verdict = FrameVerdict::kNoMatch;
    }
    Push(last_matched_, t_ms);
  }
  outcome.frame_event = FrameEvent(outcome.verdict, frame, t_ms, seq, quality, distance, nullptr);
  if (verdict_ != before) outcome.verdict_event = StateJson(before);
  return outcome;
}

FrameOutcome StreamState::Dropped(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                                  int64_t now_unix_ms) {
  updated_unix_ms_ = now_unix_ms;
  ++counters_.dropped;
  FrameOutcome outcome;
  outcome.verdict = FrameVerdict::kDropped;
  outcome.frame_event =
      FrameEvent(FrameVerdict::kDropped, frame, t_ms, seq, std::nullopt, std::nullopt, nullptr);
  return outcome;
}

FrameOutcome StreamState::Failed(uint64_t frame, int64_t t_ms, std::optional<uint32_t> seq,
                                 const Error& error, int64_t now_unix_ms) {
  updated_unix_ms_ = now_unix_ms;
  ++counters_.errors;
  if (last_sampled_t_ == t_ms) last_sampled_t_ = before_last_sampled_t_;
  FrameOutcome outcome;
  outcome.verdict = FrameVerdict::kError;
  outcome.frame_event =
      FrameEvent(FrameVerdict::kError, frame, t_ms, seq, std::nullopt, std::nullopt, &error);
  return outcome;
}

std::string StreamState::FrameEvent(FrameVerdict verdict, uint64_t frame, int64_t t_ms,
                                    std::optional<uint32_t> seq, std::optional<int> quality,
                                    std::optional<int> distance, const Error* error) const {
  json::object event;
  event["type"] = "frame";
  if (seq) event["seq"] = *seq;
  event["t"] = t_ms;
  event["frame"] = frame;
  event["verdict"] = FrameVerdictName(verdict);
  if (quality) event["quality"] = *quality;
  event["stream"] = StreamVerdictName(verdict_);
  if (distance) event["distance"] = *distance;
  if (error != nullptr) {
    event["error"] = json::object{{"code", ErrorCodeName(error->code())},
                                  {"message", error->message()}};
  }
  return json::serialize(event);
}

std::string StreamState::StateJson() const { return StateJson(previous_); }

std::string StreamState::StateJson(StreamVerdict previous) const {
  return Json("verdict", previous, {});
}

std::string StreamState::EndedJson(std::string_view reason) const {
  return Json("ended", std::nullopt, reason);
}

std::string StreamState::Json(std::string_view type, std::optional<StreamVerdict> previous,
                              std::string_view reason) const {
  json::array matches;
  for (const StreamMatch& m : matches_) {
    matches.push_back(json::object{{"list", m.list}, {"category", m.category}, {"ref", m.ref}});
  }
  auto optional_t = [](const std::optional<int64_t>& t) -> json::value {
    if (t) return *t;
    return nullptr;
  };
  json::object state{{"type", type}};
  if (!previous) state["reason"] = reason;
  state["id"] = id_;
  state["label"] = policy_.label;
  state["stream"] = StreamVerdictName(verdict_);
  if (previous) state["previous"] = StreamVerdictName(*previous);
  state.insert({
      {"first_match_t", optional_t(first_match_t_)},
      {"last_match_t", optional_t(last_match_t_)},
      {"frames", json::object{{"received", counters_.received},
                              {"hashed", counters_.hashed},
                              {"matched", counters_.matched},
                              {"skipped", counters_.skipped},
                              {"low_quality", counters_.low_quality},
                              {"not_sampled", counters_.not_sampled},
                              {"dropped", counters_.dropped},
                              {"errors", counters_.errors}}},
      {"matches", std::move(matches)},
      {"created_at", Rfc3339(created_unix_ms_)},
      {"updated_at", Rfc3339(updated_unix_ms_)}});
  return json::serialize(state);
}

}  // namespace bantay::server
