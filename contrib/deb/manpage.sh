#!/usr/bin/env bash
# Writes the man page stream-agency(1) to stdout from the binary's own --help texts, so it
# lists every command and option exactly as the binary does (tests/cli.rs checks that the
# committed doc/stream-agency.1 is this script's output).
# Usage: contrib/deb/manpage.sh path/to/stream-agency > doc/stream-agency.1
set -euo pipefail
bin=$1
version=$(awk -F\" '/^version =/{print $2; exit}' "$(dirname "$0")/../../Cargo.toml")
# roff: a backslash doubled; a line starting with . or ' protected.
esc() { sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"; }
commands() { "$1" "${@:2}" --help | awk '/^Commands:/{on=1; next} on && /^  [a-z]/{print $1}'; }
help_of() { "$bin" "$@" --help | sed "s#^Usage: [^ ]*#Usage: stream-agency#" | esc; }
cat <<HEAD
.TH STREAM-AGENCY 1 "" "stream-agency $version" "User Commands"
.SH NAME
stream-agency \\- keep Claws Network funding streams alive and bill the windows per epoch
.SH SYNOPSIS
.B stream-agency
[\\fB\\-\\-db\\fR \\fIFILE\\fR] [\\fB\\-\\-secret\\-key\\-file\\fR \\fIFILE\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]
.SH DESCRIPTION
Every option of \\fBtick\\fR and \\fBrun\\fR can also be given as an environment variable
STREAM_AGENCY_<OPTION> (for example STREAM_AGENCY_LEAD_SECONDS=360); a flag wins.
The README (/usr/share/doc/stream-agency/README.md) is the manual.
.PP
.nf
HEAD
help_of
echo ".fi"
echo ".SH COMMANDS"
for c in $(commands "$bin"); do
  echo ".SS $c"
  echo ".nf"
  help_of "$c"
  echo ".fi"
  for sub in $(commands "$bin" "$c"); do
    echo ".SS $c $sub"
    echo ".nf"
    help_of "$c" "$sub"
    echo ".fi"
  done
done
cat <<'TAIL'
.SH FILES
.TP
.I /etc/stream-agency/stream-agency.env
options for the units, one STREAM_AGENCY_<OPTION>=value per line
.TP
.I /var/lib/stream-agency/stream-agency.db
the database (kept by apt purge)
.TP
.I /var/lib/stream-agency/stream-agency.key
the key that encrypts stream signatures at rest (kept with the database)
.SH SEE ALSO
.BR systemctl (1),
.BR sqlite3 (1)
TAIL
