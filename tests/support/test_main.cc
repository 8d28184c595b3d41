// The main of every test binary: GoogleTest's, with a watchdog. A test that
// runs longer than BANTAY_TEST_WATCHDOG_SECONDS (default 600; the longest
// test takes about 210 s here) is taken for a hang: the watchdog names the
// test, prints the backtraces of every thread of this process and of its
// child processes (the CLI or server a test started) through gdb, kills
// the children and aborts. ctest then reports a failed test with where it stood, instead of
// waiting until the CI's own time runs out with nothing to show.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

// The pids of this process's children (from /proc/*/stat: the fourth
// field is the parent's pid; the second, the name, may hold spaces).
std::vector<pid_t> ChildPids() {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == ::getpid()) {
      pids.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  return pids;
}

// gdb's backtraces of every thread of `pid`, to standard error; gdb is
// given 60 s.
void PrintBacktraces(pid_t pid) {
  std::fprintf(stderr, "watchdog: backtraces of process %d\n", static_cast<int>(pid));
  std::fflush(stderr);
  const std::string pid_text = std::to_string(pid);
  std::vector<std::string> args = {"gdb",     "-p",        pid_text,
                                   "-batch",  "-nx",       "-ex",
                                   "set pagination off", "-ex", "thread apply all bt"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, 2, 1);
  pid_t gdb = -1;
  const int rc = posix_spawnp(&gdb, "gdb", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::fprintf(stderr, "watchdog: cannot run gdb (%d); no backtraces\n", rc);
    return;
  }
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(60);
  int status = 0;
  while (::waitpid(gdb, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(gdb, SIGKILL);
      ::waitpid(gdb, &status, 0);
      std::fprintf(stderr, "watchdog: gdb did not finish within 60 s\n");
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

class Watchdog : public testing::EmptyTestEventListener {
 public:
  explicit Watchdog(std::chrono::seconds limit) : limit_(limit) {
    thread_ = std::thread([this] { Watch(); });
  }
  ~Watchdog() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }

  void OnTestStart(const testing::TestInfo& info) override {
    {
      std::lock_guard lock(mu_);
      test_ = std::string(info.test_suite_name()) + "." + info.name();
      deadline_ = Clock::now() + limit_;
    }
    changed_.notify_all();
  }
  void OnTestEnd(const testing::TestInfo&) override {
    {
      std::lock_guard lock(mu_);
      deadline_.reset();
    }
    changed_.notify_all();
  }

 private:
  void Watch() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (!deadline_) {
        changed_.wait(lock);
        continue;
      }
      const Clock::time_point deadline = *deadline_;
      if (Clock::now() < deadline) {
        changed_.wait_until(lock, deadline);
        continue;
      }
      const std::string test = test_;
      lock.unlock();
      std::fprintf(stderr, "\nwatchdog: %s still runs after %lld s: taken for a hang\n",
                   test.c_str(), static_cast<long long>(limit_.count()));
      const std::vector<pid_t> children = ChildPids();
      for (pid_t child : children) PrintBacktraces(child);
      PrintBacktraces(::getpid());
      // The children would outlive the abort (and may hold ctest's output
      // pipe open).
      for (pid_t child : children) ::kill(child, SIGKILL);
      std::fflush(stdout);
      std::fflush(stderr);
      std::abort();
    }
  }

  const std::chrono::seconds limit_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool stop_ = false;                        // guarded by mu_
  std::string test_;                         // guarded by mu_
  std::optional<Clock::time_point> deadline_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  long seconds = 600;
  if (const char* env = std::getenv("BANTAY_TEST_WATCHDOG_SECONDS"); env != nullptr) {
    seconds = std::strtol(env, nullptr, 10);
  }
  testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
  Watchdog* watchdog = nullptr;
  if (seconds > 0 && !testing::GTEST_FLAG(list_tests)) {
    watchdog = new Watchdog(std::chrono::seconds(seconds));
    listeners.Append(watchdog);
  }
  const int status = RUN_ALL_TESTS();
  if (watchdog != nullptr) delete listeners.Release(watchdog);
  return status;
}
