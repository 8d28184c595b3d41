// Pieces shared by the end-to-end server benchmarks (server_bench,
// stream_bench): CPU accounting from /proc, a fixed-size latency histogram,
// the temporary store, certificate, key and server they run against, and the
// quietness gate that repeats a measurement disturbed by other processes.
#ifndef BANTAY_BENCH_SERVER_BENCH_UTIL_H_
#define BANTAY_BENCH_SERVER_BENCH_UTIL_H_

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/store.h"
#include "bantay/server/config.h"
#include "bantay/server/server.h"
#include "bench_util.h"

namespace bantay::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;

[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// kB of resident memory of this process (server and load generator).
inline long VmRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

inline std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0)
      return line.substr(line.find(':') + 2);
  }
  return "?";
}

// CPU time (seconds) used by the load generator (this thread, which runs
// its io_context), by the whole process, and by the whole machine (busy
// time of all CPUs from /proc/stat): the difference is what other
// processes took during a run, which says how noisy the figure is.
struct CpuTimes {
  double thread = 0, process = 0, machine = 0;

  static CpuTimes Now() {
    CpuTimes t;
    t.thread = StatCpuSeconds("/proc/thread-self/stat");
    t.process = StatCpuSeconds("/proc/self/stat");
    std::ifstream in("/proc/stat");
    std::string cpu;
    in >> cpu;
    double v[8] = {};  // user nice system idle iowait irq softirq steal
    for (double& x : v) in >> x;
    t.machine = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / Hz();
    return t;
  }
  static double Hz() { return static_cast<double>(::sysconf(_SC_CLK_TCK)); }
};

// Cores used over a measurement by the load generator (this thread), the
// rest of this process (the server, or a baseline's threads) and other
// processes.
struct CpuUse {
  double client = 0, server = 0, others = 0;
  std::string Text() const {
    char text[160];
    std::snprintf(text, sizeof text,
                  "cores used: load generator %.2f, server %.2f, others %.2f",
                  client, server, others);
    return text;
  }
};

inline CpuUse CpuShare(const CpuTimes& a, const CpuTimes& b, double seconds) {
  CpuUse use;
  use.client = (b.thread - a.thread) / seconds;
  use.server = (b.process - a.process) / seconds - use.client;
  use.others = std::max(
      0.0, (b.machine - a.machine) / seconds - use.client - use.server);
  return use;
}

// CPU time and context switches of this process's threads by thread name
// (the server names its threads bantay-io, bantay-compute, ...): where the
// server's time per request goes, and how often its threads sleep and are
// woken (each costs a few microseconds, more in a virtual machine).
struct ThreadUse {
  double cpu = 0;          // seconds
  double sys = 0;          // of which in the kernel
  double voluntary = 0;    // context switches: went to sleep
  double involuntary = 0;  // preempted
  double faults = 0;       // minor page faults
  int threads = 0;
};
using ThreadUses = std::map<std::string, ThreadUse>;

inline ThreadUses ThreadsByName() {
  ThreadUses out;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const std::string dir = task.path().string();
    std::ifstream stat_in(dir + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat_in)),
                     std::istreambuf_iterator<char>());
    const size_t open = text.find('('), close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    ThreadUse& use = out[text.substr(open + 1, close - open - 1)];
    ++use.threads;
    std::stringstream fields(text.substr(close + 2));
    std::string field;
    for (int k = 3; k <= 15 && fields >> field; ++k) {
      if (k == 10) use.faults += std::stod(field);
      if (k == 14 || k == 15) use.cpu += std::stod(field) / CpuTimes::Hz();
      if (k == 15) use.sys += std::stod(field) / CpuTimes::Hz();
    }
    std::ifstream status(dir + "/status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) {
        use.voluntary += std::stod(line.substr(24));
      } else if (line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
        use.involuntary += std::stod(line.substr(27));
      }
    }
  }
  return out;
}

