// Fuzz target: whole requests of API v1 through Api::Dispatch (routing,
// query strings, authentication, roles, the handlers and their JSON and
// image bodies) against a real SQLite store and index, as the HTTP session
// hands them over after parsing.
//
// Input: byte 0 chooses the key (none, an unknown one, or one of each
// role), byte 1 the method, byte 2 the content type; then the target up to
// the first newline, then the body. Properties, besides no crash, leak or
// undefined behaviour:
// - every request is answered exactly once, within 10 s;
// - the status is one the OpenAPI document (server/openapi.json) lists for
//   the route and method (404 for no route, 400 for a target that is not a
//   path; 405, with an Allow header that
//   leaves out the method, for a route without the method); never 500;
// - an error is the documented JSON error, its code one of the documented
//   codes; a JSON answer is JSON;
// - a platform key's answer never holds a distance, nor a reference hash
//   outside the text that requests wrote (names, references, messages).
// BANTAY_FUZZ_VERBOSE=1 prints each request's answer (to check a corpus).
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api.h"
#include "bantay/server/config.h"
#include "bantay/server/routes.h"
#include "compute_pool.h"
#include "fuzz_check.h"
#include "fuzz_store.h"
#include "index_service.h"
#include "metrics.h"
#include "rate_limiter.h"
#include "streams.h"

