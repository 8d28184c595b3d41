#include "bantay/client/cli.h"
#include "bantay/models/image_hasher.h"

int main(int argc, char** argv) {
  bantay::models::KeepImageBytesOffTheDisk();
  return bantay::client::RunCli(argc, argv);
}
