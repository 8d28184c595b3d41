// A test binary for WatchdogTest (watchdog_test.cc), not run by ctest on its
// own: its one test starts a child process (`sleep`) and then blocks in a
// named function, until the watchdog of test_main.cc stops it.
#include <gtest/gtest.h>
#include <spawn.h>
#include <unistd.h>

extern char** environ;

namespace {

__attribute__((noinline)) void BlockForTheWatchdog() {
  for (;;) ::pause();
}

TEST(WatchdogProbe, Blocks) {
  pid_t child = -1;
  char sleep_name[] = "sleep";
  char seconds[] = "60";
  char* argv[] = {sleep_name, seconds, nullptr};
  ASSERT_EQ(posix_spawnp(&child, "sleep", nullptr, nullptr, argv, environ), 0);
  std::printf("probe child %d\n", static_cast<int>(child));
  std::fflush(stdout);
  BlockForTheWatchdog();
}

}  // namespace
