// bantay-server end to end: POST /v1/match over keep-alive HTTPS, with the
// server library in this process and an asynchronous load generator on the
// same cores (as wrk on the same machine would be).
//
// Setup (fixed seeds): a temporary SQLite store with fresh keys holding
// --entries (1M) random PDQ entries (10 imports), a self-signed P-256
// certificate (the openssl command), one API key of role platform with a
// rate limit far above anything measured, and Server::Start on
// 127.0.0.1:0 (compute_threads 2, io_threads 1 and 2, access log off).
//
// Queries: 100k {"pdq":"<hex>"} bodies, random codes (they match nothing:
// a random code is within 31 bits of another with probability ~1e-34) and
// 1% near-duplicates of stored entries, 0..24 bits flipped (they must
// match). Every answer is checked: status 200 and the right verdict;
// anything else counts as an error.
//
// Parts, each repeated --reps times (median reported):
//   baseline  the same queries straight on a HashIndex loaded from the same
//             store (LoadIndexFromStore), IndexSnapshot::MatchPdq on 2
//             threads: the in-process rate the server is compared with.
//   closed    closed loop (each connection sends its next request when the
//             answer arrives) on 16/32/64 connections: requests/s.
//   open      open loop at a fixed rate (--rate, 12,500/s, and half the
//             closed-loop capacity just measured): requests are scheduled
//             at fixed times and latency runs from the scheduled time, so a
//             stalled server shows as queueing (no coordinated omission);
//             p50/p99/p99.9.
//   jpeg      104 1080p JPEG frames (pdq_bench's workload: crops of the
//             mate-backgrounds photographs) posted as image/jpeg on 8
//             connections, against the single-core offline rate of
//             ImageHasher with the server's options (compatible mode, MD5
//             and SHA-256), measured right before and right after each
//             server run and averaged; ratio server / (2 x offline). Also
//             printed: offline CPU time per frame / the server's (how much
//             more the server spends on a frame than hashing it costs),
//             and the ratio against the cores the load generator left
//             (server / ((2 - generator cores) x offline)).
//   change    one entry added through the API (operator key) to the store,
//             then matched (platform key): seconds to the answer (the server
//             answers once its index serves the new version) and to the
//             match, for 7 changes on an idle server and 7 under the open
//             loop at --rate; then each of those entries disabled, to the
//             answer and to the first query that no longer matches it;
//             against the server's first change, made as soon as it is
//             ready (it waits for the writer's preparation, which reads
//             and checks every row of the store: the baseline).
//   soak      (--soak SECONDS) open loop at 70% of the closed-loop capacity
//             measured in this run (or --soak-rate): errors, latency and the
//             process's VmRSS after a 30 s warm-up and at the end.
//
// Each measurement also reports the cores used by the load generator, by
// the server and by other processes (/proc/stat). The machine is shared: a
// measurement during which other processes used more than --max-others
// cores (0.15) is discarded and repeated after --quiet-wait seconds, at
// most --attempts times; the summary says how many were.
//
// Run: build/bin/server_bench                       (~12 min on a quiet
//                                                    machine)
//      build/bin/server_bench --parts closed --io-threads 1 --soak 600
//      build/bin/server_bench --serve-only 120      (for wrk: see
//                                                    wrk_match.lua)
// Flags: --entries N --reps N --seconds S --warmup S --io-threads 1,2
//        --connections 16,32,64 --rate R --open-connections N
//        --jpeg-connections N --parts baseline,closed,open,jpeg,change
//        --soak S --soak-rate R --max-others CORES --attempts N
//        --quiet-wait S --serve-only S --postgres URL (the store in that
//        empty PostgreSQL database, e.g. one of a cluster started by
//        build/bin/pg_cluster_ctl start DIR; the server's PostgreSQL
//        backends count as other processes)
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/matcher/crypto.h"
#include "bantay/matcher/hash_index.h"
#include "bantay/matcher/store.h"
#include "bantay/matcher/store_index.h"
#include "bantay/models/hash256.h"
#include "bantay/models/image_hasher.h"
#include "bantay/server/config.h"
#include "bantay/server/server.h"
#include "bench_util.h"
#include "server_bench_util.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using bantay::bench::Clock;
using bantay::bench::CpuModel;
using bantay::bench::CpuShare;
using bantay::bench::CpuTimes;
using bantay::bench::CpuUse;
using bantay::bench::Die;
using bantay::bench::g_discarded;
using bantay::bench::g_noisy;
using bantay::bench::Get;
using bantay::bench::Post;
using bantay::bench::Send;
using bantay::bench::Histogram;
using bantay::bench::Join;
using bantay::bench::MakeSetup;
using bantay::bench::Measure;
using bantay::bench::Measured;
using bantay::bench::Median;
using bantay::bench::ParseList;
using bantay::bench::QuietGate;
using bantay::bench::RandomCode;
using bantay::bench::Seconds;
using bantay::bench::Setup;
using bantay::bench::StartServer;
using bantay::bench::ThreadsByName;
using bantay::bench::ThreadsPerRequest;
using bantay::bench::ThreadUses;
using bantay::bench::UntilQuiet;
using bantay::bench::VmRssKb;
using bantay::models::Hash256;

constexpr int kRadius = 31;  // the server's default match.radius
constexpr size_t kQueries = 100'000;

