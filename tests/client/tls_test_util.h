// Test support for talking to real servers over loopback: free ports,
// child processes (bantay-server, `openssl s_server`), certificates made with
// the openssl command line, and a scripted plain-HTTP peer for the client's
// connection handling (keep-alive, closes, broken answers).
//
// Failures to set something up are reported with ADD_FAILURE and give empty
// values, so that a test can ASSERT on them.
#ifndef BANTAY_TESTS_CLIENT_TLS_TEST_UTIL_H_
#define BANTAY_TESTS_CLIENT_TLS_TEST_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace bantay::testing {

// A socket bound to 127.0.0.1:port (0: any free port), or -1.
inline int BindLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline int LocalPort(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  return ntohs(addr.sin_port);
}

// A port of 127.0.0.1 that was free a moment ago: bound to port 0, then
// released, for a program that wants its port on the command line. Another
// process could take it in between; nothing else on a test machine binds
// loopback ports at random.
inline int FreeLoopbackPort() {
  const int fd = BindLoopback(0);
  if (fd < 0) {
    ADD_FAILURE() << "cannot bind 127.0.0.1:0";
    return 0;
  }
  const int port = LocalPort(fd);
  close(fd);
  return port;
}

// Whether 127.0.0.1:port accepts a TCP connection within `limit`.
inline bool WaitForLoopbackPort(int port, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (true) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    const bool connected =
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (connected) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

inline std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// A child process (argv[0] searched in PATH), standard input from /dev/null,
// standard output and error to a log file. The destructor stops it (SIGTERM,
// then SIGKILL after 5 s) and reaps it.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { Stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool Start(const std::vector<std::string>& argv,
             const std::string& log_path = "/dev/null") {
    log_path_ = log_path;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    const int rc =
        posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      ADD_FAILURE() << "cannot start " << argv[0] << ": " << strerror(rc);
      return false;
    }
    return true;
  }

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) return true;
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }

  // Waits for the process to end by itself; its exit status, -1 when it was
  // killed by a signal.
  int Wait() {
    if (pid_ > 0) {
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    return exit_status_;
  }

  // Stops the process (SIGTERM, SIGKILL after 5 s); its exit status as Wait.
  int Stop() {
    if (!Running()) return exit_status_;
    kill(pid_, SIGTERM);
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Running()) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        return Wait();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_status_;
  }

 private:
  pid_t pid_ = -1;
  int exit_status_ = -1;
  std::string log_path_;
};

// Runs a program to completion; its exit status (-1: killed or not
// started). Its standard output and error go to *output when given.
inline int RunProgram(const std::vector<std::string>& argv,
                      const std::string& log_path,
                      std::string* output = nullptr) {
  ChildProcess child;
  if (!child.Start(argv, log_path)) return -1;
  const int status = child.Wait();
  if (output != nullptr) *output = ReadTextFile(log_path);
  return status;
}

// Certificates and keys (PEM files) made with the openssl command line:
// P-256 keys, valid for one day.
struct TestCertificate {
  std::string cert;
  std::string key;
};

struct TestPki {
  TestCertificate ca;  // self-signed, CN=<ca_name>
  TestCertificate
      server;  // signed by ca; CN=localhost, IP:127.0.0.1 and DNS:localhost
  TestCertificate client;  // signed by ca; CN=bantay-test-client
};

