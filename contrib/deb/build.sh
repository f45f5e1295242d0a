#!/usr/bin/env bash
# A thin wrapper around `cargo deb --no-build` for a binary built elsewhere: CI packages the
# debug binary its tests built, contrib/release.sh a musl binary and its target (which sets
# the package's architecture). Without arguments it is `cargo deb` on target/release.
# Usage: contrib/deb/build.sh [BINARY [TARGET]]. Prints the .deb's path last.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=target/${2:+$2/}release/stream-agency
if [ -n "${1:-}" ] && [ "$(realpath -m "$1")" != "$(realpath -m "$dest")" ]; then
  mkdir -p "$(dirname "$dest")"
  cp "$1" "$dest"
  # Release binaries are stripped by their profile; a debug one (CI) here.
  strip --strip-unneeded "$dest" 2>/dev/null || true
fi
cargo deb --no-build --no-strip ${2:+--target "$2"} 2>&1 | tail -1
