// bantay-server stream sessions end to end: many concurrent live streams,
// each sending one 640x360 JPEG frame per second of stream time over a
// WebSocket (TLS), with the server library in this process and an
// asynchronous load generator on the same cores.
//
// Setup (fixed seeds): server_bench's (a temporary SQLite store, a
// self-signed certificate, one platform key, Server::Start on 127.0.0.1:0,
// compute_threads 2, io_threads 1, access log off), the store holding
// --entries (1M) random PDQ codes plus the PDQ hashes of the first
// kPlanted frames of the workload, so that those frames must match.
//
// Frames: --frames (240) JPEGs of 640x360, quality 80..90, random 16:9
// crops of the mate-backgrounds photographs (as pdq_bench's frames, smaller)
// whose PDQ quality is at least 70 (the stream's gate is 50) and which are
// more than 62 bits from each other in all dihedral variants;
// stream i sends frame (7 i + n) mod F as its n-th frame, so that no stream
// sends the same picture twice in a row and 1 frame in F/kPlanted matches.
//
// A run (--streams, 500): every stream is created with POST /v1/streams
// ({"sample_interval_ms":1000,"skip_distance":-1}: every frame is hashed,
// none is skipped as a near-duplicate of the last, the worst case for the
// server; everything else is the server's default policy: quality gate,
// letterbox trimming, dihedral matching, 2 of 10) and opens
// GET /v1/streams/{id}/ws. Stream i's n-th frame is due at
// t0 + i/streams s + n s (the streams' seconds are spread evenly), stamped
// with stream time n * 1000 ms, and sent at that time on the stream's
// WebSocket; its latency runs from when it was due to when its frame event
// arrived (open loop: a server that falls behind shows as latency, not as
// a slower sender). A frame event must say "match" for a planted frame and
// "no_match" for the others; anything else (an error event, "dropped", a
// wrong verdict, no event within 5 s of the end) counts as an error.
// The first --warmup (5) seconds are not measured; then --seconds (30).
// Sessions are deleted after the run.
//
// Baseline in the same run: the frames' decode + PDQ hash on one core with
// the options a stream uses (models::ImageHasher, compatible mode, border
// trimming), over the same frames in memory: the load a run puts on the
// server is streams / (2 x that rate) of its two cores' hashing capacity.
//
// Reported per run: frames/s answered, latency p50/p99/p99.9/max, errors,
// dropped, server CPU per frame, cores used by the load generator, the
// server and other processes; medians over --reps (3). A run during which
// other processes used more than --max-others cores (0.15) is repeated
// after --quiet-wait s, at most --attempts times (server_bench's gate).
//
// Run: build/bin/stream_bench                     (~6 min on a quiet machine)
//      build/bin/stream_bench --streams 250,500,750 --reps 1
// Flags: --entries N --streams N,N --frames N --seconds S --warmup S
//        --reps N --max-others CORES --attempts N --quiet-wait S
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/models/hash256.h"
#include "bantay/models/image_hasher.h"
#include "bench_util.h"
#include "server_bench_util.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
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
using bantay::bench::Histogram;
using bantay::bench::Join;
using bantay::bench::MakeSetup;
using bantay::bench::Median;
using bantay::bench::ParseList;
using bantay::bench::QuietGate;
using bantay::bench::RandomCode;
using bantay::bench::Seconds;
using bantay::bench::Setup;
using bantay::bench::StartServer;
using bantay::bench::ThreadsByName;
using bantay::bench::ThreadsPerRequest;
using bantay::bench::UntilQuiet;

constexpr size_t kPlanted = 8;  // frames whose hashes are in the store
constexpr size_t kHeaderBytes = 24;
constexpr char kPolicy[] = R"({"sample_interval_ms":1000,"skip_distance":-1})";

