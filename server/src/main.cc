// bantay-server: see `bantay-server --help` and server/README.md.
#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "bantay/models/digest.h"
#include "bantay/models/image_hasher.h"
#include "bantay/server/config.h"
#include "bantay/server/server.h"

namespace {

// `--new-api-key ROLE`: a new key for the operator to hand out, and the
// configuration table that admits it (which holds only the key's digest).
int NewApiKey(const std::string& role_name) {
  bantay::Result<bantay::server::Role> role = bantay::server::ParseRole(role_name);
  if (!role.ok()) {
    std::cerr << "bantay-server: " << role.error().message() << "\n";
    return 2;
  }
  const std::string key = bantay::server::NewApiKey();
  const auto digest = bantay::server::ApiKeyDigest(key);
  std::cout << "# The key (give it to the client; it is not stored anywhere):\n"
            << "# " << key << "\n"
            << "[[api_keys]]\n"
            << "id = \"" << role_name << "-" << key.substr(0, 8) << "\"\n"
            << "role = \"" << role_name << "\"\n"
            << "sha256 = \"" << bantay::models::ToHex(digest) << "\"\n"
            << "rate = 100.0\n"
            << "burst = 200.0\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bantay::models::KeepImageBytesOffTheDisk();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() == 2 && args[0] == "--new-api-key") return NewApiKey(args[1]);
  if (args.size() == 1 && args[0] == "--version") {
    std::cout << "bantay-server " << BANTAY_VERSION << "\n";
    return 0;
  }

  bool help = false;
  bantay::Result<bantay::server::ServerConfig> config =
      bantay::server::ConfigFromCommandLine(args, [](const char* n) { return std::getenv(n); },
                                            &help);
  if (help) {
    std::cout << bantay::server::ServerUsage();
    return 0;
  }
  if (!config.ok()) {
    std::cerr << "bantay-server: " << config.error().message() << "\n";
    return 2;
  }

  // Signals are taken by one thread with sigwait, so no handler runs in the
  // middle of the server's threads (which inherit the blocked mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const bool tls = !config->tls_cert.empty();
  const std::string listen = config->listen;
  bantay::Result<std::unique_ptr<bantay::server::Server>> server =
      bantay::server::Server::Start(std::move(*config));
  if (!server.ok()) {
    std::cerr << "bantay-server: " << server.error().message() << "\n";
    return 1;
  }
  std::cerr << "bantay-server: listening on " << (tls ? "https" : "http") << "://" << listen
            << ":" << (*server)->port() << std::endl;

  std::thread ready([&] {
    if ((*server)->WaitUntilReady()) {
      std::cerr << "bantay-server: index loaded, ready" << std::endl;
    } else {
      std::cerr << "bantay-server: the index failed to load (see /readyz)" << std::endl;
    }
  });
  for (;;) {
    int signal_number = 0;
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number == SIGHUP) {
      bantay::Status reloaded = (*server)->ReloadTls();
      std::cerr << "bantay-server: SIGHUP: "
                << (reloaded.ok() ? "TLS certificate and key reloaded"
                                  : reloaded.error().message())
                << std::endl;
      continue;
    }
    std::cerr << "bantay-server: shutting down" << std::endl;
    (*server)->Shutdown();
    break;
  }
  (*server)->Wait();
  ready.join();
  std::cerr << "bantay-server: stopped" << std::endl;
  return 0;
}
