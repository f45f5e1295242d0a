#!/usr/bin/env bash
# Builds the Debian package from a binary already built (default: target/release/stream-agency;
# CI packages the one its tests built; contrib/release.sh passes a musl binary and its
# target, which sets the package's architecture):
# the units of contrib/systemd adapted to the package (binary in /usr/bin, the static
# system user, the key beside the database instead of credentials, so a unit starts with
# only the env file edited), then `cargo deb --no-build`. Prints the .deb's path.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/deb-assets
rm -rf "$out" && mkdir -p "$out"
cp "${1:-target/release/stream-agency}" "$out/stream-agency"
# Release binaries are stripped by their profile; a debug one (CI) here.
strip --strip-unneeded "$out/stream-agency" 2>/dev/null || true
for unit in contrib/systemd/*.service contrib/systemd/*.timer contrib/systemd/*.socket; do
  sed -e 's#/usr/local/bin/stream-agency#/usr/bin/stream-agency#' \
      -e '/^DynamicUser=yes/d' \
      -e '/^LoadCredential=/d' \
      -e '/^Environment=STREAM_AGENCY_OPERATOR_PEM=%d/d' \
      -e 's#^Environment=STREAM_AGENCY_DB=\(.*\)#Environment=STREAM_AGENCY_DB=\1\nEnvironment=STREAM_AGENCY_SECRET_KEY_FILE=/var/lib/stream-agency/stream-agency.key#' \
      "$unit" >"$out/$(basename "$unit")"
done
sed -e 's#^\# Billing (the operator key comes from LoadCredential=operator.pem in the unit).#\# Billing: the operator wallet, 0600 and owned by stream-agency.\n\#STREAM_AGENCY_OPERATOR_PEM=/var/lib/stream-agency/operator.pem#' \
  contrib/systemd/stream-agency.env.example >"$out/stream-agency.env"
gzip -9n -c doc/stream-agency.1 >"$out/stream-agency.1.gz"
cargo deb --no-build --no-strip ${2:+--target "$2"} 2>&1 | tail -1
