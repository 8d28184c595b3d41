// Runs a `bantay` command in-process and keeps what it printed.
#ifndef BANTAY_TESTS_CLIENT_CLI_RUN_H_
#define BANTAY_TESTS_CLIENT_CLI_RUN_H_

#include <boost/json.hpp>
#include <functional>
#include <iosfwd>
#include <sstream>
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

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_CLIENT_CLI_RUN_H_
