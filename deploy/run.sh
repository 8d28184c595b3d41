#!/usr/bin/env bash
# The README's main command: installs what is missing, builds Release into
# build/, prepares a demo installation in build/demo (once) and starts
# bantay-server on 127.0.0.1 in the foreground (Ctrl-C stops it).
#
# The demo installation: an embedded SQLite store with a list "demo" made of
# benign sample pictures in tests/data/pdq (the labelme-subset photographs
# and the original of the "bridge" picture), fresh store keys,
# a self-signed certificate for 127.0.0.1, one API key per role
# (build/demo/keys/ROLE.key, 0600), and build/demo/server.toml. A curl
# command that gets a match back is printed before the server starts.
#
# Environment: BANTAY_DEMO_DIR (default build/demo), BANTAY_PORT (8443).
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target bantay bantay-server

demo=${BANTAY_DEMO_DIR:-build/demo}
port=${BANTAY_PORT:-8443}
bantay=build/bin/bantay

if [[ ! -f "$demo/server.toml" ]]; then
  echo "run: preparing the demo installation in $demo"
  rm -rf "$demo"
  mkdir -p "$demo/keys"
  chmod 700 "$demo" "$demo/keys"

  # Store keys, and the store with the demo list.
  "$bantay" index keygen --out "$demo/keys" >/dev/null
  export BANTAY_STORE="sqlite:$demo/store.db"
  export BANTAY_DATA_KEY_FILE="$demo/keys/data.key"
  export BANTAY_SIGNING_KEY_FILE="$demo/keys/signing.key"
  "$bantay" index init --actor demo >/dev/null
  # local_file lines: pdq HASH REFERENCE (the reference is the file name;
  # hashes of quality under 50 are left out, as the reference matches none).
  "$bantay" hash --csv tests/data/pdq/reg-test-input/labelme-subset/* \
    tests/data/pdq/reg-test-input/dih/bridge-1-original.jpg |
    awk -F, 'NR > 1 && $2 != "" && $3 >= 50 { n = split($1, p, "/"); print "pdq " $2 " " p[n] }' \
    >"$demo/demo-list.txt"
  "$bantay" index import "$demo/demo-list.txt" --list demo --category demo \
    --actor demo >/dev/null
  "$bantay" index add --list demo --description "benign sample pictures (tests/data/pdq)" \
    --actor demo >/dev/null

  # A self-signed certificate for the loopback address.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$demo/keys/server.key" -out "$demo/server.crt" >/dev/null 2>&1

  # One API key per role: the key to its file, its digest to the config.
  keys_toml=""
  for role in platform lab operator auditor; do
    table=$(build/bin/bantay-server --new-api-key "$role")
    (umask 077 && grep '^# [0-9a-f]\{64\}$' <<<"$table" | cut -c3- >"$demo/keys/$role.key")
    keys_toml+=$(grep -v '^#' <<<"$table" | sed "s/^id = .*/id = \"$role\"/")$'\n\n'
  done

  # Absolute paths: the server may be started from another directory.
  dir=$(realpath "$demo")
  cat >"$demo/server.toml" <<EOF
# Demo configuration written by deploy/run.sh (see deploy/bantay-server.example.toml).
[server]
listen = "127.0.0.1"
port = $port

[tls]
cert = "$dir/server.crt"
key = "$dir/keys/server.key"

[store]
url = "sqlite:$dir/store.db"
data_key_file = "$dir/keys/data.key"
signing_key_file = "$dir/keys/signing.key"

[log]
access_log = "-"

$keys_toml
EOF
fi

cat <<EOF

Bantay is starting on https://127.0.0.1:$port (Ctrl-C stops it). In another shell:

  curl --cacert $demo/server.crt \\
       -H "Authorization: Bearer \$(cat $demo/keys/platform.key)" \\
       -H "Content-Type: image/jpeg" \\
       --data-binary @tests/data/pdq/bridge-mods/aaa-orig.jpg \\
       https://127.0.0.1:$port/v1/match

answers {"match":true,"matches":[{"list":"demo","category":"demo","ref":"bridge-1-original.jpg"}],...}.
Keys for the other roles (lab, operator, auditor) are in $demo/keys/.

EOF
exec build/bin/bantay-server --config "$demo/server.toml" --set "server.port=$port"
