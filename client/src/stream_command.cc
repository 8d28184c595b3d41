// `bantay stream`: plays a video file into a live-stream session of a
// bantay-server over its WebSocket, one JPEG frame per sampling interval of
// stream time, and prints the server's verdict events as JSON lines.
//
// Two threads: this one decodes, paces and sends; a reader prints events as
// they come and counts the frames still unanswered, which bounds how far
// the sender runs ahead (the server keeps at most 2 frames of a stream
// waiting or in compute and drops the oldest waiting one beyond that).
#include <signal.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/client/cli.h"
#include "bantay/client/stream_client.h"
#include "bantay/models/image_hasher.h"
#include "command_util.h"
#include "video_frames.h"

namespace bantay::client {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr int kExitInterrupted = 130;
// Frames sent and not yet answered, when not pacing to stream time: the
// server's per-stream queue (one in compute, one waiting), so that nothing
// is dropped and the server is never idle waiting for the next frame.
constexpr int kMaxInFlight = 2;
constexpr int kDefaultJpegQuality = 90;
// How often waits look at the stop signal.
constexpr auto kPoll = std::chrono::milliseconds(50);

constexpr std::string_view kStreamUsage =
    R"(Usage: bantay stream FILE --server URL [--api-key-file FILE] [--ca FILE]
                     [--client-cert FILE --client-key FILE] [--realtime]
                     [--every SECONDS] [--k K] [--window N] [--quality Q]
                     [--skip-distance D] [--radius R] [--[no-]trim-borders]
                     [--[no-]dihedral] [--label TEXT] [--jpeg-quality N]
                     [--verbose]
       bantay stream --list --server URL [--api-key-file FILE] [--ca FILE] ...
       bantay stream --end ID --server URL [--api-key-file FILE] [--ca FILE] ...

Plays a video file into a live-stream session of a bantay-server: creates a
session (POST /v1/streams) with the policy given by the options (the server's
defaults for the others), opens its WebSocket, and sends the video's frames,
decoded in memory (nothing is written to disk) and re-encoded as JPEG, one
frame per sampling interval of stream time, with the video's own timestamps
as stream time. Each verdict event of the server is printed as one JSON line
as it comes:
  {"type":"verdict","id":"...","stream":"match","previous":"suspect",
   "first_match_t":ms,"last_match_t":ms,"frames":{...},"matches":[...],...}
and with --verbose every frame event too:
  {"type":"frame","seq":n,"t":ms,"frame":i,"verdict":"no_match","quality":q,
   "stream":"clean"}
At the end (or on Ctrl-C/SIGTERM), once the frames sent are answered, the
session is ended (DELETE) and its final state printed as the last line, with
"type":"final". Errors the server reports ({"type":"error",...} events and
frames whose verdict is "error") are printed as they come.

Without --realtime, frames are sent as fast as the server answers them, at
most 2 unanswered at a time (nothing is dropped). With --realtime, frames are
sent at the pace of stream time, as a live source would, without waiting for
answers: a server that falls behind drops frames (verdict "dropped").

--list prints the key's open sessions (GET /v1/streams), oldest first, one
state a line as above; --end ID ends session ID (DELETE) and prints its final
state ("type":"final"): for sessions a client lost track of (the server ends
them itself only after streams.idle_timeout_s without a frame, and refuses
new ones beyond streams.max_per_key). They take the connection options only.

Options:
  --list            list the key's sessions instead of streaming
  --end ID          end session ID (32 lower-case hex digits) instead of
                    streaming
  --server URL      the server, https://HOST[:PORT]
  --api-key-file FILE  the API key, 64 hex digits (env BANTAY_API_KEY_FILE, or
                    BANTAY_API_KEY with the key itself); a platform or lab key
  --ca FILE         PEM certificates to trust for the server (env BANTAY_CA_FILE)
  --client-cert FILE, --client-key FILE
                    a client certificate and its key (PEM), for servers that
                    require mutual TLS (env BANTAY_CLIENT_CERT_FILE,
                    BANTAY_CLIENT_KEY_FILE)
  --realtime        pace the frames to stream time
  --every SECONDS   the sampling interval of stream time (session policy
                    sample_interval_ms; server default 1 s; 0: every frame)
  --k K, --window N the stream matches once K of the last N sampled frames
                    matched (server default 2 of 10)
  --quality Q       frames of PDQ quality below Q are not matched (default:
                    the server's; only lab keys may go below it)
  --skip-distance D a frame within D bits of the last hashed one repeats its
                    verdict without a search (default 8; -1: never)
  --radius R        match distance (default and maximum: the server's; only
                    lab keys may set another)
  --trim-borders, --no-trim-borders
                    remove uniform borders (letterbox, pillarbox) before
                    hashing (server default: on)
  --dihedral, --no-dihedral
                    also match rotated and mirrored frames (server default: on)
  --label TEXT      echoed in the session's state (your own stream id)
  --jpeg-quality N  JPEG quality of the frames sent, 1..100 (default 90)
  --verbose         print every frame event
  -h, --help        this text

Exit status: 0 the stream stayed clean; 3 it ended "suspect" (a frame of the
last window matched, fewer than K); 4 it reached "match" (whatever else
happened); 1 an error (the video could not be read, the server could not be
reached or refused the session, the connection broke, a frame could not be
matched, the video ended early: truncated or damaged, also reported in the
final line as "error"); 2 usage error; 130 interrupted before the end of the video.
--list and --end: 0 done; 1 an error (the server could not be reached or
refused; no such session for --end); 2 usage error.
)";

bool Stopping() { return StopSignalReceived() != 0; }

// A session's state as the last line prints it: "type" is "final".
json::object FinalState(const json::object& state) {
  json::object final_state{{"type", "final"}};
  for (const auto& field : state) {
    if (field.key() != "type") final_state[field.key()] = field.value();
  }
  return final_state;
}

bool ParseSeconds(const std::string& s, double* value) {
  char* end = nullptr;
  errno = 0;
  *value = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size() && errno == 0 &&
         std::isfinite(*value);
}

struct StreamOptions {
  std::string file;
  ClientOptions client;
  std::string api_key_file;
  StreamPolicy policy;
  bool realtime = false;
  bool verbose = false;
  int jpeg_quality = kDefaultJpegQuality;
};

// What the reader saw; protected by Run::mu.
struct ReaderState {
  int in_flight = 0;
  bool ended = false;   // the reader stopped (WebSocket closed or broke)
  bool failed = false;  // an error event, a frame in error, a broken connection
  std::string stream = "clean";  // the last stream verdict seen
  std::string error;             // why the reader stopped, when it broke
};

class StreamRun {
 public:
  StreamRun(StreamOptions options, std::ostream& out, std::ostream& err)
      : o_(std::move(options)), out_(out), err_(err) {}

