// pg_cluster_ctl start|stop DIR: the ctest fixture that runs one PostgreSQL
// cluster for every test process of a run (see PgCluster::Shared).
#include <cstdio>
#include <string>

#include "pg_cluster.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s start|stop DIR\n", argv[0]);
    return 2;
  }
  std::string command = argv[1];
  if (command == "start") {
    int port = bantay::testing::PgCluster::Start(argv[2]);
    std::printf("PostgreSQL test cluster in %s on 127.0.0.1:%d\n", argv[2],
                port);
    return 0;
  }
  if (command == "stop") {
    bantay::testing::PgCluster::Stop(argv[2]);
    return 0;
  }
  std::fprintf(stderr, "usage: %s start|stop DIR\n", argv[0]);
  return 2;
}
