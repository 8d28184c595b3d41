// StreamClient: the client library's side of a live-stream session
// (/work/notes/streams-spec.md, "Stream sessions"): it creates the session
// (POST /v1/streams with a policy), opens the session's WebSocket
// (GET /v1/streams/{id}/ws, upgraded over the same kind of verified TLS
// connection as HttpClient, with the API key in the Authorization header),
// sends frames as binary messages (a 24-byte little-endian header, then the
// encoded image) or client-side hashes as text messages, receives the
// server's JSON events, and reads or ends the session (GET / DELETE).
//
// Thread safety: one thread may send (SendFrame, SendHash) while another
// reads (ReadEvent). Close may be called by the sending thread while the
// reader waits (its ReadEvent then returns kUnavailable). GetState and
// Delete from one thread at a time. The WebSocket runs on a thread of the
// client's own; the HTTP calls use a separate kept-alive connection.
#ifndef BANTAY_CLIENT_STREAM_CLIENT_H_
#define BANTAY_CLIENT_STREAM_CLIENT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bantay/client/http_client.h"
#include "bantay/models/status.h"

namespace bantay::client {

// The binary frame header of the WebSocket protocol, version 1.
inline constexpr size_t kFrameHeaderBytes = 24;
inline constexpr uint8_t kFrameProtocolVersion = 1;

// Frame kinds. Encoded images carry width = height = 0.
enum class FrameKind : uint8_t {
  kEncoded = 0,  // JPEG, PNG, ... as POST /v1/match takes them
  kRawGray = 1,  // width*height bytes
  kRawRgb = 2,   // width*height*3 bytes, R, G, B
  kRawBgr = 3,   // width*height*3 bytes, B, G, R
  kRawRgba = 4,  // width*height*4 bytes
  kRawBgra = 5,  // width*height*4 bytes
};

struct FrameHeader {
  FrameKind kind = FrameKind::kEncoded;
  uint32_t width = 0;
  uint32_t height = 0;
  uint32_t sequence = 0;  // chosen by the client, echoed as "seq"
  uint64_t t_ms = 0;      // stream time
};

// The 24 bytes: u8 version, u8 kind, u16 reserved 0, u32 width, u32 height,
// u32 sequence, u64 t_ms, all little-endian.
std::array<uint8_t, kFrameHeaderBytes> EncodeFrameHeader(
    const FrameHeader& header);

// The reverse; kInvalidArgument for fewer than 24 bytes, another version or
// a reserved field that is not 0.
Result<FrameHeader> DecodeFrameHeader(std::span<const uint8_t> bytes);

// The session policy sent with POST /v1/streams; fields left empty are
// resolved by the server (its defaults).
struct StreamPolicy {
  std::optional<int64_t> sample_interval_ms;
  std::optional<int> quality_min;
  std::optional<int> window;
  std::optional<int> k;
  std::optional<int> skip_distance;
  std::optional<bool> trim_borders;
  std::optional<bool> dihedral;
  std::optional<int> radius;
  std::optional<std::string> label;
};

// The policy as the JSON body of POST /v1/streams (only the fields set).
std::string StreamPolicyJson(const StreamPolicy& policy);

// What POST /v1/streams answered.
struct StreamSession {
  std::string id;                  // 32 hex digits
  std::string ws_path;             // /v1/streams/<id>/ws
  int64_t sample_interval_ms = 0;  // as resolved by the server
  int64_t expires_after_s = 0;
  std::string policy_json;  // the resolved policy, as the server sent it
  std::string answer;       // the whole 201 answer
};

class StreamClient {
 public:
  // Creates a session and opens its WebSocket. Errors: those of
  // HttpClient::Connect for the connection, then those of
  // ServerAnswerError for an answer other than 201 (e.g. kInvalidArgument
  // for a policy field out of bounds, kUnavailable for too many sessions),
  // and kIo for an answer or upgrade that is not the protocol's.
  // The message names the HTTP status and the server's error code. When
  // the WebSocket cannot be opened, the session just created is deleted.
  static Result<std::unique_ptr<StreamClient>> Open(ClientOptions options,
                                                    const StreamPolicy& policy);
  ~StreamClient();  // closes the WebSocket (not the session: see Delete)

  const StreamSession& session() const;

  // Sends one frame as a binary message and returns when it was written
  // (or the timeout of ClientOptions passed: kUnavailable, and the
  // WebSocket is closed). kUnavailable once the WebSocket is closed.
  Status SendFrame(const FrameHeader& header, std::span<const uint8_t> payload);

  // Sends a hash computed by the client as a text message
  // {"pdq":"<hex>","quality":q,"t":ms,"seq":n}.
  Status SendHash(std::string_view pdq_hex, int quality, uint64_t t_ms,
                  uint32_t seq);

  // The next event (one JSON text message), waiting at most timeout_ms
  // (< 0: no limit); nullopt when nothing came in time (the read goes on:
  // a later call gets its result). Errors: kUnavailable when the WebSocket
  // is closed (by Close, or by the server: the message says its close
  // code), kIo when the connection broke or a message was not text.
  Result<std::optional<std::string>> ReadEvent(int64_t timeout_ms);

  // Closes the WebSocket politely (a close frame, waiting at most a second
  // for the server's). The session stays until Delete or its idle timeout.
  // Safe to call more than once.
  void Close();

  // GET /v1/streams/{id}: the state event's JSON text; DELETE: the final
  // state, and the session is gone. Errors as for Open (kNotFound for 404).
  Result<std::string> GetState();
  Result<std::string> Delete();

  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

 private:
  struct Impl;
  explicit StreamClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Sessions found again without their StreamClient (a client restarted, a
// session left open): the calling key's sessions (GET /v1/streams), each
// state as JSON text, oldest first; and ending one by its id (DELETE
// /v1/streams/{id}), which answers its final state. An id that is not 32
// lower-case hex digits is kInvalidArgument, asked of no server.
Result<std::vector<std::string>> ListStreams(HttpClient& http);
Result<std::string> EndStream(HttpClient& http, std::string_view id);

// The error for an HTTP answer of a status other than the expected one:
// "<what>: HTTP <status> <code>: <message>" from the server's
// {"error": {"code", "message"}}, coded kInvalidArgument (400),
// kPermissionDenied (401, 403), kNotFound (404), kTooLarge (413),
// kUnavailable (429, 503), kIo (anything else).
Error ServerAnswerError(const HttpResponse& response, std::string_view what);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_STREAM_CLIENT_H_
