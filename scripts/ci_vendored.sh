#!/usr/bin/env bash
# In CI, after the system-libssh suite: also run the suite against the vendored libssh 0.11
# when it can be built in time.  A build that cannot happen here (no Debian source reachable,
# time limit) is reported and skipped; a failing test fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
version=${VENDORED_LIBSSH:-0.11}
if ! timeout "${VENDOR_BUILD_TIMEOUT:-900}" make --no-print-directory -C vendor "libssh-$version"; then
  echo "ci: vendored libssh $version could not be built here; its suite was skipped" >&2
  exit 0
fi
exec make --no-print-directory test LIBSSH="$version"
