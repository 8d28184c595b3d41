#!/usr/bin/env bash
# The README's test command: installs what a fresh Debian 12 machine lacks,
# builds (Release, warnings as errors) into build/, and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBANTAY_WERROR=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"

# Many readers with one writer on the live index, two writers on one store,
# and a store read on two connections at once, under ThreadSanitizer.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTAY_TSAN=ON \
  -DBANTAY_BUILD_BENCH=OFF -DBANTAY_WERROR=ON
cmake --build build-tsan -j"$(nproc)" --target matcher_test
TSAN_OPTIONS="halt_on_error=1" build-tsan/bin/matcher_test \
  --gtest_filter='HashIndexConcurrentTest.*:HashIndexTest.MergesKeepEveryChange:Backends/StoreTest.TwoWritersOnOneDatabase/sqlite:Backends/StoreIndexTest.ALargeStoreLoadsInTwoHalvesWithEveryEntry/sqlite'
