#!/usr/bin/env bash
# Release builds: static x86_64 and aarch64 binaries (musl, cargo-zigbuild), each checked
# by running `--version` and an `enroll-from-pem` of a test wallet (aarch64 under
# qemu-user), then a .deb of each (amd64, arm64). Output in target/release-artifacts/.
# Needs: rustup, cargo-zigbuild (cargo install cargo-zigbuild), zig (pip install ziglang),
# cargo-deb, qemu-user (apt install qemu-user) for the aarch64 check.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/release-artifacts
mkdir -p "$out"
declare -A runner=([x86_64-unknown-linux-musl]="" [aarch64-unknown-linux-musl]="qemu-aarch64")
for target in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
  rustup target add "$target" >/dev/null
  cargo zigbuild --release --target "$target"
  bin=target/$target/release/stream-agency
  run=${runner[$target]}
  file "$bin" | grep -q 'statically linked' || { echo "$bin is not static" >&2; exit 1; }
  $run "$bin" --help >/dev/null
  version=$($run "$bin" --version)
  tmp=$(mktemp -d)
  $run "$bin" --db "$tmp/check.db" enroll-from-pem --pem tests/data/alice.pem >/dev/null
  $run "$bin" --db "$tmp/check.db" report --format tsv | grep -q "^claw1"
  rm -rf "$tmp"
  cp "$bin" "$out/stream-agency-$target"
  deb=$(contrib/deb/build.sh "$bin" "$target" | tail -1)
  cp "$deb" "$out/"
  echo "$target: $(stat -c %s "$bin") bytes, checked ($version); $(basename "$deb")"
done