struct Options : QuietGate {
  size_t entries = 1'000'000;
  std::vector<int> streams = {500};
  int frames = 240;
  double seconds = 30;
  double warmup = 5;
  int reps = 3;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help") {
      std::printf(
          "usage: stream_bench [--entries N] [--streams N] [--frames N] [--seconds S]\n"
          "  [--warmup S] [--reps N] [--max-others CORES] [--attempts N] [--quiet-wait S]\n"
          "(what it measures: the top of bench/stream_bench.cc)\n");
      std::exit(0);
    }
    if (i + 1 >= argc) Die("flag " + flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--entries") {
      o.entries = std::stoul(value);
    } else if (flag == "--streams") {
      o.streams = ParseList(value);
    } else if (flag == "--frames") {
      o.frames = std::stoi(value);
    } else if (flag == "--seconds") {
      o.seconds = std::stod(value);
    } else if (flag == "--warmup") {
      o.warmup = std::stod(value);
    } else if (flag == "--reps") {
      o.reps = std::stoi(value);
    } else if (flag == "--max-others") {
      o.max_others = std::stod(value);
    } else if (flag == "--attempts") {
      o.attempts = std::stoi(value);
    } else if (flag == "--quiet-wait") {
      o.quiet_wait = std::stod(value);
    } else {
      Die("unknown flag " + flag);
    }
  }
  if (o.reps < 1 || o.streams.empty() ||
      o.frames < static_cast<int>(kPlanted) * 2 || o.seconds <= 0) {
    Die("bad flags");
  }
  for (int n : o.streams) {
    if (n < 1) Die("--streams must be positive");
  }
  return o;
}

// --- Workload ----------------------------------------------------------------

bantay::models::HashOptions StreamHashOptions() {
  bantay::models::HashOptions options;
  options.trim_borders = true;  // the default policy's
  return options;
}

std::vector<std::vector<uint8_t>> MakeFrames(int count) {
  std::vector<std::string> sources;
  const std::string dir = "/usr/share/backgrounds/mate/";
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(dir + "nature", ec)) {
    if (entry.path().extension() == ".jpg")
      sources.push_back(entry.path().string());
  }
  sources.push_back(dir + "abstract/Elephants_3840x2160.jpg");
  std::sort(sources.begin(), sources.end());
  std::vector<cv::Mat> photos;
  for (const std::string& path : sources) {
    cv::Mat photo = cv::imread(path, cv::IMREAD_COLOR);
    if (!photo.empty()) photos.push_back(std::move(photo));
  }
  if (photos.empty())
    Die("no photographs under " + dir + " (install mate-backgrounds)");
  std::mt19937 rng(20261204);
  std::vector<std::vector<uint8_t>> jpegs;
  // Only frames that pass the stream's quality gate (50) with a margin: a
  // crop of sky or water has too little texture to be matched at all.
  // And only frames farther than 2 x 31 bits from every frame kept before,
  // in all 8 dihedral variants (the stream matches them): crops of one
  // photograph can be near-duplicates, and a frame must match exactly when
  // it is planted.
  bantay::models::HashOptions options = StreamHashOptions();
  options.dihedral = true;
  bantay::models::ImageHasher hasher(options);
  std::vector<bantay::models::Hash256> kept;
  for (size_t i = 0; static_cast<int>(jpegs.size()) < count; ++i) {
    if (i > static_cast<size_t>(count) * 20)
      Die("too few distinct frames of quality >= 70");
    const cv::Mat& photo = photos[i % photos.size()];
    const int max_w = std::min(photo.cols, photo.rows * 16 / 9);
    const int w = max_w * (30 + static_cast<int>(rng() % 71)) / 100;
    const int h = w * 9 / 16;
    const int x =
        static_cast<int>(rng() % static_cast<unsigned>(photo.cols - w + 1));
    const int y =
        static_cast<int>(rng() % static_cast<unsigned>(photo.rows - h + 1));
    cv::Mat frame;
    cv::resize(photo(cv::Rect(x, y, w, h)), frame, cv::Size(640, 360), 0, 0,
               cv::INTER_AREA);
    std::vector<uint8_t> jpeg;
    cv::imencode(".jpg", frame, jpeg,
                 {cv::IMWRITE_JPEG_QUALITY, 80 + static_cast<int>(rng() % 11)});
    auto hashes = hasher.Hash(jpeg);
    if (!hashes.ok()) Die("ImageHasher: " + hashes.error().ToString());
    if (hashes->pdq.quality < 70) continue;
    const auto& variants = hashes->pdq.dihedral;
    const bool near =
        std::any_of(kept.begin(), kept.end(), [&](const auto& other) {
          return std::any_of(
              variants.begin(), variants.end(), [&](const auto& v) {
                return bantay::models::HammingDistance(v, other) <= 2 * 31;
              });
        });
    if (near) continue;
    kept.push_back(hashes->pdq.hash);
    jpegs.push_back(std::move(jpeg));
  }
  return jpegs;
}