  int Run() {
    Result<std::unique_ptr<VideoFrameSource>> video =
        VideoFrameSource::Open(o_.file, models::kDefaultMaxPixels);
    if (!video.ok()) return Fail(video.error().message());
    StopSignals signals;
    Result<std::unique_ptr<StreamClient>> client =
        StreamClient::Open(o_.client, o_.policy);
    if (!client.ok()) return Fail(client.error().message());
    client_ = std::move(*client);

    std::thread reader([this] { Read(); });
    const bool sent_all = Send(**video);
    // A damaged or truncated video: what was sent is not the whole video,
    // and a clean verdict would say more than was seen.
    if (Status end = (*video)->EndStatus(); sent_all && !end.ok()) {
      Report(end.error().message());
      std::lock_guard lock(mu_);
      video_error_ = end.error();
    }
    WaitForAnswers();
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    client_->Close();
    reader.join();

    Result<std::string> final_state = client_->Delete();
    std::lock_guard lock(mu_);
    if (!final_state.ok()) {
      out_.flush();
      err_ << "bantay stream: " << final_state.error().message() << "\n";
      state_.failed = true;
    } else {
      PrintFinal(*final_state);
    }
    out_.flush();
    if (state_.stream == "match") return kExitStreamMatch;
    if (!sent_all && Stopping()) return kExitInterrupted;
    if (state_.failed) return kExitSomeFailed;
    if (state_.stream == "suspect") return kExitStreamSuspect;
    return kExitOk;
  }

 private:
  int Fail(const std::string& message) {
    out_.flush();
    err_ << "bantay stream: " << message << "\n";
    return kExitSomeFailed;
  }

