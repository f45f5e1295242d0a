#!/usr/bin/env bash
# Verifies the units with systemd-analyze against a built binary (CI runs it when
# systemd-analyze exists). Usage: contrib/systemd/verify.sh path/to/stream-agency
set -euo pipefail
bin=$(realpath "$1")
here=$(dirname "$0")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Litestream's units name its binary where the README installs it; any executable stands
# in where it is not installed.
litestream=$(command -v litestream || command -v true)
for unit in "$here"/*.service "$here"/*.timer "$here"/*.socket; do
  sed -e "s#/usr/local/bin/stream-agency#$bin#" -e "s#/usr/local/bin/litestream#$litestream#" \
    "$unit" >"$tmp/$(basename "$unit")"
done
cd "$tmp"
# Credentials' sources need not exist at verify time; everything else must be clean.
out=$(systemd-analyze verify ./*.service ./*.timer ./*.socket 2>&1 | grep -v -e 'LoadCredential' -e 'Failed to prepare filename' || true)
if [ -n "$out" ]; then
  echo "$out"
  exit 1
fi
echo "systemd units verified"