// The PDQ hashes of the planted frames, as a stream session computes them.
std::vector<std::array<uint8_t, 32>> PlantedValues(
    const std::vector<std::vector<uint8_t>>& frames) {
  bantay::models::ImageHasher hasher(StreamHashOptions());
  std::vector<std::array<uint8_t, 32>> out;
  for (size_t i = 0; i < kPlanted; ++i) {
    auto hashes = hasher.Hash(frames[i]);
    if (!hashes.ok()) Die("ImageHasher: " + hashes.error().ToString());
    std::array<uint8_t, 32> value;
    std::memcpy(value.data(), hashes->pdq.hash.data(), 32);
    out.push_back(value);
  }
  return out;
}

// Frames/s of one thread decoding and hashing the frames as a stream does.
double OfflineRate(const std::vector<std::vector<uint8_t>>& frames,
                   double seconds) {
  bantay::models::ImageHasher hasher(StreamHashOptions());
  size_t n = 0;
  const auto start = Clock::now();
  while (Seconds(start) < seconds) {
    auto r = hasher.Hash(frames[n % frames.size()]);
    if (!r.ok()) Die("ImageHasher: " + r.error().ToString());
    ++n;
  }
  return static_cast<double>(n) / Seconds(start);
}

// --- Session set-up over HTTPS (synchronous, one keep-alive connection)
// -------

class HttpsConnection {
 public:
  HttpsConnection(uint16_t port, ssl::context& tls, std::string key)
      : stream_(ioc_, tls), key_(std::move(key)) {
    beast::get_lowest_layer(stream_).connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    stream_.handshake(ssl::stream_base::client);
  }

  http::response<http::string_body> Call(http::verb verb,
                                         const std::string& target,
                                         const std::string& body) {
    http::request<http::string_body> request(verb, target, 11);
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::authorization, "Bearer " + key_);
    if (!body.empty())
      request.set(http::field::content_type, "application/json");
    request.body() = body;
    request.prepare_payload();
    http::write(stream_, request);
    http::response<http::string_body> response;
    http::read(stream_, buffer_, response);
    return response;
  }

 private:
  asio::io_context ioc_;
  ssl::stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::string key_;
};

// --- Load generator ----------------------------------------------------------

struct RunResult {
  uint64_t answered = 0;  // frame events in the measured window, as expected
  uint64_t errors = 0;    // in the measured window
  uint64_t errors_total = 0;
  uint64_t dropped = 0;
  uint64_t matched = 0;
  uint64_t late_sends =
      0;  // a frame due while the last was still being written
  double seconds = 0;
  Histogram latency;
  std::string first_error;
  CpuUse cpu;
  double cpu_seconds = 0;  // the window `cpu` was measured over
  std::string threads;
};

// All streams' WebSockets on one io_context run by the calling thread.
class StreamLoad {
 public:
  StreamLoad(uint16_t port, ssl::context& tls, std::string key,
             const std::vector<std::vector<uint8_t>>& frames,
             std::vector<std::string> ids, double warmup, double seconds)
      : endpoint_(asio::ip::make_address("127.0.0.1"), port),
        tls_(tls),
        key_(std::move(key)),
        frames_(frames),
        warmup_(warmup),
        seconds_(seconds),
        stop_timer_(ioc_) {
    for (size_t i = 0; i < ids.size(); ++i) {
      auto s = std::make_unique<StreamConn>(ioc_, tls_);
      s->index = i;
      s->id = std::move(ids[i]);
      streams_.push_back(std::move(s));
    }
  }