// Per answered request, for the server's threads (bantay-*): "io 31.2 us
// (sys 10.1) 0.6+0.1 cs, compute 60.3 us (sys 0.4) 1.1+0.2 cs": CPU time,
// of which in the kernel, context switches (voluntary+involuntary), and
// minor page faults ("12.0 flt") where there are any.
inline std::string ThreadsPerRequest(const ThreadUses& a, const ThreadUses& b,
                                     uint64_t requests) {
  if (requests == 0) return "";
  const double n = static_cast<double>(requests);
  std::string out;
  for (const auto& [name, end] : b) {
    if (name.rfind("bantay-", 0) != 0) continue;
    ThreadUse start;
    if (auto it = a.find(name); it != a.end()) start = it->second;
    const double cpu_us = (end.cpu - start.cpu) / n * 1e6;
    const double sys_us = (end.sys - start.sys) / n * 1e6;
    const double vol = (end.voluntary - start.voluntary) / n;
    const double invol = (end.involuntary - start.involuntary) / n;
    const double faults = (end.faults - start.faults) / n;
    if (cpu_us < 0.05 && vol < 0.005) continue;
    char text[160];
    std::snprintf(text, sizeof text, "%s%s %.1f us (sys %.1f) %.2f+%.2f cs",
                  out.empty() ? "" : ", ", name.substr(7).c_str(), cpu_us,
                  sys_us, vol, invol);
    out += text;
    if (faults >= 0.05) {
      std::snprintf(text, sizeof text, " %.1f flt", faults);
      out += text;
    }
  }
  return out;
}

// Latency histogram of fixed size (so that a long soak does not grow the
// process): 1 us buckets below 2,048 us, then 128 buckets per doubling
// (under 0.8% wide).
class Histogram {
 public:
  Histogram() : counts_(2048 + 40 * 128, 0) {}
  void Add(double seconds) {
    const uint64_t us = seconds <= 0 ? 0 : static_cast<uint64_t>(seconds * 1e6);
    ++counts_[std::min(Index(us), counts_.size() - 1)];
    ++total_;
  }
  uint64_t total() const { return total_; }
  void Clear() {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
  }
  // The value (ms) at quantile q: the middle of its bucket.
  double QuantileMs(double q) const {
    if (total_ == 0) return 0;
    const uint64_t rank =
        static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= std::max<uint64_t>(rank, 1))
        return (Low(i) + Low(i + 1)) / 2e3;
    }
    return Low(counts_.size()) / 1e3;
  }

 private:
  static size_t Index(uint64_t us) {
    if (us < 2048) return us;
    const int e = 63 - __builtin_clzll(us);  // >= 11
    return 2048 + static_cast<size_t>(e - 11) * 128 + ((us >> (e - 7)) & 127);
  }
  static double Low(size_t index) {
    if (index < 2048) return static_cast<double>(index);
    const size_t e = (index - 2048) / 128 + 11, sub = (index - 2048) % 128;
    return static_cast<double>((128 + sub) << (e - 7));
  }
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

inline std::array<uint8_t, 32> RandomCode(std::mt19937_64& rng) {
  std::array<uint8_t, 32> v;
  for (size_t b = 0; b < 32; b += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + b, &r, 8);
  }
  return v;
}

// One synchronous request with a JSON body on a new connection: the status
// and the body.
inline std::pair<int, std::string> Send(uint16_t port, ssl::context& tls, http::verb verb,
                                        const std::string& target, const std::string& key,
                                        const std::string& body) {
  asio::io_context ioc;
  ssl::stream<beast::tcp_stream> stream(ioc, tls);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  stream.handshake(ssl::stream_base::client);
  http::request<http::string_body> request(verb, target, 11);
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::authorization, "Bearer " + key);
  request.set(http::field::content_type, "application/json");
  request.body() = body;
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  return {response.result_int(), response.body()};
}

