// Fuzz target: the small JSON bodies the server reads on its I/O threads
// (untrusted: any platform key can send them).
//
// The first byte chooses the reader; the rest is the body. Properties,
// besides no crash, leak or undefined behaviour:
// - PlainPdqQuery, the hand-written reader of {"pdq":"<hex>"}, reads a hash
//   only from a body that the general JSON path reads as exactly that query
//   with the same hash;
// - a hash frame (ParseHashFrameMessage) is read with its values in their
//   documented ranges, or refused with kInvalidArgument (kTooLarge over 16 KB);
// - a stream policy (ParseStreamPolicy) is read with its values in their
//   documented ranges, or refused with kInvalidArgument (or, for a key
//   that is not a lab's, kPermissionDenied); a policy that is not a lab's
//   has the server's radius and at least its min_quality; the policy's own
//   JSON text reads back as the same policy.
#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <string_view>

#include "api.h"
#include "fuzz_check.h"
#include "stream_session.h"
#include "streams.h"

namespace {

namespace json = boost::json;
namespace models = bantay::models;
namespace server = bantay::server;
using bantay::ErrorCode;

void CheckPlainPdqQuery(std::string_view body) {
  const std::optional<models::Hash256> fast = server::PlainPdqQuery(body);
  if (!fast) return;
  boost::system::error_code ec;
  const json::value value = json::parse(body, ec);
  FUZZ_CHECK(!ec && value.is_object(), "read a hash from a body that is not a JSON object");
  const json::object& object = value.as_object();
  FUZZ_CHECK(object.size() == 1 && object.contains("pdq") && object.at("pdq").is_string(),
             "read a hash from a body that is not {\"pdq\": string}");
  const bantay::Result<models::Hash256> general =
      models::Hash256::FromHex(object.at("pdq").as_string());
  FUZZ_CHECK(general.ok() && *general == *fast, "the two paths read different hashes");
}

void CheckHashFrame(std::string_view body) {
  server::StreamFrame frame;
  bool has_t = false;
  const bantay::Status read = server::ParseHashFrameMessage(body, &frame, &has_t);
  if (!read.ok()) {
    const ErrorCode expected =
        body.size() > server::kMaxStreamJsonBytes ? ErrorCode::kTooLarge : ErrorCode::kInvalidArgument;
    FUZZ_CHECK(read.error().code() == expected, "%s", read.error().ToString().c_str());
    return;
  }
  FUZZ_CHECK(frame.kind == server::StreamFrame::Kind::kHash, "kind");
  FUZZ_CHECK(frame.quality >= 0 && frame.quality <= 100, "quality %d", frame.quality);
  FUZZ_CHECK(!has_t || frame.t_ms >= 0, "t %lld", static_cast<long long>(frame.t_ms));
}

bool operator==(const server::StreamPolicy& a, const server::StreamPolicy& b) {
  return a.sample_interval_ms == b.sample_interval_ms && a.quality_min == b.quality_min &&
         a.window == b.window && a.k == b.k && a.skip_distance == b.skip_distance &&
         a.trim_borders == b.trim_borders && a.dihedral == b.dihedral && a.radius == b.radius &&
         a.label == b.label;
}

void CheckStreamPolicy(std::string_view body, const server::PolicyLimits& limits) {
  const int max_radius = limits.max_radius;
  const bantay::Result<server::StreamPolicy> policy = server::ParseStreamPolicy(body, limits);
  if (!policy.ok()) {
    FUZZ_CHECK(policy.error().code() == ErrorCode::kInvalidArgument ||
                   (!limits.lab && policy.error().code() == ErrorCode::kPermissionDenied),
               "%s", policy.error().ToString().c_str());
    return;
  }
  FUZZ_CHECK(limits.lab || (policy->radius == max_radius &&
                            policy->quality_min >= limits.min_quality),
             "a policy that is not a lab's narrows the search: radius %d, quality_min %d",
             policy->radius, policy->quality_min);
  const server::StreamPolicy& p = *policy;
  FUZZ_CHECK(p.sample_interval_ms >= 0 &&
                 p.sample_interval_ms <= server::StreamPolicy::kMaxSampleIntervalMs,
             "sample_interval_ms %lld", static_cast<long long>(p.sample_interval_ms));
  FUZZ_CHECK(p.quality_min >= 0 && p.quality_min <= 100, "quality_min %d", p.quality_min);
  FUZZ_CHECK(p.window >= 1 && p.window <= server::StreamPolicy::kMaxWindow, "window %d",
             p.window);
  FUZZ_CHECK(p.k >= 1 && p.k <= p.window, "k %d of %d", p.k, p.window);
  FUZZ_CHECK(p.skip_distance >= -1 && p.skip_distance <= 256, "skip_distance %d",
             p.skip_distance);
  FUZZ_CHECK(p.radius >= 0 && p.radius <= max_radius, "radius %d", p.radius);
  FUZZ_CHECK(p.label.size() <= server::StreamPolicy::kMaxLabelBytes, "label of %zu bytes",
             p.label.size());
  const std::string text = server::StreamPolicyJson(p);
  const bantay::Result<server::StreamPolicy> again = server::ParseStreamPolicy(text, limits);
  FUZZ_CHECK(again.ok() && *again == p, "the policy's JSON does not read back: %s",
             text.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      CheckPlainPdqQuery(body);
      break;
    case 1:
      CheckHashFrame(body);
      break;
    default: {
      server::PolicyLimits limits;
      limits.max_radius = 20 + data[0] % 45;
      limits.min_quality = (data[0] * 7) % 101;
      limits.lab = (data[0] & 8) != 0;
      CheckStreamPolicy(body, limits);
      break;
    }
  }
  return 0;
}