struct Options : QuietGate {
  size_t entries = 1'000'000;
  int reps = 3;
  double seconds = 10;
  double warmup = 2;
  std::vector<int> io_threads = {1, 2};
  std::vector<int> connections = {16, 32, 64};
  double rate = 12'500;
  int open_connections = 32;
  int jpeg_connections = 8;
  std::vector<std::string> parts = {"baseline", "closed", "open", "jpeg", "change"};
  double soak = 0;
  double soak_rate = 0;
  double serve_only = 0;
  std::string postgres;  // the store's database (empty: SQLite in a temporary directory)
  bool Part(const std::string& name) const {
    return std::find(parts.begin(), parts.end(), name) != parts.end();
  }
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      std::printf(
          "usage: server_bench [--entries N] [--reps N] [--seconds S] [--warmup S]\n"
          "  [--io-threads 1,2] [--connections 16,32,64] [--rate R] [--open-connections N]\n"
          "  [--jpeg-connections N] [--parts baseline,closed,open,jpeg,change] [--soak S]\n"
          "  [--soak-rate R] [--max-others CORES] [--attempts N] [--quiet-wait S]\n"
          "  [--serve-only S] [--postgres URL]\n"
          "(what each part measures: the top of bench/server_bench.cc)\n");
      std::exit(0);
    }
    if (i + 1 >= argc) Die("flag " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--entries") {
      o.entries = std::stoul(value);
    } else if (flag == "--reps") {
      o.reps = std::stoi(value);
    } else if (flag == "--seconds") {
      o.seconds = std::stod(value);
    } else if (flag == "--warmup") {
      o.warmup = std::stod(value);
    } else if (flag == "--io-threads") {
      o.io_threads = ParseList(value);
    } else if (flag == "--connections") {
      o.connections = ParseList(value);
    } else if (flag == "--rate") {
      o.rate = std::stod(value);
    } else if (flag == "--open-connections") {
      o.open_connections = std::stoi(value);
    } else if (flag == "--jpeg-connections") {
      o.jpeg_connections = std::stoi(value);
    } else if (flag == "--parts") {
      o.parts.clear();
      std::stringstream in(value);
      std::string item;
      while (std::getline(in, item, ',')) o.parts.push_back(item);
    } else if (flag == "--soak") {
      o.soak = std::stod(value);
    } else if (flag == "--soak-rate") {
      o.soak_rate = std::stod(value);
    } else if (flag == "--max-others") {
      o.max_others = std::stod(value);
    } else if (flag == "--attempts") {
      o.attempts = std::stoi(value);
    } else if (flag == "--quiet-wait") {
      o.quiet_wait = std::stod(value);
    } else if (flag == "--serve-only") {
      o.serve_only = std::stod(value);
    } else if (flag == "--postgres") {
      o.postgres = value;
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (o.reps < 1 || o.io_threads.empty() || o.connections.empty())
    Die("bad flags");
  return o;
}

// --- Workload ----------------------------------------------------------------

struct Request {
  std::string head;  // request line, headers and (for JSON) the body
  const std::vector<uint8_t>* body = nullptr;  // an image, sent after head
  int expect_match = -1;  // 1: must match, 0: must not, -1: not checked
};

struct Workload {
  std::vector<std::array<uint8_t, 32>> values;  // of the stored entries
  std::vector<Hash256> queries;
  std::vector<bool> planted;
  std::vector<std::string> bodies;  // {"pdq":"..."}
};

Workload MakeWorkload(size_t entries) {
  Workload w;
  std::mt19937_64 rng(20261124);
  w.values.reserve(entries);
  for (size_t i = 0; i < entries; ++i) w.values.push_back(RandomCode(rng));
  std::mt19937_64 qrng(5);
  for (size_t i = 0; i < kQueries; ++i) {
    const bool plant = qrng() % 100 == 0;
    std::array<uint8_t, 32> code;
    if (plant) {
      code = w.values[qrng() % entries];
      const int flips = static_cast<int>(qrng() % 25);
      std::vector<int> bits(256);
      for (int k = 0; k < 256; ++k) bits[k] = k;
      for (int k = 0; k < flips; ++k) {
        std::swap(bits[k], bits[k + qrng() % (256 - k)]);
        code[bits[k] / 8] ^= static_cast<uint8_t>(1u << (bits[k] % 8));
      }
    } else {
      code = RandomCode(qrng);
    }
    w.queries.emplace_back(code);
    w.planted.push_back(plant);
    w.bodies.push_back("{\"pdq\":\"" + w.queries.back().ToHex() + "\"}");
  }
  return w;
}

