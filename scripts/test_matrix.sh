#!/usr/bin/env bash
# Run the whole suite against each libssh (system, then the vendored builds) and print the
# pytest summary line per version.  Exit non-zero if any version failed.
set -uo pipefail
cd "$(dirname "$0")/.."
versions=("${@:-system 0.11 0.12}")
read -r -a versions <<< "${versions[*]}"
summary=()
status=0
for v in "${versions[@]}"; do
  log=$(mktemp)
  make --no-print-directory test LIBSSH="$v" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1)
  rm -f "$log"
  [ "$rc" = 0 ] || status=1
  if [ "$v" = system ]; then name="system $(pkg-config --modversion libssh)"; else name="vendored $v"; fi
  summary+=("libssh $name: ${line:-no test summary} (exit $rc)")
done
printf '\n== test matrix ==\n'
printf '%s\n' "${summary[@]}"
exit $status
