#include "bantay/client/cli.h"

int main(int argc, char** argv) { return bantay::client::RunCli(argc, argv); }