inline std::pair<int, std::string> Post(uint16_t port, ssl::context& tls,
                                        const std::string& target, const std::string& key,
                                        const std::string& body) {
  return Send(port, tls, http::verb::post, target, key, body);
}

// One synchronous GET (set-up checks).
inline std::string Get(uint16_t port, ssl::context& tls,
                       const std::string& target, const std::string& key) {
  asio::io_context ioc;
  ssl::stream<beast::tcp_stream> stream(ioc, tls);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  stream.handshake(ssl::stream_base::client);
  http::request<http::empty_body> request(http::verb::get, target, 11);
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::authorization, "Bearer " + key);
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  if (response.result_int() != 200) {
    Die(target + ": status " + std::to_string(response.result_int()) + " " +
        response.body());
  }
  return response.body();
}

// --- Set-up ------------------------------------------------------------------

struct Setup {
  std::string dir;
  std::string store_url;
  bantay::matcher::DataKey data_key{};
  std::string api_key;       // role platform
  std::string operator_key;  // role operator (changes through the API)
  bantay::server::ServerConfig config;
};

// A temporary SQLite store (or one in `store_url`) holding `values` as PDQ
// entries (lists bench-0..3, category A1, references case-<i>), a
// self-signed certificate for 127.0.0.1, a platform API key and an operator
// API key with no effective rate limit, and a server configuration for them
// (compute_threads 2, io_threads 1, access log off, the store's signing key
// for changes through the API). `name` tells the benchmark's directory and
// audit records apart. With `store_url` (an empty PostgreSQL database), the
// store is made there.
inline Setup MakeSetup(const std::vector<std::array<uint8_t, 32>>& values,
                       const std::string& name, const std::string& store_url = "") {
  namespace m = bantay::matcher;
  Setup s;
  s.dir = std::filesystem::temp_directory_path() /
          ("bantay-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(s.dir);
  s.store_url = store_url.empty() ? "sqlite:" + s.dir + "/store.db" : store_url;
  s.data_key = m::GenerateDataKey();
  if (!m::WriteDataKeyFile(s.dir + "/data.key", s.data_key).ok())
    Die("data key file");

  const auto start = Clock::now();
  m::StoreKeys keys;
  keys.data_keys = {s.data_key};
  keys.signing_key = m::SigningKey::Generate();
  if (!m::WriteSecretFile(s.dir + "/signing.key", keys.signing_key->ToPem()).ok())
    Die("signing key file");
  const m::ChangeContext context{"bench", name};
  auto store = m::Store::Init(s.store_url, std::move(keys), context);
  if (!store.ok()) Die("Store::Init: " + store.error().ToString());
  constexpr size_t kBatch = 100'000;
  for (size_t first = 0; first < values.size(); first += kBatch) {
    std::vector<m::NewEntry> batch;
    for (size_t i = first; i < std::min(values.size(), first + kBatch); ++i) {
      m::NewEntry e;
      e.list = "bench-" + std::to_string(i % 4);
      e.type = m::SignalType::kPdq;
      e.value = values[i];
      e.category = "A1";
      e.reference = "case-" + std::to_string(i);
      batch.push_back(std::move(e));
    }
    auto version = (*store)->AddEntries(batch, context, "import");
    if (!version.ok()) Die("AddEntries: " + version.error().ToString());
  }
  std::printf("store: %zu PDQ entries in %s (%.1f s)\n", values.size(),
              s.store_url.c_str(), Seconds(start));

  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      "-days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
      "-keyout " +
      s.dir + "/server.key -out " + s.dir + "/server.crt >/dev/null 2>&1";
  if (std::system(command.c_str()) != 0) Die("openssl: " + command);

  s.api_key = bantay::server::NewApiKey();
  bantay::server::ApiKeyConfig key;
  key.id = "bench";
  key.role = bantay::server::Role::kPlatform;
  key.rate = 1e9;
  key.burst = 1e9;
  key.sha256 = bantay::server::ApiKeyDigest(s.api_key);
  s.operator_key = bantay::server::NewApiKey();
  bantay::server::ApiKeyConfig operator_key = key;
  operator_key.id = "bench-operator";
  operator_key.role = bantay::server::Role::kOperator;
  operator_key.sha256 = bantay::server::ApiKeyDigest(s.operator_key);

  bantay::server::ServerConfig& c = s.config;
  c.listen = "127.0.0.1";
  c.port = 0;
  c.compute_threads = 2;
  c.io_threads = 1;
  c.tls_cert = s.dir + "/server.crt";
  c.tls_key = s.dir + "/server.key";
  c.store_url = s.store_url;
  c.data_key_file = s.dir + "/data.key";
  c.signing_key_file = s.dir + "/signing.key";
  c.access_log = "";
  c.api_keys = {key, operator_key};
  return s;
}

inline std::unique_ptr<bantay::server::Server> StartServer(const Setup& s,
                                                           int io_threads,
                                                           ssl::context& tls,
                                                           size_t entries) {
  bantay::server::ServerConfig config = s.config;
  config.io_threads = io_threads;
  const auto start = Clock::now();
  auto server = bantay::server::Server::Start(config);
  if (!server.ok()) Die("Server::Start: " + server.error().ToString());
  if (!(*server)->WaitUntilReady()) Die("the server's index did not load");
  const json::value index =
      json::parse(Get((*server)->port(), tls, "/v1/index", s.api_key));
  const int64_t pdq = index.at("entries").at("pdq").to_number<int64_t>();
  if (pdq != static_cast<int64_t>(entries))
    Die("the server holds " + std::to_string(pdq));
  std::printf(
      "server: io_threads %d, compute_threads 2, port %u, ready in %.1f s "
      "(%lld PDQ entries)\n",
      io_threads, (*server)->port(), Seconds(start),
      static_cast<long long>(pdq));
  return std::move(*server);
}

// "16,32,64" -> {16, 32, 64} (list-valued flags).
inline std::vector<int> ParseList(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoi(item));
  return out;
}

