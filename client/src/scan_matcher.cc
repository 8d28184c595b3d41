#include "scan_matcher.h"

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "command_util.h"

namespace bantay::client {
namespace {

namespace json = boost::json;

// Merges the matches of one file per list entry: the smallest distance (the
// first variant that reached it), and for videos the number of matching
// frames and the first of them.
class MatchCollector {
 public:
  void Add(std::string_view signal, std::string_view list,
           std::string_view category, std::string_view reference, int distance,
           std::string_view variant, double timestamp) {
    auto key = std::make_tuple(std::string(signal), std::string(list),
                               std::string(category), std::string(reference));
    auto [it, inserted] = merged_.try_emplace(std::move(key));
    ScanMatch& m = it->second;
    if (inserted) {
      m.signal = signal;
      m.list = list;
      m.category = category;
      m.reference = reference;
      m.distance = distance;
      m.variant = variant;
    } else if (distance >= 0 && distance < m.distance) {
      m.distance = distance;
      m.variant = variant;
    }
    if (timestamp >= 0) {
      ++m.frames;
      if (m.first_timestamp < 0 || timestamp < m.first_timestamp) {
        m.first_timestamp = timestamp;
      }
    }
  }

  std::vector<ScanMatch> Take() {
    std::vector<ScanMatch> out;
    out.reserve(merged_.size());
    for (auto& [key, m] : merged_) out.push_back(std::move(m));
    merged_.clear();
    std::stable_sort(out.begin(), out.end(),
                     [](const ScanMatch& a, const ScanMatch& b) {
                       return std::tie(a.distance, a.signal, a.list,
                                       a.reference) <
                              std::tie(b.distance, b.signal, b.list,
                                       b.reference);
                     });
    return out;
  }

 private:
  std::map<std::tuple<std::string, std::string, std::string, std::string>,
           ScanMatch>
      merged_;
};

class LocalMatcher : public ScanMatcher {
 public:
  LocalMatcher(std::shared_ptr<const matcher::IndexSnapshot> snapshot,
               int radius)
      : snapshot_(std::move(snapshot)), radius_(radius) {}

  Result<FileMatches> Match(const FileSignals& signals, int) override {
    MatchCollector collector;
    std::vector<matcher::Match> found;
    auto add = [&](const char* signal, double timestamp) {
      for (const matcher::Match& m : found) {
        collector.Add(signal, m.list, m.category, m.reference, m.distance,
                      signal == std::string_view("pdq")
                          ? models::DihedralName(m.variant)
                          : "",
                      timestamp);
      }
    };
    if (signals.has_digests) {
      snapshot_->MatchExact(matcher::SignalType::kMd5,
                            signals.digests.md5.data(), &found);
      add("md5", -1);
      snapshot_->MatchExact(matcher::SignalType::kSha256,
                            signals.digests.sha256.data(), &found);
      add("sha256", -1);
    }
    FileMatches result;
    if (signals.dihedral && signals.pdq.size() == models::kDihedralCount) {
      std::array<models::Hash256, models::kDihedralCount> variants;
      for (size_t v = 0; v < variants.size(); ++v) {
        variants[v] = signals.pdq[v].hash;
      }
      snapshot_->MatchPdqDihedral(variants, radius_, &found);
      add("pdq", -1);
    } else {
      for (const PdqQuery& q : signals.pdq) {
        snapshot_->MatchPdq(q.hash, radius_, &found);
        if (signals.video && !found.empty()) ++result.frames_matched;
        add("pdq", signals.video ? q.timestamp : -1);
      }
    }
    result.matches = collector.Take();
    return result;
  }

 private:
  std::shared_ptr<const matcher::IndexSnapshot> snapshot_;
  int radius_;
};

// Sends a file's signals as /v1/match/batch requests on the worker's own
// kept-alive connection. Hashes only: no image byte leaves the machine.
class ServerMatcher : public ScanMatcher {
 public:
  explicit ServerMatcher(ServerMatcherOptions options)
      : options_(std::move(options)),
        clients_(static_cast<size_t>(options_.workers)) {
    target_ = "/v1/match/batch";
    if (options_.radius >= 0) {
      target_ += "?radius=" + std::to_string(options_.radius);
    }
  }

