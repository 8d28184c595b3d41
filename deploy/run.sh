#!/usr/bin/env bash
# The README's main command: installs what is missing, builds Release into
# build/, and runs Bantay. Until the server exists (issue 5) that is
# `bantay hash` over the benign sample images in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target bantay
exec build/bin/bantay hash -r --dihedral tests/data/pdq
