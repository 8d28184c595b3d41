#include "pg_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace bantay::testing {
namespace {

namespace fs = std::filesystem;

constexpr int kStartAttempts = 5;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr,
               "PgCluster: %s\n"
               "The PostgreSQL tests need Debian's postgresql package "
               "(/usr/lib/postgresql/*/bin); deploy/install-deps.sh installs "
               "it.\n",
               message.c_str());
  std::fflush(stderr);
  std::abort();
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string Tail(const fs::path& path) {
  std::string text = ReadFile(path);
  constexpr size_t kMax = 4000;
  return text.size() > kMax ? text.substr(text.size() - kMax) : text;
}

// The newest server version installed.
fs::path BinDir() {
  int best = -1;
  fs::path best_dir;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int version = std::atoi(entry.path().filename().c_str());
    fs::path bin = entry.path() / "bin";
    if (version > best && fs::exists(bin / "initdb") &&
        fs::exists(bin / "pg_ctl")) {
      best = version;
      best_dir = bin;
    }
  }
  if (best < 0) Die("no PostgreSQL server found under /usr/lib/postgresql");
  return best_dir;
}

// initdb refuses to run as root, so the cluster belongs to the `postgres`
// system user when we are root.
struct RunAs {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

RunAs ServerUser() {
  RunAs as;
  if (geteuid() != 0) return as;
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr) Die("running as root but there is no `postgres` user");
  as.switch_user = true;
  as.uid = pw->pw_uid;
  as.gid = pw->pw_gid;
  return as;
}

void GiveToServerUser(const fs::path& path) {
  RunAs as = ServerUser();
  if (as.switch_user && chown(path.c_str(), as.uid, as.gid) != 0) {
    Die("cannot give " + path.string() + " to the postgres user");
  }
}

// Runs `args` as the server user with stdout and stderr to `log`; returns
// true when it exits with status 0.
bool Run(const std::vector<std::string>& args, const fs::path& log) {
  RunAs as = ServerUser();
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) Die("cannot write " + log.string());
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec.
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (as.switch_user && (setgroups(0, nullptr) != 0 || setgid(as.gid) != 0 ||
                           setuid(as.uid) != 0)) {
      _exit(126);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) Die("waitpid failed");
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// A port nobody listens on now; the server may still lose it to another
// process before it binds, hence the retries in Start.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    Die("cannot bind a loopback port");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

void StopServer(const fs::path& data, const char* mode) {
  if (!fs::exists(data / "postmaster.pid")) return;
  fs::path pg_ctl = BinDir() / "pg_ctl";
  Run({pg_ctl.string(), "-D", data.string(), "-m", mode, "-w", "stop"},
      data.parent_path() / "pg_ctl.log");
}

}  // namespace

int PgCluster::Start(const std::string& dir_name) {
  fs::path dir = fs::absolute(dir_name);
  fs::path data = dir / "data";
  fs::path bin = BinDir();
  // A cluster left behind by an interrupted run.
  StopServer(data, "immediate");
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (!ec) fs::permissions(dir, fs::perms::owner_all, ec);
  if (ec) Die("cannot create " + dir.string() + ": " + ec.message());
  GiveToServerUser(dir);

  fs::path initdb_log = dir / "initdb.log";
  if (!Run({(bin / "initdb").string(), "-D", data.string(), "-U", "bantay",
            "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"},
           initdb_log)) {
    Die("initdb failed:\n" + Tail(initdb_log));
  }
  {
    // Durability is what the clients under test provide; the test server
    // itself need not survive a crash.
    std::ofstream conf(data / "postgresql.conf", std::ios::app);
    conf << "\n# bantay test cluster\n"
         << "listen_addresses = '127.0.0.1'\n"
         << "unix_socket_directories = '" << dir.string() << "'\n"
         << "fsync = off\n"
         << "synchronous_commit = off\n"
         << "full_page_writes = off\n";
    if (!conf) Die("cannot write " + (data / "postgresql.conf").string());
  }

  fs::path server_log = dir / "server.log";
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    int port = FreePort();
    if (Run({(bin / "pg_ctl").string(), "-D", data.string(), "-l",
             server_log.string(), "-w", "-t", "120", "-o",
             "-p " + std::to_string(port), "start"},
            dir / "pg_ctl.log")) {
      std::ofstream(dir / "port") << port << "\n";
      return port;
    }
    StopServer(data, "immediate");
  }
  Die("the server did not start on 127.0.0.1 (" +
      std::to_string(kStartAttempts) + " attempts); its log:\n" +
      Tail(server_log) + "\npg_ctl:\n" + Tail(dir / "pg_ctl.log"));
}

void PgCluster::Stop(const std::string& dir_name) {
  fs::path dir = fs::absolute(dir_name);
  fs::path data = dir / "data";
  StopServer(data, "fast");
  StopServer(data, "immediate");  // only if the fast stop failed
  std::error_code ec;
  fs::remove_all(dir, ec);
}

PgCluster::PgCluster() {
  const char* shared_dir = std::getenv("BANTAY_TEST_PG_DIR");
  if (shared_dir != nullptr && *shared_dir != '\0') {
    dir_ = shared_dir;
    std::string port = ReadFile(fs::path(dir_) / "port");
    port_ = std::atoi(port.c_str());
    if (port_ <= 0) {
      Die("BANTAY_TEST_PG_DIR=" + dir_ +
          " holds no running cluster (no port file); ctest starts it in "
          "the pg_cluster_start test");
    }
    return;
  }
  std::string dir = (fs::temp_directory_path() / "bantay-pg-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) Die("mkdtemp failed");
  dir_ = dir;
  owned_ = true;
  port_ = Start(dir_);
}

PgCluster::~PgCluster() {
  if (owned_) Stop(dir_);
}

std::string PgCluster::CreateDatabase(const std::string& name) {
  if (name.empty() || name.size() > 63 ||
      name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
          std::string::npos) {
    Die("bad database name '" + name + "' (letters, digits, _; at most 63)");
  }
  std::string base = "postgresql://bantay@127.0.0.1:" + std::to_string(port_);
  PGconn* conn = PQconnectdb((base + "/postgres").c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    Die("cannot connect to the test cluster in " + dir_ + ": " + message);
  }
  // DROP DATABASE IF EXISTS notices are expected.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  for (const std::string& sql :
       {"DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)",
        "CREATE DATABASE \"" + name + "\""}) {
    PGresult* result = PQexec(conn, sql.c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
      std::string message = PQresultErrorMessage(result);
      PQclear(result);
      PQfinish(conn);
      Die(sql + " failed: " + message);
    }
    PQclear(result);
  }
  PQfinish(conn);
  return base + "/" + name;
}

PgCluster& PgCluster::Shared() {
  static PgCluster cluster;
  return cluster;
}

}  // namespace bantay::testing