  Result<FileMatches> Match(const FileSignals& signals, int worker) override {
    struct Item {
      json::object body;
      std::string signal;
      std::string variant;
      double timestamp;
    };
    std::vector<Item> items;
    if (signals.has_digests) {
      items.push_back({{{"md5", models::ToHex(signals.digests.md5)}},
                       "md5", "", -1});
      items.push_back({{{"sha256", models::ToHex(signals.digests.sha256)}},
                       "sha256", "", -1});
    }
    for (const PdqQuery& q : signals.pdq) {
      items.push_back({{{"pdq", q.hash.ToHex()}, {"quality", q.quality}},
                       "pdq",
                       std::string(models::DihedralName(q.variant)),
                       signals.video ? q.timestamp : -1});
    }
    MatchCollector collector;
    FileMatches result;
    size_t chunk = static_cast<size_t>(std::max(1, options_.max_batch_items));
    for (size_t first = 0; first < items.size();) {
      const size_t n = std::min(chunk, items.size() - first);
      json::array batch;
      for (size_t i = first; i < first + n; ++i) batch.push_back(items[i].body);
      Result<HttpResponse> response =
          Send(worker, json::serialize(json::object{{"items", batch}}));
      if (!response.ok()) return response.error();
      if (response->status == 413 && chunk > 1) {
        chunk = std::max<size_t>(1, n / 2);  // the key's burst is smaller
        continue;
      }
      Result<json::array> results = Results(*response, n);
      if (!results.ok()) return results.error();
      for (size_t i = 0; i < n; ++i) {
        const Item& item = items[first + i];
        const json::object* r = (*results)[i].if_object();
        const json::value* ms = r != nullptr ? r->if_contains("matches") : nullptr;
        if (ms == nullptr || !ms->is_array()) {
          return Error(ErrorCode::kInternal,
                       "the server refused a hash: " +
                           json::serialize((*results)[i]));
        }
        if (signals.video && !ms->as_array().empty()) ++result.frames_matched;
        for (const json::value& mv : ms->as_array()) {
          const json::object* m = mv.if_object();
          if (m == nullptr) continue;
          auto text = [&](const char* field) -> std::string {
            const json::value* v = m->if_contains(field);
            return v != nullptr && v->is_string() ? std::string(v->as_string())
                                                  : std::string();
          };
          const json::value* d = m->if_contains("distance");
          const int distance =
              item.signal != "pdq"
                  ? 0
                  : (d != nullptr && d->is_int64()
                         ? static_cast<int>(d->as_int64())
                         : -1);
          collector.Add(item.signal, text("list"), text("category"),
                        text("ref"), distance,
                        item.signal == "pdq" ? item.variant : "",
                        item.timestamp);
        }
      }
      first += n;
    }
    result.matches = collector.Take();
    return result;
  }

 private:
  // One request, waiting out 429 and 503 answers (SendWhileBusy).
  Result<HttpResponse> Send(int worker, const std::string& body) {
    std::unique_ptr<HttpClient>& client = clients_[static_cast<size_t>(worker)];
    return SendWhileBusy([&]() -> Result<HttpResponse> {
      if (client == nullptr) {
        Result<std::unique_ptr<HttpClient>> connected =
            HttpClient::Connect(options_.client);
        if (!connected.ok()) return connected.error();
        client = std::move(*connected);
      }
      Result<HttpResponse> response =
          client->Send("POST", target_, "application/json", body);
      if (!response.ok()) client.reset();
      return response;
    });
  }

  static Result<json::array> Results(const HttpResponse& response, size_t n) {
    boost::system::error_code ec;
    json::value v = json::parse(response.body, ec);
    const json::object* o = !ec ? v.if_object() : nullptr;
    if (response.status != 200) {
      std::string message = "the server answered HTTP " +
                            std::to_string(response.status);
      const json::value* e = o != nullptr ? o->if_contains("error") : nullptr;
      if (e != nullptr) message += ": " + json::serialize(*e);
      const ErrorCode code = response.status == 401 || response.status == 403
                                 ? ErrorCode::kPermissionDenied
                                 : ErrorCode::kUnavailable;
      return Error(code, message);
    }
    const json::value* r = o != nullptr ? o->if_contains("results") : nullptr;
    if (r == nullptr || !r->is_array() || r->as_array().size() != n) {
      return Error(ErrorCode::kInternal,
                   "the server's answer is not a batch result of " +
                       std::to_string(n) + " items");
    }
    return r->as_array();
  }

  ServerMatcherOptions options_;
  std::string target_;
  std::vector<std::unique_ptr<HttpClient>> clients_;
};

}  // namespace

std::unique_ptr<ScanMatcher> MakeLocalMatcher(
    std::shared_ptr<const matcher::IndexSnapshot> snapshot, int radius) {
  return std::make_unique<LocalMatcher>(std::move(snapshot), radius);
}

std::unique_ptr<ScanMatcher> MakeServerMatcher(ServerMatcherOptions options) {
  return std::make_unique<ServerMatcher>(std::move(options));
}

}  // namespace bantay::client