  RunResult Run() {
    for (auto& s : streams_) Connect(s.get());
    ioc_.run();  // until every WebSocket is open
    ioc_.restart();
    for (auto& s : streams_) {
      if (!s->open)
        Die("a stream's WebSocket did not open: " + result_.first_error);
    }
    result_ = RunResult();
    t0_ = Clock::now();
    const double n = static_cast<double>(streams_.size());
    for (auto& s : streams_) {
      s->first_due =
          t0_ +
          std::chrono::duration_cast<Clock::duration>(
              std::chrono::duration<double>(static_cast<double>(s->index) / n));
      ScheduleNext(s.get());
      Read(s.get());
    }
    // Sending stops at warmup + seconds; events still on their way get 5 s.
    stop_timer_.expires_at(t0_ + Dur(warmup_ + seconds_));
    stop_timer_.async_wait([this](beast::error_code) {
      sending_ = false;
      stop_timer_.expires_after(std::chrono::seconds(5));
      stop_timer_.async_wait([this](beast::error_code) { CloseAll(); });
    });
    ioc_.run();
    for (auto& s : streams_) {
      for (const auto& [seq, due] : s->pending) {
        if (InWindow(due)) Error("no frame event for a frame sent");
      }
    }
    result_.seconds = seconds_;
    return std::move(result_);
  }

  // Called (on Run's thread) when the first frame of the measured window is
  // due: where the CPU accounting starts.
  void OnMeasureStart(std::function<void()> f) {
    on_measure_start_ = std::move(f);
  }

 private:
  using Ws = websocket::stream<ssl::stream<beast::tcp_stream>>;
  struct StreamConn {
    StreamConn(asio::io_context& ioc, ssl::context& tls)
        : ws(ioc, tls), timer(ioc) {}
    Ws ws;
    asio::steady_timer timer;
    size_t index = 0;
    std::string id;
    bool open = false;
    bool writing = false;
    Clock::time_point first_due;
    uint32_t next = 0;  // the next frame's number
    std::vector<uint8_t> message;
    beast::flat_buffer in;
    // Frames sent and not yet answered: seq -> when it was due.
    std::vector<std::pair<uint32_t, Clock::time_point>> pending;
  };

