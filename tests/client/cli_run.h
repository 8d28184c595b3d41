// Runs a `bantay` command in-process and keeps what it printed.
#ifndef BANTAY_TESTS_CLIENT_CLI_RUN_H_
#define BANTAY_TESTS_CLIENT_CLI_RUN_H_

#include <boost/json.hpp>
#include <functional>
#include <iosfwd>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

namespace bantay::testing {

struct CliRun {
  int status = 0;
  std::string out;
  std::string err;
  std::vector<boost::json::object> lines;  // the JSON lines of out
};

using Command = std::function<int(const std::vector<std::string>&, std::ostream&, std::ostream&)>;

inline CliRun RunCommand(const Command& command, const std::vector<std::string>& args) {
  std::ostringstream out, err;
  CliRun run;
  run.status = command(args, out, err);
  run.out = out.str();
  run.err = err.str();
  std::istringstream lines(run.out);
  for (std::string line; std::getline(lines, line);) {
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(line, ec);  // help text is not JSON
    if (!ec && v.is_object()) run.lines.push_back(v.as_object());
  }
  return run;
}

// A stream buffer that refuses every write, as a full disk (/dev/full) or a
// closed pipe does.
class FailingStreamBuf : public std::streambuf {
 protected:
  int_type overflow(int_type) override { return traits_type::eof(); }
  std::streamsize xsputn(const char*, std::streamsize) override { return 0; }
};

// RunCommand with a standard output where every write fails (out stays "").
inline CliRun RunCommandWithFailingOutput(const Command& command,
                                          const std::vector<std::string>& args) {
  FailingStreamBuf failing;
  std::ostream out(&failing);
  std::ostringstream err;
  CliRun run;
  run.status = command(args, out, err);
  run.err = err.str();
  return run;
}

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_CLIENT_CLI_RUN_H_