  // The sender. False when it stopped before the end of the video.
  bool Send(VideoFrameSource& video) {
    FrameSampler sampler(client_->session().sample_interval_ms);
    uint32_t seq = 0;
    std::optional<int64_t> first_t;
    Clock::time_point start;
    for (int64_t t = 0; video.Next(&t);) {
      if (!sampler.Take(t)) continue;
      if (o_.realtime && !first_t) {
        first_t = t;
        start = Clock::now();
      }
      {
        // Until the frame is due (--realtime) or fewer frames are in
        // flight (otherwise), the reader ends, or a signal comes.
        std::unique_lock lock(mu_);
        while (!state_.ended && !Stopping()) {
          if (o_.realtime) {
            const Clock::time_point due =
                start + std::chrono::milliseconds(t - *first_t);
            if (Clock::now() >= due) break;
            changed_.wait_until(lock, std::min(due, Clock::now() + kPoll));
          } else {
            if (state_.in_flight < kMaxInFlight) break;
            changed_.wait_for(lock, kPoll);
          }
        }
        if (state_.ended || Stopping()) return false;
      }
      Result<std::vector<uint8_t>> jpeg = video.EncodeJpeg(o_.jpeg_quality);
      if (!jpeg.ok()) {
        Report(o_.file + ": " + jpeg.error().message());
        return false;
      }
      FrameHeader header;
      header.kind = FrameKind::kEncoded;
      header.sequence = seq++;
      header.t_ms = static_cast<uint64_t>(t);
      {
        std::lock_guard lock(mu_);
        ++state_.in_flight;
      }
      if (Status sent = client_->SendFrame(header, *jpeg); !sent.ok()) {
        Report(sent.error().message());
        return false;
      }
    }
    return true;
  }

  // Until every frame sent is answered, the reader stops, a signal comes,
  // or the client's timeout passes without an answer.
  void WaitForAnswers() {
    std::unique_lock lock(mu_);
    int last = state_.in_flight;
    Clock::time_point progress = Clock::now();
    const auto timeout = std::chrono::milliseconds(o_.client.timeout_ms);
    while (state_.in_flight > 0 && !state_.ended && !Stopping()) {
      changed_.wait_for(lock, kPoll);
      if (state_.in_flight != last) {
        last = state_.in_flight;
        progress = Clock::now();
      } else if (Clock::now() - progress > timeout) {
        out_.flush();
        err_ << "bantay stream: " << state_.in_flight
             << " frame(s) not answered within " << o_.client.timeout_ms
             << " ms\n";
        state_.failed = true;
        return;
      }
    }
  }

  void Report(const std::string& message) {
    std::lock_guard lock(mu_);
    out_.flush();
    err_ << "bantay stream: " << message << "\n";
    state_.failed = true;
  }

  // The reader thread: prints events until the WebSocket closes.
  void Read() {
    while (true) {
      Result<std::optional<std::string>> event = client_->ReadEvent(-1);
      std::lock_guard lock(mu_);
      if (!event.ok()) {
        // Closed by Close at the end, or broken.
        if (!closing_) {
          out_.flush();
          err_ << "bantay stream: " << event.error().message() << "\n";
          state_.failed = true;
        }
        state_.ended = true;
        changed_.notify_all();
        return;
      }
      if (!event->has_value()) continue;
      Handle(**event);
      changed_.notify_all();
    }
  }

  // One event; mu_ held.
  void Handle(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    const json::object* o = !ec ? v.if_object() : nullptr;
    const json::value* type = o != nullptr ? o->if_contains("type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      out_.flush();
      err_ << "bantay stream: the server sent an event that is not the "
              "protocol's\n";
      state_.failed = true;
      return;
    }
    const json::string& kind = type->as_string();
    auto string_field = [&](const char* name) -> std::string {
      const json::value* f = o->if_contains(name);
      return f != nullptr && f->is_string() ? std::string(f->as_string())
                                            : std::string();
    };
    if (kind == "frame") {
      if (state_.in_flight > 0) --state_.in_flight;
      const std::string verdict = string_field("verdict");
      if (!string_field("stream").empty())
        state_.stream = string_field("stream");
      if (verdict == "error") state_.failed = true;
      if (o_.verbose || verdict == "error") out_ << text << '\n';
    } else if (kind == "verdict") {
      if (!string_field("stream").empty())
        state_.stream = string_field("stream");
      out_ << text << '\n';
    } else if (kind == "error") {
      if (o->contains("seq") && state_.in_flight > 0) --state_.in_flight;
      state_.failed = true;
      out_ << text << '\n';
    } else if (o_.verbose) {
      out_ << text << '\n';
    }
    out_.flush();
  }