  static Clock::duration Dur(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(seconds));
  }
  bool InWindow(Clock::time_point due) const {
    return due >= t0_ + Dur(warmup_) && due < t0_ + Dur(warmup_ + seconds_);
  }

  void Error(const std::string& what) {
    ++result_.errors_total;
    if (result_.first_error.empty()) result_.first_error = what;
  }

  void Connect(StreamConn* s) {
    beast::get_lowest_layer(s->ws).async_connect(
        endpoint_, [this, s](beast::error_code ec) {
          if (ec) return Error("connect: " + ec.message());
          // Each WebSocket message goes out as a frame header and a payload:
          // without this, Nagle's algorithm holds the payload back until the
          // peer's delayed acknowledgement (40 ms).
          beast::get_lowest_layer(s->ws).socket().set_option(
              tcp::no_delay(true), ec);
          s->ws.next_layer().async_handshake(
              ssl::stream_base::client, [this, s](beast::error_code tls_ec) {
                if (tls_ec) return Error("TLS handshake: " + tls_ec.message());
                s->ws.set_option(websocket::stream_base::decorator(
                    [this](websocket::request_type& r) {
                      r.set(http::field::authorization, "Bearer " + key_);
                    }));
                s->ws.binary(true);
                s->ws.async_handshake(
                    "127.0.0.1", "/v1/streams/" + s->id + "/ws",
                    [this, s](beast::error_code ws_ec) {
                      if (ws_ec)
                        return Error("WebSocket handshake: " + ws_ec.message());
                      s->open = true;
                    });
              });
        });
  }

  void ScheduleNext(StreamConn* s) {
    const Clock::time_point due = s->first_due + std::chrono::seconds(s->next);
    if (due >= t0_ + Dur(warmup_ + seconds_)) return;
    s->timer.expires_at(due);
    s->timer.async_wait([this, s, due](beast::error_code ec) {
      if (ec || !sending_) return;
      if (!measure_started_ && due >= t0_ + Dur(warmup_)) {
        measure_started_ = true;
        if (on_measure_start_) on_measure_start_();
      }
      Send(s, due);
      ++s->next;
      ScheduleNext(s);
    });
  }

  void Send(StreamConn* s, Clock::time_point due) {
    if (s->writing) {  // the last frame is still going out: skip this one
      ++result_.late_sends;
      if (InWindow(due))
        Error("a frame was due while the last was still being written");
      return;
    }
    const uint32_t seq = s->next;
    const std::vector<uint8_t>& jpeg = FrameOf(*s, seq);
    const uint64_t t_ms = uint64_t{seq} * 1000;
    s->message.assign(kHeaderBytes, 0);
    s->message[0] = 1;                             // version
    s->message[1] = 0;                             // encoded image
    std::memcpy(s->message.data() + 12, &seq, 4);  // little-endian machine
    std::memcpy(s->message.data() + 16, &t_ms, 8);
    s->message.insert(s->message.end(), jpeg.begin(), jpeg.end());
    s->pending.emplace_back(seq, due);
    s->writing = true;
    s->ws.async_write(asio::buffer(s->message),
                      [this, s](beast::error_code ec, size_t) {
                        s->writing = false;
                        if (ec && sending_) Error("write: " + ec.message());
                      });
  }

  const std::vector<uint8_t>& FrameOf(const StreamConn& s, uint32_t n) const {
    return frames_[(7 * s.index + n) % frames_.size()];
  }

  void Read(StreamConn* s) {
    s->ws.async_read(s->in, [this, s](beast::error_code ec, size_t) {
      if (ec) {
        if (sending_) Error("read: " + ec.message());
        return;
      }
      const std::string text = beast::buffers_to_string(s->in.data());
      s->in.consume(s->in.size());
      OnEvent(s, text);
      Read(s);
    });
  }

  void OnEvent(StreamConn* s, const std::string& text) {
    boost::system::error_code ec;
    const json::value event = json::parse(text, ec);
    if (ec || !event.is_object())
      return Error("not JSON: " + text.substr(0, 80));
    const json::object& o = event.as_object();
    const json::value* type = o.if_contains("type");
    if (type == nullptr || !type->is_string())
      return Error("no type: " + text.substr(0, 80));
    if (*type == "verdict") return;  // a stream verdict change
    if (*type != "frame") return Error("event: " + text.substr(0, 160));
    const json::value* seq_value = o.if_contains("seq");
    const json::value* verdict = o.if_contains("verdict");
    if (seq_value == nullptr || verdict == nullptr || !verdict->is_string())
      return Error("frame event without seq or verdict: " +
                   text.substr(0, 160));
    const uint32_t seq = static_cast<uint32_t>(seq_value->to_number<int64_t>());
    auto it = std::find_if(s->pending.begin(), s->pending.end(),
                           [seq](const auto& p) { return p.first == seq; });
    if (it == s->pending.end()) return Error("an event for a frame not sent");
    const Clock::time_point due = it->second;
    s->pending.erase(it);
    const bool measured = InWindow(due);
    const size_t frame = (7 * s->index + seq) % frames_.size();
    const std::string expected = frame < kPlanted ? "match" : "no_match";
    if (*verdict == "dropped") {
      if (measured) ++result_.dropped;
    }
    if (verdict->as_string() != expected) {
      if (measured) ++result_.errors;
      return Error("frame " + std::to_string(frame) + ": " +
                   text.substr(0, 160));
    }
    if (!measured) return;
    ++result_.answered;
    result_.matched += frame < kPlanted;
    result_.latency.Add(
        std::chrono::duration<double>(Clock::now() - due).count());
  }

  void CloseAll() {
    for (auto& s : streams_) {
      s->timer.cancel();
      beast::error_code ignored;
      beast::get_lowest_layer(s->ws).socket().shutdown(
          tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(s->ws).close();
    }
  }

  asio::io_context ioc_;
  tcp::endpoint endpoint_;
  ssl::context& tls_;
  std::string key_;
  const std::vector<std::vector<uint8_t>>& frames_;
  double warmup_, seconds_;
  std::vector<std::unique_ptr<StreamConn>> streams_;
  asio::steady_timer stop_timer_;
  Clock::time_point t0_;
  bool sending_ = true;
  bool measure_started_ = false;
  std::function<void()> on_measure_start_;
  RunResult result_;
};

}  // namespace