// A measurement during which other processes used more than max_others
// cores is discarded and repeated after quiet_wait seconds, up to
// `attempts` times (then kept and counted as noisy).
struct QuietGate {
  double max_others = 0.15;
  int attempts = 12;
  double quiet_wait = 20;
};

inline int g_discarded =
    0;                   // measurements repeated because the machine was busy
inline int g_noisy = 0;  // kept although it was

// Runs `measure` (which returns something with a `cpu` CpuUse) until other
// processes stayed under opt.max_others cores during it: this machine is
// shared, and a neighbour's compilation halves what the server gets.
template <typename Measure>
auto UntilQuiet(const QuietGate& opt, const std::string& what,
                Measure measure) {
  for (int attempt = 1;; ++attempt) {
    auto result = measure();
    const double others = result.cpu.others;
    if (others <= opt.max_others) return result;
    if (attempt >= opt.attempts) {
      ++g_noisy;
      std::printf(
          "  (%s kept after %d attempts although other processes "
          "used %.2f cores)\n",
          what.c_str(), attempt, others);
      return result;
    }
    ++g_discarded;
    std::printf(
        "  (%s discarded: other processes used %.2f cores; again in "
        "%.0f s)\n",
        what.c_str(), others, opt.quiet_wait);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.quiet_wait));
  }
}

struct Measured {
  double value = 0;
  CpuUse cpu;
};

template <typename F>
Measured Measure(F f) {
  const CpuTimes a = CpuTimes::Now();
  const auto start = Clock::now();
  Measured m;
  m.value = f();
  m.cpu = CpuShare(a, CpuTimes::Now(), Seconds(start));
  return m;
}

}  // namespace bantay::bench

#endif  // BANTAY_BENCH_SERVER_BENCH_UTIL_H_