  // The DELETE answer, as the last line; mu_ held.
  void PrintFinal(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
      err_ << "bantay stream: the server's final state is not a JSON object\n";
      state_.failed = true;
      return;
    }
    json::object final_state = FinalState(v.as_object());
    if (video_error_) {
      final_state["error"] = ErrorObject(ErrorCodeName(video_error_->code()),
                                         video_error_->message());
    }
    if (const json::value* s = final_state.if_contains("stream");
        s != nullptr && s->is_string()) {
      state_.stream = std::string(s->as_string());
    }
    out_ << json::serialize(final_state) << '\n';
  }

  const StreamOptions o_;
  std::optional<Error> video_error_;  // protected by mu_
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<StreamClient> client_;
  std::mutex mu_;
  std::condition_variable changed_;
  ReaderState state_;     // protected by mu_
  bool closing_ = false;  // protected by mu_
};

}  // namespace

// The API key (--api-key-file or the environment) and the client
// certificate files from the environment; false (reported) when the key
// cannot be read.
bool TakeCredentials(StreamOptions* o, std::ostream& err) {
  Result<std::string> key = ReadApiKey(o->api_key_file);
  if (!key.ok()) {
    err << "bantay stream: " << key.error().message() << "\n";
    return false;
  }
  o->client.api_key = std::move(*key);
  ClientFilesFromEnvironment(&o->client);
  return true;
}

// --list, or --end ID (nullopt: --list).
int ListOrEnd(StreamOptions o, const std::optional<std::string>& end, std::ostream& out,
              std::ostream& err) {
  if (!TakeCredentials(&o, err)) return kExitUsage;
  Result<std::unique_ptr<HttpClient>> http = HttpClient::Connect(o.client);
  if (!http.ok()) {
    err << "bantay stream: " << http.error().message() << "\n";
    return kExitSomeFailed;
  }
  if (!end) {
    Result<std::vector<std::string>> states = ListStreams(**http);
    if (!states.ok()) {
      err << "bantay stream: " << states.error().message() << "\n";
      return kExitSomeFailed;
    }
    for (const std::string& state : *states) out << state << "\n";
    return FlushOutput(out, err, "stream") ? kExitOk : kExitSomeFailed;
  }
  Result<std::string> final_text = EndStream(**http, *end);
  if (!final_text.ok()) {
    err << "bantay stream: " << final_text.error().message() << "\n";
    return kExitSomeFailed;
  }
  boost::system::error_code ec;
  json::value state = json::parse(*final_text, ec);
  if (ec || !state.is_object()) {
    err << "bantay stream: the server's final state is not a JSON object\n";
    return kExitSomeFailed;
  }
  out << json::serialize(FinalState(state.as_object())) << "\n";
  return FlushOutput(out, err, "stream") ? kExitOk : kExitSomeFailed;
}