int main(int argc, char** argv) {
  const Options opt = ParseOptions(argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i)
    command += (i ? " " : "") + std::string(argv[i]);
  std::printf("command: %s\nmachine: %u CPUs (nproc), %s\n", command.c_str(),
              std::thread::hardware_concurrency(), CpuModel().c_str());
  std::fflush(stdout);

  const std::vector<std::vector<uint8_t>> frames = MakeFrames(opt.frames);
  size_t bytes = 0;
  for (const auto& f : frames) bytes += f.size();
  std::printf(
      "frames: %zu JPEGs of 640x360, mean %.1f KB; %zu of them planted in the "
      "store\n",
      frames.size(),
      static_cast<double>(bytes) / 1e3 / static_cast<double>(frames.size()),
      kPlanted);

  std::vector<std::array<uint8_t, 32>> values;
  {
    std::mt19937_64 rng(20261204);
    values.reserve(opt.entries + kPlanted);
    for (size_t i = 0; i < opt.entries; ++i) values.push_back(RandomCode(rng));
    for (const auto& v : PlantedValues(frames)) values.push_back(v);
  }
  Setup setup = MakeSetup(values, "stream_bench");
  int max_streams = *std::max_element(opt.streams.begin(), opt.streams.end());
  setup.config.streams_max_per_key = static_cast<size_t>(max_streams);
  setup.config.streams_max_total = static_cast<size_t>(max_streams);

  ssl::context tls(ssl::context::tls_client);
  tls.load_verify_file(setup.config.tls_cert);
  tls.set_verify_mode(ssl::verify_peer);
  auto server = StartServer(setup, 1, tls, values.size());

  std::vector<std::string> lines;
  char text[640];

  // --- baseline ---
  std::vector<double> offline;
  for (int r = 0; r < opt.reps; ++r) {
    const auto m = UntilQuiet(opt, "offline decode+hash", [&] {
      struct {
        double rate;
        CpuUse cpu;
      } out;
      const CpuTimes a = CpuTimes::Now();
      const auto start = Clock::now();
      out.rate = OfflineRate(frames, 5.0);
      out.cpu = CpuShare(a, CpuTimes::Now(), Seconds(start));
      return out;
    });
    offline.push_back(m.rate);
    std::printf("offline decode+hash, 1 core, run %d: %.1f frames/s; %s\n",
                r + 1, m.rate, m.cpu.Text().c_str());
    std::fflush(stdout);
  }
  const double offline_rate = Median(offline);
  std::snprintf(text, sizeof text,
                "baseline: decode + PDQ (trimming on) of the 640x360 frames, 1 "
                "core: %.1f "
                "frames/s [%s]",
                offline_rate, Join(offline, "%.1f").c_str());
  lines.push_back(text);

  // --- streams ---
  for (int n : opt.streams) {
    std::vector<double> p50, p99, p999, rate, cpu_us;
    uint64_t errors = 0, dropped = 0;
    std::string first_error;
    for (int r = 0; r < opt.reps; ++r) {
      RunResult res = UntilQuiet(opt, std::to_string(n) + " streams", [&] {
        HttpsConnection http(server->port(), tls, setup.api_key);
        std::vector<std::string> ids;
        for (int i = 0; i < n; ++i) {
          auto answer = http.Call(http::verb::post, "/v1/streams", kPolicy);
          if (answer.result_int() != 201)
            Die("POST /v1/streams: " + std::to_string(answer.result_int()) +
                " " + answer.body());
          ids.push_back(
              json::parse(answer.body()).at("id").as_string().c_str());
        }
        const std::vector<std::string> kept = ids;
        StreamLoad load(server->port(), tls, setup.api_key, frames, ids,
                        opt.warmup, opt.seconds);
        CpuTimes a;
        bantay::bench::ThreadUses threads_a;
        Clock::time_point start;
        load.OnMeasureStart([&] {
          a = CpuTimes::Now();
          threads_a = ThreadsByName();
          start = Clock::now();
        });
        RunResult out = load.Run();
        // The CPU window runs from the first measured frame to the end of
        // the run (including the last events' 5 s grace, idle for the server
        // but for the sweep: the figure per frame is a slight overestimate).
        const double elapsed = Seconds(start);
        out.cpu = CpuShare(a, CpuTimes::Now(), elapsed);
        out.cpu_seconds = elapsed;
        out.threads =
            ThreadsPerRequest(threads_a, ThreadsByName(), out.answered);
        // A new connection: the server has closed the first one, idle
        // during the run.
        HttpsConnection cleanup(server->port(), tls, setup.api_key);
        for (const std::string& id : kept) {
          auto answer =
              cleanup.Call(http::verb::delete_, "/v1/streams/" + id, "");
          if (answer.result_int() != 200)
            Die("DELETE /v1/streams: " + std::to_string(answer.result_int()));
        }
        return out;
      });
      const double server_us = res.answered == 0
                                   ? 0
                                   : res.cpu.server * res.cpu_seconds * 1e6 /
                                         static_cast<double>(res.answered);
      p50.push_back(res.latency.QuantileMs(0.5));
      p99.push_back(res.latency.QuantileMs(0.99));
      p999.push_back(res.latency.QuantileMs(0.999));
      rate.push_back(static_cast<double>(res.answered) / opt.seconds);
      cpu_us.push_back(server_us);
      errors += res.errors_total;
      dropped += res.dropped;
      if (first_error.empty()) first_error = res.first_error;
      std::printf(
          "%d streams, run %d: %.1f frames/s answered (%llu, %llu matched), "
          "p50 %.1f ms, p99 "
          "%.1f ms, p99.9 %.1f ms, %llu errors, %llu dropped, server %.0f us "
          "CPU a frame (%s); "
          "%s%s%s\n",
          n, r + 1, rate.back(), static_cast<unsigned long long>(res.answered),
          static_cast<unsigned long long>(res.matched), p50.back(), p99.back(),
          p999.back(), static_cast<unsigned long long>(res.errors_total),
          static_cast<unsigned long long>(res.dropped), server_us,
          res.threads.c_str(), res.cpu.Text().c_str(),
          res.first_error.empty() ? "" : "; first error: ",
          res.first_error.c_str());
      std::fflush(stdout);
    }
    std::snprintf(
        text, sizeof text,
        "%d streams at 1 frame/s (load %.2f of 2 x baseline): %.1f frames/s, "
        "p50 %.1f ms, p99 "
        "%.1f ms [%s], p99.9 %.1f ms, server %.0f us CPU a frame (offline "
        "%.0f), errors %llu, "
        "dropped %llu%s%s",
        n, n / (2 * offline_rate), Median(rate), Median(p50), Median(p99),
        Join(p99, "%.1f").c_str(), Median(p999), Median(cpu_us),
        1e6 / offline_rate, static_cast<unsigned long long>(errors),
        static_cast<unsigned long long>(dropped),
        first_error.empty() ? "" : "; first error: ", first_error.c_str());
    lines.push_back(text);
  }

  server.reset();
  std::filesystem::remove_all(setup.dir);
  std::printf(
      "\nsummary (%s; medians of %d runs; %d runs repeated because other "
      "processes used "
      "more than %.2f cores, %d kept although they did):\n",
      command.c_str(), opt.reps, g_discarded, opt.max_others, g_noisy);
  for (const std::string& line : lines) std::printf("  %s\n", line.c_str());
  return 0;
}
