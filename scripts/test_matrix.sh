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
if [ "${UPDATE_README:-0}" = 1 ]; then
  # Replace the table between the markers in README.md with what actually ran.
  table="| libssh | result of the whole suite (\`make test-matrix\`, $(date -u +%Y-%m-%d)) |\n|---|---|"
  for row in "${summary[@]}"; do
    name=${row%%: *}
    table="$table\n| ${name#libssh } | ${row#*: } |"
  done
  python3 - "$table" <<'PY'
import re, sys
table = sys.argv[1].replace("\\n", "\n")
text = open("README.md").read()
new = re.sub(r"(<!-- matrix:start -->).*?(<!-- matrix:end -->)",
             lambda m: m.group(1) + "\n" + table + "\n" + m.group(2), text, flags=re.S)
open("README.md", "w").write(new)
PY
fi
exit $status
