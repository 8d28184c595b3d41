// The `bantay` command-line tool. Each command is a function taking its
// arguments (without the command name) and the streams to write to, and
// returning the process exit status, so that tests can run it in-process.
//
// Exit statuses: 0 success, 1 some inputs failed (each reported), 2 usage
// error; `bantay stream` also 3 (stream verdict suspect) and 4 (match).
#ifndef BANTAY_CLIENT_CLI_H_
#define BANTAY_CLIENT_CLI_H_

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace bantay::client {

// What `bantay --version` prints after "bantay ", and scan reports record.
inline constexpr std::string_view kBantayVersion = "0.1.0";

inline constexpr int kExitOk = 0;
inline constexpr int kExitSomeFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitStreamSuspect = 3;
inline constexpr int kExitStreamMatch = 4;

// bantay hash [-r] [--dihedral] [--fast] [--csv] [--max-pixels N] [--out LIST] PATH...
// bantay hash --video FILE... [--every SECONDS] [--downscale N]
int RunHashCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

// bantay match --index (LIST | STORE-URL | SNAPSHOT) [--radius R] [--dihedral]
//   [--threads N] (--pdq HEX | --pdq-file FILE)
// bantay match --server URL [--api-key-file FILE] [--ca FILE] [--dihedral]
//   (--pdq HEX | --pdq-file FILE | IMAGE...)
int RunMatchCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err);

// bantay index SUBCOMMAND ... (the secure hash store; see --help)
int RunIndexCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err);

// bantay scan PATH... (--index WHAT | --store URL | --server URL)
//   [--report FILE | --csv FILE] [--resume] [--threads N] [--videos] ...
// (bulk scans for labs; see --help). Installs SIGINT/SIGTERM handlers for
// its duration (a first signal stops the scan cleanly).
int RunScanCommand(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

// bantay stream FILE --server URL [--realtime] [--every S] [--k K --window N]
//   ... (plays a video into a live-stream session over WebSocket and prints
// the verdict events; see --help). Installs SIGINT/SIGTERM handlers for its
// duration (a first signal ends the session cleanly).
int RunStreamCommand(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err);

// Dispatches argv[1] to its command.
int RunCli(int argc, char** argv);

}  // namespace bantay::client

#endif  // BANTAY_CLIENT_CLI_H_
