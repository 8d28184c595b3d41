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

  // One cluster per test binary, started on first use.
  static PgCluster& Shared();

 private:
  std::string dir_;
  int port_ = 0;
};

}  // namespace bantay::testing

#endif  // BANTAY_TESTS_SUPPORT_PG_CLUSTER_H_