namespace {

namespace json = boost::json;
namespace server = bantay::server;

// The server's parts around one Api, on the shared fuzz store. Built once;
// never destroyed (threads keep running until the process ends).
struct Env {
  const bantay::fuzz::FuzzStore* store = nullptr;
  server::ServerConfig config;
  server::Metrics metrics;
  server::RateLimiter limiter;
  std::unique_ptr<server::IndexService> index;
  std::unique_ptr<server::ComputePool> compute;
  std::unique_ptr<server::ComputePool> admin;
  std::unique_ptr<server::StreamRegistry> streams;
  std::unique_ptr<server::Api> api;
  json::value openapi;
};

Env* MakeEnv() {
  auto* env = new Env;
  env->store = &bantay::fuzz::MakeFuzzStore("api-fuzz");
  server::ServerConfig& c = env->config;
  c = env->store->config;
  c.compute_threads = 1;
  c.poll_interval_ms = 50;
  c.max_batch_items = 16;
  c.streams_max_per_key = 4;
  c.streams_max_total = 8;

  env->index = std::make_unique<server::IndexService>(c, &env->metrics);
  const bantay::Status started = env->index->Start();
  FUZZ_CHECK(started.ok(), "%s", started.ok() ? "" : started.error().ToString().c_str());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!env->index->ready()) {
    FUZZ_CHECK(std::chrono::steady_clock::now() < deadline, "the index did not load");
    usleep(10'000);
  }
  env->compute = std::make_unique<server::ComputePool>(1, c.queue_limit);
  env->admin = std::make_unique<server::ComputePool>(1, c.admin_queue_limit);
  env->streams = std::make_unique<server::StreamRegistry>(c, env->index.get(),
                                                           env->compute.get(), &env->metrics);
  env->api = std::make_unique<server::Api>(c, env->index.get(), env->compute.get(),
                                           env->admin.get(), &env->metrics, &env->limiter,
                                           env->streams.get());
  env->openapi = json::parse(server::OpenApiDocument());
  return env;
}

// One answer: how many times `done` was called, and the last response.
struct Answer {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  server::ApiResponse response;
};

const std::set<std::string>& DocumentedErrorCodes(const json::value& doc) {
  static const std::set<std::string> codes = [&doc] {
    std::set<std::string> out;
    const json::value& detail = doc.at("components").at("schemas").at("ErrorDetail");
    for (const json::value& name :
         detail.at("properties").at("code").at("enum").as_array()) {
      out.emplace(name.as_string());
    }
    return out;
  }();
  return codes;
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// The members whose text comes from requests.
bool RequestText(std::string_view key) {
  return key == "name" || key == "list" || key == "category" || key == "ref" ||
         key == "reference" || key == "description" || key == "label" || key == "message" ||
         key == "actor";
}

void CheckNoReference(const Env& env, const json::value& value, std::string_view key,
                      const std::string& what) {
  if (const json::object* o = value.if_object()) {
    for (const auto& member : *o) CheckNoReference(env, member.value(), member.key(), what);
  } else if (const json::array* a = value.if_array()) {
    for (const json::value& v : *a) CheckNoReference(env, v, key, what);
  } else if (const json::string* text = value.if_string(); text != nullptr && !RequestText(key)) {
    for (const std::string& reference : env.store->references) {
      FUZZ_CHECK(std::string_view(*text).find(reference) == std::string_view::npos,
                 "reference hash in \"%s\": %s", std::string(key).c_str(), what.c_str());
    }
  }
}

void CheckAnswer(const Env& env, const server::ApiRequest& request, int key_choice,
                 const server::ApiResponse& r) {
  const std::string what = request.method + " " + request.target + " -> " +
                           std::to_string(r.status) + " (" + r.route + "): " + r.body;
  FUZZ_CHECK(r.status != 500, "%s", what.c_str());
  if (r.status == 405) {
    FUZZ_CHECK(!r.allow.empty() && r.allow.find(request.method) == std::string::npos, "%s",
               what.c_str());
  } else if (r.route == "unmatched") {
    // No route, or a target that is not a path at all.
    FUZZ_CHECK(r.status == 404 || r.status == 400, "%s", what.c_str());
  } else {
    const json::object& paths = env.openapi.at("paths").as_object();
    const json::value* item = paths.if_contains(r.route);
    FUZZ_CHECK(item != nullptr, "route not documented: %s", what.c_str());
    // HEAD of a GET route is answered as that GET (RFC 9110 section 9.3.2).
    const std::string method = request.method == "HEAD" && item->as_object().contains("get")
                                   ? std::string("get")
                                   : Lower(request.method);
    const json::value* op = item->as_object().if_contains(method);
    FUZZ_CHECK(op != nullptr, "method not documented: %s", what.c_str());
    FUZZ_CHECK(op->at("responses").as_object().contains(std::to_string(r.status)),
               "status not documented: %s", what.c_str());
  }
  if (r.content_type == "application/json") {
    boost::system::error_code ec;
    const json::value body = json::parse(r.body, ec);
    FUZZ_CHECK(!ec, "not JSON: %s", what.c_str());
    if (r.status >= 400) {
      const json::object* detail = bantay::fuzz::ErrorDetail(body);
      FUZZ_CHECK(detail != nullptr, "not the error schema: %s", what.c_str());
      FUZZ_CHECK(DocumentedErrorCodes(env.openapi).contains(
                     std::string(detail->at("code").as_string())),
                 "undocumented code: %s", what.c_str());
    }
  }
  if (r.status == 429 || r.status == 503) {
    FUZZ_CHECK(r.retry_after >= 1, "no Retry-After: %s", what.c_str());
  }
  // The platform's answers about data. The OpenAPI document is the API's
  // public description (it names the `distance` member lab answers carry),
  // the same for every caller.
  if (key_choice == 2 && r.content_type == "application/json" && r.route != "/openapi.json") {
    FUZZ_CHECK(r.body.find("\"distance\"") == std::string::npos, "distance: %s", what.c_str());
    // No reference hash in the answer, except in text that requests wrote
    // (names, categories, references, labels, quoted input in messages): the
    // fuzzer's own administration requests may name a list after a hash (it
    // learns the hashes from this very check), and the request may be quoted.
    boost::system::error_code ec;
    const json::value body = json::parse(r.body, ec);
    if (!ec) CheckNoReference(env, body, "", what);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Env* const env = MakeEnv();
  // Answers of earlier inputs: a second call of their `done` is a finding.
  static std::deque<std::shared_ptr<Answer>> earlier;
  for (const std::shared_ptr<Answer>& a : earlier) {
    std::lock_guard lock(a->mu);
    FUZZ_CHECK(a->calls == 1, "an earlier request was answered %d times", a->calls);
  }
  if (size < 3) return 0;
  static constexpr std::string_view kMethods[] = {"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"};
  static constexpr std::string_view kTypes[] = {"application/json", "image/jpeg", "image/png",
                                                "application/octet-stream", "text/plain", ""};
  const int key_choice = data[0] % 6;
  server::ApiRequest request;
  request.method = std::string(kMethods[data[1] % std::size(kMethods)]);
  request.content_type = std::string(kTypes[data[2] % std::size(kTypes)]);
  if (key_choice == 1) {
    request.authorization = "Bearer " + std::string(64, 'a');
  } else if (key_choice >= 2) {
    request.authorization =
        "Bearer " + env->store->key_texts[static_cast<size_t>(key_choice - 2)];
  }
  const std::string_view rest(reinterpret_cast<const char*>(data) + 3, size - 3);
  const size_t newline = rest.find('\n');
  request.target = std::string(rest.substr(0, newline));
  const std::string_view body =
      newline != std::string_view::npos ? rest.substr(newline + 1) : std::string_view();
  request.body.assign(body.begin(), body.end());
  // Kept for the checks (Dispatch takes the request).
  server::ApiRequest copy;
  copy.method = request.method;
  copy.target = request.target;

  auto answer = std::make_shared<Answer>();
  env->api->Dispatch(std::move(request), [answer](server::ApiResponse response) {
    std::lock_guard lock(answer->mu);
    ++answer->calls;
    answer->response = std::move(response);
    answer->cv.notify_all();
  });
  server::ApiResponse response;
  {
    std::unique_lock lock(answer->mu);
    FUZZ_CHECK(answer->cv.wait_for(lock, std::chrono::seconds(10),
                                   [&] { return answer->calls > 0; }),
               "%s %s: no answer within 10 s", copy.method.c_str(), copy.target.c_str());
    response = answer->response;
  }
  static const bool verbose = std::getenv("BANTAY_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "%s %s -> %d %s\n", copy.method.c_str(), copy.target.c_str(),
                 response.status, response.body.substr(0, 160).c_str());
  }
  CheckAnswer(*env, copy, key_choice, response);
  earlier.push_back(answer);
  if (earlier.size() > 64) earlier.pop_front();
  return 0;
}
