#!/usr/bin/env bash
# Installs the Debian 12 packages Bantay needs to build, test and benchmark.
# Idempotent and non-interactive: packages already present are left alone, and
# nothing is fetched from anywhere but the Debian archive.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config
  # models/: decoding (OpenCV's codec, image-processing and video modules) and hashing
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libssl-dev
  # models/: a WebP header read exactly as OpenCV's WebP decoder reads it
  libwebp-dev
  # matcher/: FAISS binary indexes, the embedded store (SQLite) and the fleet
  # store's client library (libpq)
  libfaiss-dev libsqlite3-dev libpq-dev
  # server/ and client/: Asio/Beast, JSON and URL parsing (Boost 1.81)
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  # server/: its configuration file (TOML)
  libtomlplusplus-dev
  # tests and benchmarks; the tests start their own PostgreSQL server
  libgtest-dev libgmock-dev libbenchmark-dev postgresql
  # a test that hangs is stopped by the tests' watchdog, which prints where
  # it hangs with gdb
  gdb
  # the fuzz targets: clang with libFuzzer and the sanitizer runtimes (a
  # recommendation of clang's, so named), and clang's OpenMP runtime
  clang libclang-rt-14-dev libomp-dev
  # the server benchmark drives HTTPS load with wrk; certificates for tests and
  # the demo come from the openssl command
  wrk openssl
  # benchmark input: real photographs to cut 1080p frames from
  mate-backgrounds
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
