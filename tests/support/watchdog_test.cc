// The watchdog of every test binary (test_main.cc): a test that runs past
// its limit is stopped with its name and the backtraces of the test process
// and of its children.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <string>

#include "test_images.h"

extern char** environ;

namespace {

TEST(WatchdogTest, AHungTestIsStoppedWithWhereItHangs) {
  bantay::testing::TempDir dir;
  const std::string log = dir.path() + "/probe.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::string probe = BANTAY_WATCHDOG_PROBE;
  std::string limit = "BANTAY_TEST_WATCHDOG_SECONDS=1";
  char* argv[] = {probe.data(), nullptr};
  char* envp[] = {limit.data(), nullptr};
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, probe.c_str(), &actions, nullptr, argv, envp), 0);
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::ifstream in(log);
  const std::string out{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};

  // The watchdog killed the child the probe started (else the abort would
  // leave it running).
  std::smatch child;
  ASSERT_TRUE(std::regex_search(out, child, std::regex("probe child ([0-9]+)"))) << out;
  const pid_t child_pid = std::stoi(child[1]);
  // Dead: no longer in /proc, or a zombie until whoever inherited it reaps it.
  auto dead = [child_pid] {
    std::ifstream stat("/proc/" + std::to_string(child_pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    const size_t close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
  };
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = dead();
    if (!gone) usleep(10'000);
  }
  if (!gone) kill(child_pid, SIGKILL);
  EXPECT_TRUE(gone) << "the probe's child " << child_pid << " still runs";

  ASSERT_TRUE(WIFSIGNALED(status)) << out;
  EXPECT_EQ(WTERMSIG(status), SIGABRT) << out;
  EXPECT_NE(out.find("watchdog: WatchdogProbe.Blocks still runs after 1 s: taken for a hang"),
            std::string::npos)
      << out;
  // Backtraces of the child, then of the probe itself, where it blocks.
  const size_t child_trace =
      out.find("watchdog: backtraces of process " + std::to_string(child_pid) + "\n");
  const size_t own_trace = out.find("watchdog: backtraces of process " + std::to_string(pid) + "\n");
  ASSERT_NE(child_trace, std::string::npos) << out;
  ASSERT_NE(own_trace, std::string::npos) << out;
  EXPECT_LT(child_trace, own_trace);
  EXPECT_NE(out.find("BlockForTheWatchdog", own_trace), std::string::npos) << out;
}

}  // namespace