std::string RequestHead(const std::string& key, const std::string& type,
                        size_t length) {
  return "POST /v1/match HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
         "Bearer " +
         key + "\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

std::vector<Request> HashRequests(const Workload& w, const std::string& key) {
  std::vector<Request> out;
  out.reserve(w.bodies.size());
  for (size_t i = 0; i < w.bodies.size(); ++i) {
    Request r;
    r.head =
        RequestHead(key, "application/json", w.bodies[i].size()) + w.bodies[i];
    r.expect_match = w.planted[i] ? 1 : 0;
    out.push_back(std::move(r));
  }
  return out;
}

// pdq_bench's workload: 8 random 16:9 crops of each photograph, resized to
// 1920x1080, JPEG quality 80..95, the same seed (so the same 104 frames).
std::vector<std::vector<uint8_t>> MakeFrames() {
  std::vector<std::string> sources;
  const std::string dir = "/usr/share/backgrounds/mate/";
  for (const auto& entry :
       std::filesystem::directory_iterator(dir + "nature")) {
    if (entry.path().extension() == ".jpg")
      sources.push_back(entry.path().string());
  }
  sources.push_back(dir + "abstract/Elephants_3840x2160.jpg");
  std::sort(sources.begin(), sources.end());
  std::mt19937 rng(20261123);
  std::vector<std::vector<uint8_t>> jpegs;
  for (const std::string& path : sources) {
    const cv::Mat photo = cv::imread(path, cv::IMREAD_COLOR);
    if (photo.empty()) continue;
    for (int k = 0; k < 8; ++k) {
      const int max_w = std::min(photo.cols, photo.rows * 16 / 9);
      const int w = max_w * (60 + static_cast<int>(rng() % 41)) / 100;
      const int h = w * 9 / 16;
      const int x =
          static_cast<int>(rng() % static_cast<unsigned>(photo.cols - w + 1));
      const int y =
          static_cast<int>(rng() % static_cast<unsigned>(photo.rows - h + 1));
      cv::Mat frame;
      cv::resize(photo(cv::Rect(x, y, w, h)), frame, cv::Size(1920, 1080), 0, 0,
                 w >= 1920 ? cv::INTER_AREA : cv::INTER_CUBIC);
      std::vector<uint8_t> jpeg;
      const int quality = 80 + static_cast<int>(rng() % 16);
      cv::imencode(".jpg", frame, jpeg, {cv::IMWRITE_JPEG_QUALITY, quality});
      jpegs.push_back(std::move(jpeg));
    }
  }
  if (jpegs.empty())
    Die("no photographs under " + dir + " (install mate-backgrounds)");
  return jpegs;
}

// --- Load generator ----------------------------------------------------------

// Errors of every run, including runs discarded because the machine was busy.
uint64_t g_errors_all = 0;

struct RunSpec {
  int connections = 32;
  double rate = 0;  // requests/s on a fixed schedule; 0: closed loop
  double warmup = 2;
  double seconds = 10;
  double report_every = 0;  // print progress (soak)
  // Called once the warm-up is over.
  std::function<void()> on_measure_start = nullptr;
};

struct RunResult {
  uint64_t completed = 0;  // answered correctly, in the measured window
  uint64_t errors = 0;     // in the measured window
  uint64_t errors_total = 0;
  uint64_t matched = 0;  // of completed, answers with a match
  uint64_t expected_matches = 0;
  double seconds = 0;
  Histogram latency;
  std::string first_error;
  CpuUse cpu;  // over the measured window
  // The server's threads per answered request (ThreadsPerRequest).
  std::string threads;
  // Answers/s from the end of the warm-up to the last answer (open loop:
  // what the server kept up with).
  double achieved = 0;
  double Rate() const { return static_cast<double>(completed) / seconds; }
};

// N keep-alive TLS connections on one io_context run by the calling thread.
// Closed loop: each connection sends its next request when it has read the
// answer to the last. Open loop: request i is due at t0 + i/rate and goes
// out on the first idle connection; its latency is counted from when it was
// due, so time spent waiting for a connection (the server is behind) is
// part of it.
class LoadRun {
 public:
  LoadRun(uint16_t port, ssl::context& tls,
          const std::vector<Request>& requests, RunSpec spec)
      : endpoint_(asio::ip::make_address("127.0.0.1"), port),
        tls_(tls),
        requests_(requests),
        spec_(std::move(spec)),
        timer_(ioc_),
        report_timer_(ioc_),
        watchdog_(ioc_) {}

  RunResult Run() {
    for (int i = 0; i < spec_.connections; ++i) {
      conns_.push_back(std::make_unique<Conn>());
      Connect(conns_.back().get());
    }
    ioc_.run();  // until every connection is up
    ioc_.restart();
    for (auto& c : conns_) {
      if (!c->stream) Die("could not connect: " + result_.first_error);
    }
    result_ = RunResult();
    t0_ = Clock::now();
    warm_end_ = t0_ + Dur(spec_.warmup);
    end_ = warm_end_ + Dur(spec_.seconds);
    if (spec_.rate > 0) {
      total_ =
          static_cast<uint64_t>((spec_.warmup + spec_.seconds) * spec_.rate);
      warm_count_ = static_cast<uint64_t>(spec_.warmup * spec_.rate);
    }
    report_timer_.expires_at(warm_end_);
    report_timer_.async_wait([this](beast::error_code) { OnReport(); });
    running_ = true;
    Watchdog();
    if (spec_.rate > 0) {
      for (auto& c : conns_) idle_.push_back(c.get());
      Pump();
    } else {
      for (auto& c : conns_) Send(c.get(), next_++);
    }
    ioc_.run();
    for (auto& c : conns_) {
      if (c->stream) {
        beast::error_code ec;
        beast::get_lowest_layer(*c->stream).socket().close(ec);
      }
    }
    result_.seconds = spec_.seconds;
    g_errors_all += result_.errors_total;
    if (!cpu_taken_) {
      result_.cpu = CpuShare(cpu_start_, CpuTimes::Now(), Seconds(warm_end_));
      threads_end_ = ThreadsByName();
    }
    result_.threads =
        ThreadsPerRequest(threads_start_, threads_end_, result_.completed);
    result_.achieved =
        static_cast<double>(result_.completed) /
        std::max(spec_.seconds,
                 std::chrono::duration<double>(last_done_ - warm_end_).count());
    return std::move(result_);
  }

 private:
  struct Conn {
    std::optional<ssl::stream<beast::tcp_stream>> stream;
    beast::flat_buffer buffer;
    std::optional<http::response_parser<http::string_body>> parser;
    uint64_t request = 0;
    Clock::time_point sent;
    bool busy = false;  // a request is out
  };

  static Clock::duration Dur(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(seconds));
  }
  Clock::time_point Due(uint64_t i) const {
    return t0_ + Dur(static_cast<double>(i) / spec_.rate);
  }

  void Connect(Conn* c, std::function<void()> then = nullptr) {
    c->stream.emplace(ioc_, tls_);
    c->buffer.clear();
    beast::get_lowest_layer(*c->stream).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(*c->stream)
        .async_connect(endpoint_, [this, c, then](beast::error_code ec) {
          if (ec) return ConnectFailed(c, ec, then);
          beast::get_lowest_layer(*c->stream)
              .socket()
              .set_option(tcp::no_delay(true));
          c->stream->async_handshake(
              ssl::stream_base::client, [this, c, then](beast::error_code hec) {
                if (hec) return ConnectFailed(c, hec, then);
                // No timeout per read and write (each would arm and cancel
                // a timer: a cost the generator would take from the
                // server); the watchdog cuts a request after 10 s instead.
                beast::get_lowest_layer(*c->stream).expires_never();
                if (then) then();
              });
        });
  }
  void ConnectFailed(Conn* c, beast::error_code ec,
                     const std::function<void()>& then) {
    if (result_.first_error.empty())
      result_.first_error = "connect: " + ec.message();
    c->stream.reset();
    if (!running_) return;  // the set-up phase: Run() reports it
    ++result_.errors_total;
    if (Clock::now() >= end_) return;
    // Try again shortly (the soak must survive a dropped connection).
    auto timer = std::make_shared<asio::steady_timer>(
        ioc_, std::chrono::milliseconds(100));
    timer->async_wait(
        [this, c, then, timer](beast::error_code) { Connect(c, then); });
  }

  void Send(Conn* c, uint64_t i) {
    c->request = i;
    c->sent = Clock::now();
    c->busy = true;
    const Request& r = requests_[i % requests_.size()];
    auto on_write = [this, c](beast::error_code ec, size_t) {
      if (ec) return Done(c, ec);
      c->parser.emplace();
      c->parser->body_limit(1 << 20);
      http::async_read(
          *c->stream, c->buffer, *c->parser,
          [this, c](beast::error_code rec, size_t) { Done(c, rec); });
    };
    if (r.body == nullptr) {
      asio::async_write(*c->stream, asio::buffer(r.head), on_write);
    } else {
      const std::array<asio::const_buffer, 2> buffers = {asio::buffer(r.head),
                                                         asio::buffer(*r.body)};
      asio::async_write(*c->stream, buffers, on_write);
    }
  }

  void Done(Conn* c, beast::error_code ec) {
    const Clock::time_point now = Clock::now();
    c->busy = false;
    const uint64_t i = c->request;
    const Request& r = requests_[i % requests_.size()];
    std::string error;
    bool matched = false;
    if (ec) {
      error = "connection: " + ec.message();
    } else {
      const auto& response = c->parser->get();
      matched = response.body().find("\"match\":true") != std::string::npos;
      if (response.result_int() != 200) {
        error = "status " + std::to_string(response.result_int()) + ": " +
                response.body();
      } else if (r.expect_match >= 0 && matched != (r.expect_match == 1)) {
        error = "wrong verdict: " + response.body();
      } else if (!response.keep_alive()) {
        error = "connection not kept alive";
      }
    }
    if (!cpu_taken_ && now >= end_ && measuring_) {
      cpu_taken_ = true;
      result_.cpu =
          CpuShare(cpu_start_, CpuTimes::Now(),
                   std::chrono::duration<double>(now - warm_end_).count());
      threads_end_ = ThreadsByName();
    }
    const bool counted =
        spec_.rate > 0 ? i >= warm_count_ : (now >= warm_end_ && now < end_);
    if (counted) {
      if (error.empty()) {
        last_done_ = now;
        ++result_.completed;
        result_.matched += matched;
        result_.expected_matches += r.expect_match == 1;
        const double latency = std::chrono::duration<double>(
                                   now - (spec_.rate > 0 ? Due(i) : c->sent))
                                   .count();
        result_.latency.Add(latency);
        if (spec_.report_every > 0) interval_.Add(latency);
      } else {
        ++result_.errors;
      }
    }
    if (!error.empty()) {
      ++result_.errors_total;
      if (result_.first_error.empty()) result_.first_error = error;
    }
    if (!error.empty() && (ec || !c->parser->get().keep_alive())) {
      beast::error_code ignored;
      beast::get_lowest_layer(*c->stream).socket().close(ignored);
      c->stream.reset();
      if (now >= end_) return;
      return Connect(c, [this, c] { Next(c); });
    }
    Next(c);
  }

  void Next(Conn* c) {
    if (spec_.rate > 0) {
      idle_.push_back(c);
      Pump();
    } else if (Clock::now() < end_) {
      Send(c, next_++);
    }
  }

  void Pump() {
    const double elapsed =
        std::chrono::duration<double>(Clock::now() - t0_).count();
    const uint64_t due =
        std::min(total_, static_cast<uint64_t>(elapsed * spec_.rate) + 1);
    while (next_ < due && !idle_.empty()) {
      Conn* c = idle_.back();
      idle_.pop_back();
      Send(c, next_++);
    }
    if (next_ >= due && next_ < total_ && !timer_armed_) {
      timer_armed_ = true;
      timer_.expires_at(Due(next_));
      timer_.async_wait([this](beast::error_code) {
        timer_armed_ = false;
        Pump();
      });
    }
  }

  // Closes a connection whose request has been out for over 10 s (its
  // operation then fails and counts as an error); runs every second until
  // the run is over.
  void Watchdog() {
    const Clock::time_point now = Clock::now();
    bool busy = false;
    for (auto& c : conns_) {
      if (!c->busy) continue;
      busy = true;
      if (now - c->sent > std::chrono::seconds(10) && c->stream) {
        beast::error_code ec;
        beast::get_lowest_layer(*c->stream).socket().close(ec);
      }
    }
    if (now >= end_ && !busy && next_ >= total_) return;
    watchdog_.expires_after(std::chrono::seconds(1));
    watchdog_.async_wait([this](beast::error_code) { Watchdog(); });
  }

  void OnReport() {
    const Clock::time_point now = Clock::now();
    if (!measuring_) {
      measuring_ = true;
      cpu_start_ = CpuTimes::Now();
      threads_start_ = ThreadsByName();
      if (spec_.on_measure_start) spec_.on_measure_start();
    } else {
      // This interval's figures (so that a burst of queueing shows when it
      // happened), the RSS and the totals so far.
      const double t = std::chrono::duration<double>(now - warm_end_).count();
      const CpuTimes cpu = CpuTimes::Now();
      const CpuUse use = CpuShare(interval_cpu_, cpu, Seconds(interval_start_));
      std::printf(
          "  [%6.0f s] last %.0f s: %llu answered, p50 %.3f ms, p99 %.3f ms, "
          "max %.1f ms, %s; total %llu answered, %llu errors; VmRSS %ld kB\n",
          t, Seconds(interval_start_),
          static_cast<unsigned long long>(interval_.total()),
          interval_.QuantileMs(0.5), interval_.QuantileMs(0.99),
          interval_.QuantileMs(1.0), use.Text().c_str(),
          static_cast<unsigned long long>(result_.completed),
          static_cast<unsigned long long>(result_.errors), VmRssKb());
      std::fflush(stdout);
    }
    interval_.Clear();
    interval_cpu_ = CpuTimes::Now();
    interval_start_ = Clock::now();
    if (spec_.report_every <= 0) return;
    const Clock::time_point next = now + Dur(spec_.report_every);
    if (next >= end_) return;
    report_timer_.expires_at(next);
    report_timer_.async_wait([this](beast::error_code) { OnReport(); });
  }

  asio::io_context ioc_;
  tcp::endpoint endpoint_;
  ssl::context& tls_;
  const std::vector<Request>& requests_;
  RunSpec spec_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_;
  asio::steady_timer timer_;
  asio::steady_timer report_timer_;
  asio::steady_timer watchdog_;
  bool timer_armed_ = false;
  bool running_ = false;
  bool measuring_ = false;
  Clock::time_point t0_, warm_end_, end_;
  uint64_t next_ = 0;
  uint64_t total_ = 0;
  uint64_t warm_count_ = 0;
  CpuTimes cpu_start_;
  ThreadUses threads_start_, threads_end_;
  Histogram interval_;  // latencies since the last progress line (soak)
  CpuTimes interval_cpu_;
  Clock::time_point interval_start_;
  bool cpu_taken_ = false;
  Clock::time_point last_done_;
  RunResult result_;
};

