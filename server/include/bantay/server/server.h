// Server: bantay-server as a library: the HTTPS API v1 on Boost.Beast, with
// its compute pool, index service, rate limits, metrics and access log.
// main.cc wraps it with signal handling; the integration tests start it on
// 127.0.0.1:0.
//
// Thread safety: Shutdown and ReloadTls may be called from any thread
// (e.g. a signal-handling thread) while Wait blocks in another.
#ifndef BANTAY_SERVER_SERVER_H_
#define BANTAY_SERVER_SERVER_H_

#include <cstdint>
#include <memory>

#include "bantay/models/status.h"
#include "bantay/server/config.h"

namespace bantay::server {

class Server {
 public:
  // Validates the configuration, opens the store, loads the TLS
  // certificate, binds the port and starts serving; the index loads in the
  // background (/readyz answers 503 until it is loaded). Errors: the
  // configuration's (kInvalidArgument), the store's, the certificate's,
  // kUnavailable when the address cannot be bound.
  static Result<std::unique_ptr<Server>> Start(ServerConfig config);
  ~Server();  // Shutdown(), then Wait()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the chosen one when the configuration said 0).
  uint16_t port() const;
  // Whether the index is loaded.
  bool ready() const;
  // Blocks until the index is loaded (true) or failed to load (false).
  bool WaitUntilReady() const;

  // Graceful stop: refuses new connections and new requests (503), lets
  // requests in flight finish, closes idle keep-alive connections; after
  // shutdown_grace_ms whatever is left is cut. Returns at once.
  void Shutdown();
  // Blocks until the server has stopped (after Shutdown).
  void Wait();
  // Re-reads the TLS certificate and key (and client CA); new connections
  // use them. On error the old ones stay in use.
  Status ReloadTls();

  // The implementation (server.cc); public only so that the sessions
  // defined there can name it.
  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bantay::server

#endif  // BANTAY_SERVER_SERVER_H_
