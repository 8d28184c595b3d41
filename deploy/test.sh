#!/usr/bin/env bash
# The README's test command: installs what a fresh Debian 12 machine lacks,
# builds (Release, warnings as errors) into build/, and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBANTAY_WERROR=ON
cmake --build build -j"$(nproc)"
# A test that hangs is stopped by the watchdog in each test binary after 600 s
# (tests/support/test_main.cc), which prints where it hangs; ctest's timeout
# is the backstop for anything outside a test.
ctest --test-dir build --output-on-failure -j"$(nproc)" --timeout 900

# Many readers with one writer on the live index, two writers on one store,
# a store read on two connections at once, and the server (sessions, pools,
# index service, shutdown) under load and administration, and bulk scans
# (walker, workers, in-order writer) and `bantay stream` (a sender and a
# reader thread on one WebSocket) against it, stream sessions (registry,
# compute pipeline, WebSocket) and webhook deliveries, under
# ThreadSanitizer (suppressions: third-party code only, see the file).
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTAY_TSAN=ON \
  -DBANTAY_BUILD_BENCH=OFF -DBANTAY_WERROR=ON
cmake --build build-tsan -j"$(nproc)" --target matcher_test server_integration_test \
  server_test webhook_test
export TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp"
build-tsan/bin/matcher_test \
  --gtest_filter='HashIndexConcurrentTest.*:HashIndexTest.MergesKeepEveryChange:HashIndexTest.ConcurrentFoldsAndMergesKeepEveryChange:HashIndexTest.MergeNowCompletesWhileAddsGoOn:HashIndexTest.MergeNowDuringTheLastFoldCompletes:HashIndexTest.QueriesSearchAtMostThreeTiersWhileMerging:HashIndexTest.ReplacedSnapshotsAreDestroyedByTheIndex:Backends/StoreTest.TwoWritersOnOneDatabase/sqlite:Backends/StoreIndexTest.ALargeStoreLoadsInTwoHalvesWithEveryEntry/sqlite:Backends/StoreIndexTest.AMixedLargeStoreLoadsInTwoHalvesAsEntryByEntry/sqlite'
build-tsan/bin/server_integration_test --gtest_filter='Backends/ApiTest.*/sqlite:LifecycleTest.*:BinaryTest.*:ScanServerTest.*:StreamCliTest.*:StreamApiTest.*:StreamWsTest.*'
build-tsan/bin/server_test --gtest_filter='StreamsTest.*:StreamsWithIndexTest.*:StreamStateTest.*:ComputePoolTest.*'
build-tsan/bin/webhook_test

# The fuzz targets (tests/fuzz) under libFuzzer with AddressSanitizer and
# UBSan, each from a fixed seed for a fixed number of inputs starting from the
# checked-in corpus (which the ctest run above replays as it is), so that the
# result depends on the code alone (api_fuzz's and http_fuzz's less so: their
# requests run on thread pools, so timing steers which inputs they keep; a
# finding names its input, which replays exactly). http_fuzz runs twice: over
# plain HTTP, and over TLS (BANTAY_FUZZ_TLS=1). New inputs go to a scratch
# directory; an input that breaks a property is left there and named in the
# output. Any single allocation over 2 GB counts as a finding (a
# decompression bomb); the process as a whole may grow to 8 GB (OpenCV, the
# sanitizers' own memory).
CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTAY_FUZZ=ON \
  -DBANTAY_BUILD_TESTS=OFF -DBANTAY_BUILD_BENCH=OFF -DBANTAY_WERROR=ON
cmake --build build-fuzz -j"$(nproc)" --target image_fuzz import_fuzz request_body_fuzz \
  api_fuzz http_fuzz
fuzz_work=$(mktemp -d)
for run in image_fuzz:200000 import_fuzz:1000000 request_body_fuzz:2000000 \
  api_fuzz:20000 http_fuzz:20000 http_fuzz:10000:tls; do
  IFS=: read -r target runs transport <<<"$run"
  name=$target${transport:+_$transport}
  mkdir "$fuzz_work/$name"
  cp tests/fuzz/corpus/"$target"/* "$fuzz_work/$name"/
  BANTAY_FUZZ_TLS=$([ "$transport" = tls ] && echo 1 || echo 0) OPENCV_LOG_LEVEL=SILENT \
    build-fuzz/bin/"$target" -seed=1 -runs="$runs" \
    -max_len=4096 -timeout=20 -rss_limit_mb=8192 -malloc_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$fuzz_work/$name-" "$fuzz_work/$name" 2>"$fuzz_work/$name.log" ||
    { tail -n 60 "$fuzz_work/$name.log"; exit 1; }
  echo "$name:"
  grep -E '^(Done|stat::number_of_executed_units)' "$fuzz_work/$name.log"
done
rm -rf "$fuzz_work"