// Server CPU time per answered request over the measured window: much less
// sensitive to a busy machine than requests/s.
double ServerMicrosPerRequest(const RunResult& res) {
  return res.completed == 0 ? 0.0
                            : res.cpu.server * res.seconds * 1e6 /
                                  static_cast<double>(res.completed);
}

// --- Baselines ---------------------------------------------------------------

// A HashIndex loaded from the same store, for the in-process baseline.
std::unique_ptr<bantay::matcher::HashIndex> LoadBaselineIndex(const Setup& s) {
  namespace m = bantay::matcher;
  m::StoreKeys keys;
  keys.data_keys = {s.data_key};
  auto store = m::Store::Open(s.store_url, std::move(keys));
  if (!store.ok()) Die("Store::Open: " + store.error().ToString());
  auto index = std::make_unique<m::HashIndex>();
  if (!m::LoadIndexFromStore(**store, index.get()).ok())
    Die("LoadIndexFromStore");
  return index;
}

// The same queries straight on the index, 2 threads.
double InProcessRate(const bantay::matcher::HashIndex& index, const Workload& w,
                     double seconds, uint64_t* matches) {
  namespace m = bantay::matcher;
  const std::shared_ptr<const m::IndexSnapshot> snapshot = index.Snapshot();
  std::atomic<uint64_t> done{0}, found{0};
  const auto start = Clock::now();
  auto work = [&](size_t first) {
    std::vector<m::Match> out;
    uint64_t n = 0, f = 0;
    for (size_t i = first;; i += 2) {
      out.clear();
      snapshot->MatchPdq(w.queries[i % w.queries.size()], kRadius, &out);
      ++n;
      f += !out.empty();
      if ((n & 255) == 0 && Seconds(start) >= seconds) break;
    }
    done += n;
    found += f;
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  const double elapsed = Seconds(start);
  *matches = found;
  return static_cast<double>(done) / elapsed;
}

// What the offline threads spent per frame: CPU time and minor page faults
// (getrusage of each thread).
struct OfflineCost {
  double cpu_ms = 0;
  double faults = 0;
};

// Frames/s of one thread hashing the frames as the server does (compatible
// mode, MD5 and SHA-256 of the bytes).
double OfflineJpegRate(const std::vector<std::vector<uint8_t>>& frames,
                       double seconds, int64_t max_pixels, int threads = 1,
                       OfflineCost* cost = nullptr) {
  bantay::models::HashOptions options;
  options.max_pixels = max_pixels;
  std::atomic<size_t> total{0};
  std::mutex mu;
  double cpu = 0, faults = 0;
  const auto start = Clock::now();
  auto work = [&](size_t first) {
    struct rusage before {};
    ::getrusage(RUSAGE_THREAD, &before);
    bantay::models::ImageHasher hasher(options);
    size_t n = 0;
    while (Seconds(start) < seconds) {
      auto r = hasher.Hash(frames[(first + n) % frames.size()]);
      if (!r.ok()) Die("ImageHasher: " + r.error().ToString());
      ++n;
    }
    struct rusage after {};
    ::getrusage(RUSAGE_THREAD, &after);
    auto secs = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
    std::lock_guard lock(mu);
    cpu += secs(after.ru_utime) - secs(before.ru_utime) +
           secs(after.ru_stime) - secs(before.ru_stime);
    faults += static_cast<double>(after.ru_minflt - before.ru_minflt);
    total += n;
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back(work, static_cast<size_t>(t) * frames.size() / 2);
  }
  for (std::thread& t : pool) t.join();
  if (cost != nullptr && total > 0) {
    cost->cpu_ms = cpu * 1e3 / static_cast<double>(total);
    cost->faults = faults / static_cast<double>(total);
  }
  return static_cast<double>(total) / Seconds(start);
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseOptions(argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i)
    command += (i ? " " : "") + std::string(argv[i]);
  std::string load;
  std::getline(std::ifstream("/proc/loadavg"), load);
  std::printf(
      "command: %s\nmachine: %u CPUs (nproc), %s, %ld MB RAM; load average "
      "%s\n",
      command.c_str(), std::thread::hardware_concurrency(), CpuModel().c_str(),
      ::sysconf(_SC_PHYS_PAGES) / 1024 * ::sysconf(_SC_PAGE_SIZE) / 1024,
      load.c_str());
  std::fflush(stdout);

  const Workload w = MakeWorkload(opt.entries);
  Setup setup = MakeSetup(w.values, "server_bench", opt.postgres);
  const std::vector<Request> hash_requests = HashRequests(w, setup.api_key);
  size_t planted = 0;
  for (bool p : w.planted) planted += p;
  std::printf(
      "queries: %zu, of which %zu near-duplicates of entries (0..24 bits)\n",
      w.queries.size(), planted);

  ssl::context tls(ssl::context::tls_client);
  tls.load_verify_file(setup.config.tls_cert);
  tls.set_verify_mode(ssl::verify_peer);

  if (opt.serve_only > 0) {
    const std::string queries = setup.dir + "/queries.txt";
    {
      std::ofstream out(queries);
      for (const std::string& body : w.bodies) out << body << "\n";
    }
    auto server = StartServer(setup, opt.io_threads[0], tls, opt.entries);
    std::printf("port=%u\nkey=%s\nqueries=%s\n", server->port(),
                setup.api_key.c_str(), queries.c_str());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.serve_only));
    server.reset();
    std::filesystem::remove_all(setup.dir);
    return 0;
  }

  std::vector<std::string> lines;
  char text[1024];

  // --- in-process baseline ---
  double in_process = 0;
  if (opt.Part("baseline")) {
    const std::unique_ptr<bantay::matcher::HashIndex> index =
        LoadBaselineIndex(setup);
    std::vector<double> rates, cpu_us;
    for (int r = 0; r < opt.reps; ++r) {
      uint64_t matches = 0;
      const Measured m = UntilQuiet(opt, "in-process run", [&] {
        return Measure([&] { return InProcessRate(*index, w, 3.0, &matches); });
      });
      rates.push_back(m.value);
      // The search threads are this process's; the calling thread waits.
      cpu_us.push_back((m.cpu.server + m.cpu.client) / m.value * 1e6);
      std::printf(
          "in-process MatchPdq, 2 threads, run %d: %.0f q/s (%llu matched), "
          "%.1f us CPU/query; %s\n",
          r + 1, rates.back(), static_cast<unsigned long long>(matches),
          cpu_us.back(), m.cpu.Text().c_str());
    }
    in_process = Median(rates);
    std::snprintf(text, sizeof text,
                  "in-process MatchPdq (2 threads): %.0f q/s [%s], %.1f us "
                  "CPU/query",
                  in_process, Join(rates, "%.0f").c_str(), Median(cpu_us));
    lines.push_back(text);
  }

  // --- hash-only matches ---
  double best_rate = 0;
  int best_io = opt.io_threads[0];
  for (int io : opt.io_threads) {
    if (!opt.Part("closed") && !opt.Part("open")) break;
    auto server = StartServer(setup, io, tls, opt.entries);
    double io_best = 0;  // the best closed-loop median of this setting
    if (opt.Part("closed")) {
      for (int conns : opt.connections) {
        std::vector<double> rates, p50, p99, cpu_us;
        uint64_t errors = 0;
        for (int r = 0; r < opt.reps; ++r) {
          RunResult res = UntilQuiet(opt, "closed run", [&] {
            LoadRun run(server->port(), tls, hash_requests,
                        {.connections = conns,
                         .warmup = opt.warmup,
                         .seconds = opt.seconds});
            return run.Run();
          });
          rates.push_back(res.Rate());
          p50.push_back(res.latency.QuantileMs(0.5));
          p99.push_back(res.latency.QuantileMs(0.99));
          cpu_us.push_back(ServerMicrosPerRequest(res));
          errors += res.errors_total;
          std::printf(
              "closed io=%d conns=%d run %d: %.0f req/s, p50 %.2f ms, p99 %.2f "
              "ms, server CPU %.1f us/req (%s), "
              "%llu errors, %llu/%llu planted matched; %s%s%s\n",
              io, conns, r + 1, res.Rate(), p50.back(), p99.back(),
              cpu_us.back(), res.threads.c_str(),
              static_cast<unsigned long long>(res.errors_total),
              static_cast<unsigned long long>(res.matched),
              static_cast<unsigned long long>(res.expected_matches),
              res.cpu.Text().c_str(),
              res.first_error.empty() ? "" : "; first error: ",
              res.first_error.substr(0, 200).c_str());
          std::fflush(stdout);
        }
        const double rate = Median(rates);
        io_best = std::max(io_best, rate);
        if (rate > best_rate) {
          best_rate = rate;
          best_io = io;
        }
        std::snprintf(text, sizeof text,
                      "closed loop, io_threads %d, %2d conns: %.0f req/s [%s], "
                      "p50 %.2f ms, "
                      "p99 %.2f ms, server CPU %.1f us/req [%s], errors %llu, "
                      "%.3fx in-process",
                      io, conns, rate, Join(rates, "%.0f").c_str(), Median(p50),
                      Median(p99), Median(cpu_us), Join(cpu_us, "%.1f").c_str(),
                      static_cast<unsigned long long>(errors),
                      in_process > 0 ? rate / in_process : 0.0);
        lines.push_back(text);
      }
    }
    if (opt.Part("open")) {
      // The target's rate, and half of the capacity measured just now (the
      // latency of a server that is not overloaded, whatever its capacity).
      std::vector<double> open_rates = {opt.rate};
      if (io_best > 0) open_rates.push_back(std::round(io_best / 2));
      for (double rate : open_rates) {
        std::vector<double> p50, p99, p999, achieved;
        uint64_t errors = 0;
        for (int r = 0; r < opt.reps; ++r) {
          RunResult res = UntilQuiet(opt, "open run", [&] {
            LoadRun run(server->port(), tls, hash_requests,
                        {.connections = opt.open_connections,
                         .rate = rate,
                         .warmup = opt.warmup,
                         .seconds = std::max(opt.seconds, 20.0)});
            return run.Run();
          });
          p50.push_back(res.latency.QuantileMs(0.5));
          p99.push_back(res.latency.QuantileMs(0.99));
          p999.push_back(res.latency.QuantileMs(0.999));
          achieved.push_back(res.achieved);
          errors += res.errors_total;
          std::printf(
              "open io=%d rate=%.0f conns=%d run %d: %llu answered (%.0f/s), "
              "p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, %llu errors; %s%s%s\n",
              io, rate, opt.open_connections, r + 1,
              static_cast<unsigned long long>(res.completed), res.achieved,
              p50.back(), p99.back(), p999.back(),
              static_cast<unsigned long long>(res.errors_total),
              res.cpu.Text().c_str(),
              res.first_error.empty() ? "" : "; first error: ",
              res.first_error.substr(0, 200).c_str());
          std::fflush(stdout);
        }
        std::snprintf(text, sizeof text,
                      "open loop, io_threads %d, %.0f req/s on %d conns: p50 "
                      "%.3f ms, p99 %.3f ms [%s], p99.9 %.3f ms, answered "
                      "%.0f/s, errors %llu",
                      io, rate, opt.open_connections, Median(p50), Median(p99),
                      Join(p99, "%.3f").c_str(), Median(p999), Median(achieved),
                      static_cast<unsigned long long>(errors));
        lines.push_back(text);
      }
    }
    server.reset();
  }

  // --- 1080p JPEG ---
  if (opt.Part("jpeg")) {
    const std::vector<std::vector<uint8_t>> frames = MakeFrames();
    std::vector<Request> jpeg_requests;
    for (const auto& f : frames) {
      jpeg_requests.push_back(
          {RequestHead(setup.api_key, "image/jpeg", f.size()), &f, -1});
    }
    auto server = StartServer(setup, best_io, tls, opt.entries);
    std::vector<double> offline, offline2, served, ratios, cpu_ratios,
        share_ratios;
    uint64_t errors = 0;
    auto offline_run = [&](int threads, OfflineCost* cost) {
      return UntilQuiet(opt, "offline run", [&] {
        return Measure([&] {
          return OfflineJpegRate(frames, 5.0, setup.config.max_pixels,
                                 threads, cost);
        });
      });
    };
    for (int r = 0; r < opt.reps; ++r) {
      // The single-core rate is measured right before and right after the
      // server's run and averaged: this machine's speed drifts over tens of
      // seconds (other virtual machines on the host), which one window
      // measured earlier mistook for a change in the ratio.
      OfflineCost cost2, cost_before, cost_after;
      const Measured two = offline_run(2, &cost2);
      const Measured before = offline_run(1, &cost_before);
      RunResult res = UntilQuiet(opt, "jpeg run", [&] {
        LoadRun run(server->port(), tls, jpeg_requests,
                    {.connections = opt.jpeg_connections,
                     .warmup = opt.warmup,
                     .seconds = std::max(opt.seconds, 15.0)});
        return run.Run();
      });
      const Measured after = offline_run(1, &cost_after);
      const double single = (before.value + after.value) / 2;
      const double single_ms = (cost_before.cpu_ms + cost_after.cpu_ms) / 2;
      offline.push_back(single);
      offline2.push_back(two.value);
      served.push_back(res.Rate());
      ratios.push_back(res.Rate() / (2 * single));
      const double server_ms = res.cpu.server * 1e3 / res.Rate();
      cpu_ratios.push_back(single_ms / server_ms);
      share_ratios.push_back(res.Rate() / ((2 - res.cpu.client) * single));
      errors += res.errors_total;
      std::printf(
          "jpeg run %d: offline 1 core %.1f frames/s [before %.1f, after "
          "%.1f] (%.2f CPU ms, %.1f faults a frame); 2 threads %.1f (%.2f "
          "CPU ms a frame); server %.1f frames/s on %d conns (p50 %.1f ms, "
          "p99 %.1f ms), %llu errors; ratio %.3f (offline CPU / server CPU "
          "per frame %.3f; of the cores the generator left %.3f); %s; per "
          "frame: server %.2f CPU ms: %s%s%s\n",
          r + 1, single, before.value, after.value, single_ms,
          (cost_before.faults + cost_after.faults) / 2, two.value,
          cost2.cpu_ms, served.back(), opt.jpeg_connections,
          res.latency.QuantileMs(0.5), res.latency.QuantileMs(0.99),
          static_cast<unsigned long long>(res.errors_total), ratios.back(),
          cpu_ratios.back(), share_ratios.back(), res.cpu.Text().c_str(),
          server_ms, res.threads.c_str(),
          res.first_error.empty() ? "" : "; first error: ",
          res.first_error.substr(0, 200).c_str());
      std::fflush(stdout);
    }
    std::snprintf(
        text, sizeof text,
        "1080p JPEG (%zu frames), io_threads %d: server %.1f frames/s [%s], "
        "offline 1 core %.1f [%s] (2 threads %.1f), server/(2 x offline) = "
        "%.3f [%s]; offline CPU / server CPU per frame %.3f [%s]; of the "
        "cores the generator left %.3f [%s]; errors %llu",
        frames.size(), best_io, Median(served), Join(served, "%.1f").c_str(),
        Median(offline), Join(offline, "%.1f").c_str(), Median(offline2),
        Median(ratios), Join(ratios, "%.3f").c_str(), Median(cpu_ratios),
        Join(cpu_ratios, "%.3f").c_str(), Median(share_ratios),
        Join(share_ratios, "%.3f").c_str(),
        static_cast<unsigned long long>(errors));
    lines.push_back(text);
  }

  // --- changes through the API ---
  // Each change adds one entry (a new random code) to list bench-change with
  // the operator's key; the server answers once its index serves the new
  // version, and the code is then matched with the platform key (it must
  // match). Timed: request to answer, and to the match. Then each entry
  // added is disabled (PATCH), timed to the answer and to a match that no
  // longer finds it: a change that only adds entries hashes only those,
  // one that disables an entry hashes the whole state (Store). The first
  // change, made as soon as the server is ready, waits for its writer's
  // preparation, which reads and checks every row of the store (the
  // baseline); the later ones start from the state the one before left.
  // Then the same under an open-loop matching load at --rate on
  // --open-connections.
  if (opt.Part("change")) {
    auto server = StartServer(setup, best_io, tls, opt.entries);
    std::mt19937_64 rng(20261207);
    int made = 0;
    std::vector<std::string> codes;  // by entry added
    auto matches = [&](const std::string& hex) {
      const auto [status, verdict] =
          Post(server->port(), tls, "/v1/match", setup.api_key, "{\"pdq\":\"" + hex + "\"}");
      if (status != 200) Die("match: status " + std::to_string(status) + " " + verdict);
      return verdict.find("\"match\":true") != std::string::npos;
    };
    auto add = [&](double* answered, double* matched) {
      const Hash256 code(RandomCode(rng));
      const std::string hex = code.ToHex();
      codes.push_back(hex);
      const auto start = Clock::now();
      const auto [status, body] = Post(
          server->port(), tls, "/v1/lists/bench-change/entries", setup.operator_key,
          "{\"entries\":[{\"type\":\"pdq\",\"value\":\"" + hex +
              "\",\"reference\":\"change-" + std::to_string(++made) + "\"}]}");
      *answered = Seconds(start);
      if (status != 201) Die("change: status " + std::to_string(status) + " " + body);
      if (!matches(hex)) Die("the entry added does not match");
      *matched = Seconds(start);
    };
    // The ids of the entries added, in the order they were (ids ascend).
    auto added_ids = [&] {
      const std::string page = Get(server->port(), tls,
                                   "/v1/lists/bench-change/entries?limit=100",
                                   setup.operator_key);
      std::vector<uint64_t> ids;
      const json::value parsed = json::parse(page);
      for (const json::value& e : parsed.at("entries").as_array()) {
        ids.push_back(static_cast<uint64_t>(e.at("id").as_int64()));
      }
      if (ids.size() != codes.size()) Die("bench-change holds other entries than those added");
      return ids;
    };
    auto disable = [&](uint64_t id, const std::string& hex, double* answered, double* matched) {
      const auto start = Clock::now();
      const auto [status, body] =
          Send(server->port(), tls, http::verb::patch,
               "/v1/lists/bench-change/entries/" + std::to_string(id), setup.operator_key,
               "{\"status\":\"disabled\"}");
      *answered = Seconds(start);
      if (status != 200) Die("disable: status " + std::to_string(status) + " " + body);
      if (matches(hex)) Die("the entry disabled still matches");
      *matched = Seconds(start);
    };
    struct Times {
      std::vector<double> answered, matched;
      void Add(double a, double m) {
        answered.push_back(a);
        matched.push_back(m);
      }
    };
    auto phase = [&](const char* name, int changes, Times* adds, Times* disables) {
      const size_t first = codes.size();
      for (int i = 0; i < changes; ++i) {
        double a = 0, m = 0;
        add(&a, &m);
        adds->Add(a, m);
        std::printf("change %d (%s, added): answered after %.3f s, matched after %.3f s\n",
                    made, name, a, m);
        std::fflush(stdout);
      }
      const std::vector<uint64_t> ids = added_ids();
      for (size_t i = first; i < codes.size(); ++i) {
        double a = 0, m = 0;
        disable(ids[i], codes[i], &a, &m);
        disables->Add(a, m);
        std::printf("entry %llu (%s, disabled): answered after %.3f s, no longer matched after "
                    "%.3f s\n",
                    static_cast<unsigned long long>(ids[i]), name, a, m);
        std::fflush(stdout);
      }
    };
    double first_answer = 0, first_match = 0;
    add(&first_answer, &first_match);
    std::printf("change 1 (the server's first, as soon as it is ready: waits for its writer to "
                "read and check every row): answered after "
                "%.3f s, matched after %.3f s\n",
                first_answer, first_match);
    Times idle_adds, idle_disables, load_adds, load_disables;
    phase("idle", 7, &idle_adds, &idle_disables);
    // Under load: the matching load runs on its own thread meanwhile.
    RunResult loaded;
    constexpr int kLoadSeconds = 2 + 20;  // warm-up, then measured
    const auto load_start = Clock::now();
    std::thread loader([&] {
      LoadRun run(server->port(), tls, hash_requests,
                  {.connections = opt.open_connections, .rate = opt.rate, .warmup = 2,
                   .seconds = kLoadSeconds - 2, .report_every = 1});
      loaded = run.Run();
    });
    std::this_thread::sleep_for(std::chrono::seconds(3));
    phase("under load", 7, &load_adds, &load_disables);
    const bool outlasted = Seconds(load_start) > kLoadSeconds;
    loader.join();
    // Figures "under load" from changes the load did not outlast would be
    // idle ones.
    if (outlasted) Die("the changes under load outlasted the load: make it longer");
    auto max = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
    std::snprintf(
        text, sizeof text,
        "changes through the API (to a %zu-entry store): one entry added, idle %.3f s to the "
        "answer, %.3f s to the match [max %.3f]; under %.0f req/s of matching %.3f s / %.3f s "
        "[max %.3f]; one entry disabled, idle %.3f s / %.3f s to no match [max %.3f], under load "
        "%.3f s / %.3f s [max %.3f] (the loaded run's p99 over its 20 s, changes and the time "
        "between them: %.2f ms, %llu errors); "
        "the server's first change as soon as it is ready (baseline: it waits for the writer to "
        "read and check every row) %.3f s / %.3f s, "
        "ratio %.1fx to an added entry's later ones",
        opt.entries, Median(idle_adds.answered), Median(idle_adds.matched),
        max(idle_adds.matched), opt.rate, Median(load_adds.answered), Median(load_adds.matched),
        max(load_adds.matched), Median(idle_disables.answered), Median(idle_disables.matched),
        max(idle_disables.matched), Median(load_disables.answered),
        Median(load_disables.matched), max(load_disables.matched),
        loaded.latency.QuantileMs(0.99), static_cast<unsigned long long>(loaded.errors_total),
        first_answer, first_match, first_match / Median(idle_adds.matched));
    lines.push_back(text);
    server.reset();
  }

  // --- soak ---
  if (opt.soak > 0) {
    double rate = opt.soak_rate;
    if (rate <= 0) {
      if (best_rate <= 0) Die("--soak needs the closed part or --soak-rate");
      rate = 0.7 * best_rate;
    }
    auto server = StartServer(setup, best_io, tls, opt.entries);
    long rss_start = 0;
    LoadRun run(server->port(), tls, hash_requests,
                {.connections = opt.open_connections,
                 .rate = rate,
                 .warmup = 30,
                 .seconds = opt.soak,
                 .report_every = std::min(60.0, opt.soak / 4),
                 .on_measure_start = [&] { rss_start = VmRssKb(); }});
    std::printf(
        "soak: %.0f req/s for %.0f s (30 s warm-up), io_threads %d, %d conns\n",
        rate, opt.soak, best_io, opt.open_connections);
    std::fflush(stdout);
    RunResult res = run.Run();
    const long rss_end = VmRssKb();
    std::snprintf(
        text, sizeof text,
        "soak %.0f s at %.0f req/s: %llu answered (%.0f/s), errors %llu, p50 "
        "%.3f ms, "
        "p99 %.3f ms, p99.9 %.3f ms; VmRSS %ld kB -> %ld kB (%+.2f%%); %s%s%s",
        opt.soak, rate, static_cast<unsigned long long>(res.completed),
        res.achieved, static_cast<unsigned long long>(res.errors_total),
        res.latency.QuantileMs(0.5), res.latency.QuantileMs(0.99),
        res.latency.QuantileMs(0.999), rss_start, rss_end,
        100.0 * static_cast<double>(rss_end - rss_start) /
            static_cast<double>(rss_start),
        res.cpu.Text().c_str(),
        res.first_error.empty() ? "" : "; first error: ",
        res.first_error.substr(0, 200).c_str());
    lines.push_back(text);
  }

  std::printf(
      "\nsummary (%s; %d reps, medians [runs]; %d runs repeated because other "
      "processes used more than %.2f cores, %d kept although they did; "
      "errors in all runs: %llu)\n",
      command.c_str(), opt.reps, g_discarded, opt.max_others, g_noisy,
      static_cast<unsigned long long>(g_errors_all));
  for (const std::string& line : lines) std::printf("  %s\n", line.c_str());
  std::filesystem::remove_all(setup.dir);
  return 0;
}
