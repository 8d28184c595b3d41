#!/usr/bin/env bash
# The README's test command: installs what a fresh Debian 12 machine lacks,
# builds (Release, warnings as errors) into build/, and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBANTAY_WERROR=ON
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
