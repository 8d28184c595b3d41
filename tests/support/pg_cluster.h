// A real PostgreSQL server for the tests: a fresh cluster in a temporary
// directory (Debian's postgresql package, /usr/lib/postgresql/*/bin),
// listening on 127.0.0.1 on a free port, started on construction and
// stopped (and its directory removed) on destruction. When the tests run as
// root, the server runs as the `postgres` system user (initdb refuses root).
#ifndef BANTAY_TESTS_SUPPORT_PG_CLUSTER_H_
#define BANTAY_TESTS_SUPPORT_PG_CLUSTER_H_

#include <string>

namespace bantay::testing {

class PgCluster {
 public:
  // Starts the cluster; aborts the test binary with a clear message when
  // PostgreSQL is not installed or does not start (the test command installs
  // it, so this is a broken machine, not a reason to skip).
  PgCluster();
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // Creates a new empty database and returns its libpq URI
  // ("postgresql://bantay@127.0.0.1:PORT/NAME").
  std::string CreateDatabase(const std::string& name);
  int port() const { return port_; }

  // One cluster per test binary, started on first use. When the environment
  // variable BANTAY_TEST_PG_DIR names the directory of a cluster started by
  // `pg_cluster_ctl start` (ctest's `postgres` fixture), that cluster is
  // used and left running; otherwise the binary starts its own in a
  // temporary directory and stops it at exit.
  static PgCluster& Shared();

  // What `pg_cluster_ctl start|stop DIR` does: Start initialises a cluster
  // in DIR/data (DIR is emptied first), starts it on a free port with its
  // socket in DIR, writes the port to DIR/port and returns it; aborts on
  // failure. Stop stops the cluster (if it runs) and removes DIR.
  static int Start(const std::string& dir);
  static void Stop(const std::string& dir);

 private:
  std::string dir_;
  int port_ = 0;
  bool owned_ = false;  // started (and so stopped) by this object
};

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_SUPPORT_PG_CLUSTER_H_