inline bool RunOpenssl(const std::vector<std::string>& args,
                       const std::string& dir) {
  std::vector<std::string> argv{"openssl"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string output;
  if (RunProgram(argv, dir + "/openssl.log", &output) != 0) {
    ADD_FAILURE() << "openssl " << args[0] << " failed:\n" << output;
    return false;
  }
  return true;
}

// A self-signed certificate `dir/name.pem` (key `dir/name.key`) with the
// given subject alternative names.
inline TestCertificate MakeSelfSignedCertificate(
    const std::string& dir, const std::string& name,
    const std::string& alt_names = "IP:127.0.0.1,DNS:localhost") {
  TestCertificate c{dir + "/" + name + ".pem", dir + "/" + name + ".key"};
  if (!RunOpenssl({"req", "-x509", "-newkey", "ec", "-pkeyopt",
                   "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
                   "-addext", "subjectAltName=" + alt_names, "-days", "1",
                   "-keyout", c.key, "-out", c.cert},
                  dir)) {
    return {};
  }
  return c;
}

// A certificate `dir/name.pem` signed by `ca`, with the given subject and,
// when not empty, subject alternative names.
inline TestCertificate MakeSignedCertificate(const std::string& dir,
                                             const std::string& name,
                                             const TestCertificate& ca,
                                             const std::string& subject,
                                             const std::string& alt_names) {
  TestCertificate c{dir + "/" + name + ".pem", dir + "/" + name + ".key"};
  const std::string csr = dir + "/" + name + ".csr";
  std::vector<std::string> req{"req",     "-new",     "-newkey",
                               "ec",      "-pkeyopt", "ec_paramgen_curve:P-256",
                               "-nodes",  "-subj",    subject,
                               "-keyout", c.key,      "-out",
                               csr};
  if (!alt_names.empty()) {
    req.insert(req.end(), {"-addext", "subjectAltName=" + alt_names});
  }
  if (!RunOpenssl(req, dir) ||
      !RunOpenssl({"x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                   "-CAcreateserial", "-copy_extensions", "copy", "-days", "1",
                   "-out", c.cert},
                  dir)) {
    return {};
  }
  return c;
}

// Two PKIs for one test need two CA names: a server looks the issuer up by
// name.
inline TestPki MakeTestPki(const std::string& dir,
                           const std::string& ca_name = "ca") {
  TestPki pki;
  pki.ca = MakeSelfSignedCertificate(dir, ca_name, "DNS:" + ca_name);
  if (pki.ca.cert.empty()) return {};
  pki.server = MakeSignedCertificate(dir, "server", pki.ca, "/CN=localhost",
                                     "IP:127.0.0.1,DNS:localhost");
  pki.client = MakeSignedCertificate(dir, "client", pki.ca,
                                     "/CN=bantay-test-client", "");
  if (pki.server.cert.empty() || pki.client.cert.empty()) return {};
  return pki;
}

// `openssl s_server -www` on 127.0.0.1 (a free port): answers every GET
// with HTTP/1.0 200 and a status page. extra_args are added to its command
// line (e.g. "-Verify", "1", "-CAfile", ca for mutual TLS, "-tls1_2").
class TlsTestServer {
 public:
  bool Start(const TestCertificate& cert, const std::string& log_path,
             const std::vector<std::string>& extra_args = {}) {
    port_ = FreeLoopbackPort();
    std::vector<std::string> argv{
        "openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port_),
        "-cert",   cert.cert,  "-key",    cert.key,
        "-www",    "-quiet"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    if (!process_.Start(argv, log_path)) return false;
    if (!WaitForLoopbackPort(port_, std::chrono::seconds(10))) {
      ADD_FAILURE() << "openssl s_server did not listen:\n"
                    << ReadTextFile(log_path);
      return false;
    }
    return true;
  }
  int port() const { return port_; }
  std::string url() const {
    return "https://127.0.0.1:" + std::to_string(port_);
  }

 private:
  ChildProcess process_;
  int port_ = 0;
};

// A plain-HTTP peer on 127.0.0.1:0, one connection at a time, for testing
// the client's side of a connection. It reads each request (header, then a
// Content-Length body), records it, and writes the next scripted reply.
// When the replies have run out it closes each connection after reading a
// request.
class ScriptedHttpPeer {
 public:
  struct Reply {
    std::string bytes;         // written as they are; may be a partial answer
    bool close_after = false;  // then close the connection (without saying so)
    bool hold = false;         // write nothing, keep the connection open
    // Answer as soon as the header is in, without reading the body, and
    // close (as a server does with a body over its limit).
    bool before_body = false;
  };

  // "HTTP/1.1 <status> X" with Content-Type and Content-Length.
  static std::string Answer(
      int status, const std::string& body,
      const std::string& content_type = "application/json",
      const std::string& extra_headers = "") {
    return "HTTP/1.1 " + std::to_string(status) +
           " X\r\nContent-Type: " + content_type + "\r\n" + extra_headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  }

  explicit ScriptedHttpPeer(std::vector<Reply> replies)
      : replies_(std::move(replies)) {
    listen_fd_ = BindLoopback(0);
    if (listen_fd_ < 0 || listen(listen_fd_, 8) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1:0";
      return;
    }
    port_ = LocalPort(listen_fd_);
    thread_ = std::thread([this] { Serve(); });
  }

  ~ScriptedHttpPeer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) close(listen_fd_);
  }

  ScriptedHttpPeer(const ScriptedHttpPeer&) = delete;
  ScriptedHttpPeer& operator=(const ScriptedHttpPeer&) = delete;

  int port() const { return port_; }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_);
  }

  // The requests received so far (header and body bytes as they came).
  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }
  int connections() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return connections_;
  }

 private:
  // Waits until fd is readable; false when stopping.
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  // Reads one request (only its header when header_only); false when the
  // connection ended (or stopping).
  bool ReadRequest(int fd, bool header_only, std::string* request) {
    std::string data;
    size_t header_end = std::string::npos;
    size_t need = 0;
    char buf[16384];
    while (true) {
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          header_end += 4;
          need = header_end;
          std::string lower = data.substr(0, header_end);
          for (char& c : lower) {
            c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
          }
          const size_t at = lower.find("\r\ncontent-length:");
          if (at != std::string::npos && !header_only) {
            need += std::stoul(lower.substr(at + 17));
          }
        }
      }
      if (header_end != std::string::npos && data.size() >= need) {
        *request = data.substr(0, need);
        return true;
      }
      if (!WaitReadable(fd)) return false;
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      data.append(buf, static_cast<size_t>(n));
    }
  }

  void Serve() {
    while (!stop_) {
      if (!WaitReadable(listen_fd_)) return;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ++connections_;
      }
      ServeConnection(fd);
      close(fd);
    }
  }

  bool NextIsBeforeBody() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return next_ < replies_.size() && replies_[next_].before_body;
  }

  void ServeConnection(int fd) {
    std::string request;
    while (ReadRequest(fd, NextIsBeforeBody(), &request)) {
      Reply reply;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(request);
        if (next_ >= replies_.size()) return;
        reply = replies_[next_++];
      }
      if (reply.hold) {
        char buf[4096];
        while (WaitReadable(fd) && recv(fd, buf, sizeof(buf), 0) > 0) {
        }
        return;
      }
      size_t sent = 0;
      while (sent < reply.bytes.size()) {
        const ssize_t n = send(fd, reply.bytes.data() + sent,
                               reply.bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return;
        sent += static_cast<size_t>(n);
      }
      if (reply.close_after || reply.before_body) return;
    }
  }

  std::vector<Reply> replies_;  // constant after construction
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;

  mutable std::mutex mutex_;
  // Protected by mutex_:
  std::vector<std::string> requests_;
  size_t next_ = 0;
  int connections_ = 0;
};

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_CLIENT_TLS_TEST_UTIL_H_
