#include "bantay/client/cli.h"

#include <iostream>
#include <string_view>

namespace bantay::client {
namespace {

constexpr std::string_view kUsage =
    R"(bantay — perceptual-hash matching of known abuse imagery, without sharing it.

Usage: bantay COMMAND [OPTIONS]

Commands:
  hash     hash image files locally (PDQ, MD5, SHA-256), videos (--video:
           vPDQ frame hashes), or write a hash list (--out); see
           `bantay hash --help`
  match    match PDQ hashes against a hash list, store or snapshot offline,
           or hashes and images against a bantay-server (--server);
           see `bantay match --help`
  index    administer the secure hash store; see `bantay index --help`
  scan     bulk scan of directory trees (images, videos, every file's MD5 and
           SHA-256) against an index, store, snapshot or server, with a
           resumable report; see `bantay scan --help`
  stream   play a video file into a live-stream session of a server over
           WebSocket and print its verdict events; see `bantay stream --help`

Options:
  --help     this text
  --version  the version
)";

}  // namespace

int RunCli(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  const std::string_view command = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (command == "--version") {
    std::cout << "bantay " << kBantayVersion << "\n";
    return kExitOk;
  }
  if (command == "hash") return RunHashCommand(args, std::cout, std::cerr);
  if (command == "match") return RunMatchCommand(args, std::cout, std::cerr);
  if (command == "index") return RunIndexCommand(args, std::cout, std::cerr);
  if (command == "scan") return RunScanCommand(args, std::cout, std::cerr);
  if (command == "stream") return RunStreamCommand(args, std::cout, std::cerr);
  std::cerr << "bantay: unknown command '" << command << "'\n\n" << kUsage;
  return kExitUsage;
}

}  // namespace bantay::client