int RunStreamCommand(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err) {
  StreamOptions o;
  std::vector<std::string> files;
  bool options_ended = false;
  bool list = false;
  std::optional<std::string> end;
  std::string streaming_option;  // the last option given that is not a connection's
  if (std::string repeated = RepeatedOption(
          args, {"--server", "--api-key-file", "--ca", "--client-cert",
                 "--client-key", "--every", "--k", "--window", "--quality",
                 "--skip-distance", "--radius", "--jpeg-quality", "--label", "--end"});
      !repeated.empty()) {
    err << "bantay stream: " << repeated << "\n";
    return kExitUsage;
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (options_ended || (!a.starts_with("-") && !a.empty())) {
      files.push_back(a);
      continue;
    }
    auto value = [&](std::string* target) {
      if (i + 1 >= args.size()) return false;
      *target = args[++i];
      return true;
    };
    // An integer option within [low, high].
    auto integer = [&](int low, int high, std::optional<int>* target) {
      std::string text;
      int n = 0;
      if (!value(&text) || !ParseInt(text, &n) || n < low || n > high) {
        err << "bantay stream: " << a << " must be an integer from " << low
            << " to " << high << "\n";
        return false;
      }
      *target = n;
      return true;
    };
    std::string text;
    std::optional<int> number;
    // Every option below --client-key is about the streaming itself.
    const bool connection_option = a == "-h" || a == "--help" || a == "--" || a == "--server" ||
                                   a == "--api-key-file" || a == "--ca" || a == "--client-cert" ||
                                   a == "--client-key" || a == "--list" || a == "--end";
    if (!connection_option) streaming_option = a;
    if (a == "-h" || a == "--help") {
      out << kStreamUsage;
      return kExitOk;
    } else if (a == "--") {
      options_ended = true;
    } else if (a == "--server" && value(&o.client.url)) {
    } else if (a == "--api-key-file" && value(&o.api_key_file)) {
    } else if (a == "--ca" && value(&o.client.ca_file)) {
    } else if (a == "--client-cert" && value(&o.client.client_cert_file)) {
    } else if (a == "--client-key" && value(&o.client.client_key_file)) {
    } else if (a == "--list") {
      list = true;
    } else if (a == "--end" && value(&text)) {
      end = text;
    } else if (a == "--realtime") {
      o.realtime = true;
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--every") {
      double seconds = 0;
      if (!value(&text) || !ParseSeconds(text, &seconds) || seconds < 0 ||
          seconds > 3600) {
        err << "bantay stream: --every must be a number of seconds from 0 to "
               "3600\n";
        return kExitUsage;
      }
      o.policy.sample_interval_ms = std::llround(seconds * 1000);
    } else if (a == "--k") {
      if (!integer(1, 100, &o.policy.k)) return kExitUsage;
    } else if (a == "--window") {
      if (!integer(1, 100, &o.policy.window)) return kExitUsage;
    } else if (a == "--quality") {
      if (!integer(0, 100, &o.policy.quality_min)) return kExitUsage;
    } else if (a == "--skip-distance") {
      if (!integer(-1, 256, &o.policy.skip_distance)) return kExitUsage;
    } else if (a == "--radius") {
      if (!integer(0, 256, &o.policy.radius)) return kExitUsage;
    } else if (a == "--jpeg-quality") {
      if (!integer(1, 100, &number)) return kExitUsage;
      o.jpeg_quality = *number;
    } else if (a == "--trim-borders" || a == "--no-trim-borders") {
      o.policy.trim_borders = a == "--trim-borders";
    } else if (a == "--dihedral" || a == "--no-dihedral") {
      o.policy.dihedral = a == "--dihedral";
    } else if (a == "--label" && value(&text)) {
      o.policy.label = text;
    } else {
      err << "bantay stream: unknown or incomplete option '" << a << "'\n"
          << kStreamUsage;
      return kExitUsage;
    }
  }
  if (list || end) {
    if (list && end) {
      err << "bantay stream: give --list or --end, not both\n";
      return kExitUsage;
    }
    const std::string mode = list ? "--list" : "--end";
    if (!files.empty() || !streaming_option.empty()) {
      err << "bantay stream: " << mode << " takes "
          << (files.empty() ? "no " + streaming_option + " (only the connection options)"
                            : std::string("no video FILE"))
          << "\n";
      return kExitUsage;
    }
    if (o.client.url.empty()) {
      err << "bantay stream: " << mode << " needs --server URL\n";
      return kExitUsage;
    }
    if (end && (end->size() != 32 || end->find_first_not_of("0123456789abcdef") !=
                                         std::string::npos)) {
      err << "bantay stream: --end takes a session's id, 32 lower-case hex digits (got \""
          << *end << "\")\n";
      return kExitUsage;
    }
    return ListOrEnd(std::move(o), end, out, err);
  }
  if (files.size() != 1 || o.client.url.empty()) {
    err << "bantay stream: give one video FILE and --server URL\n"
        << kStreamUsage;
    return kExitUsage;
  }
  if (o.policy.k && o.policy.window && *o.policy.k > *o.policy.window) {
    err << "bantay stream: --k must not be over --window\n";
    return kExitUsage;
  }
  o.file = files.front();
  if (!TakeCredentials(&o, err)) return kExitUsage;
  StreamRun run(std::move(o), out, err);
  return run.Run();
}

}  // namespace bantay::client
