#!/usr/bin/env bash
# The self-contained wheel, end to end (make test runs this when CI is set; make test-wheel
# by hand): build it with the vendored libssh (make wheel), check that auditwheel reports the
# bundled libssh, install it into a fresh venv and, inside a mount namespace where the system
# libssh.so.4 is an empty file and the vendor prefix is hidden, run a DemoServer for OpenSSH's
# ssh and check libssh_version().
set -euo pipefail
cd "$(dirname "$0")/.."
series=${WHEEL_LIBSSH:-0.12}
say() { printf 'ci_wheel: %s\n' "$*" >&2; }

make --no-print-directory wheel WHEEL_LIBSSH="$series"
shopt -s nullglob
wheels=(dist/pylibssh_server-*-manylinux_*.whl)
[ ${#wheels[@]} -eq 1 ] || { say "expected one manylinux wheel in dist/, found: ${wheels[*]:-none}"; exit 1; }
wheel=${wheels[0]}
src=$(make -s --no-print-directory -C vendor "src-$series")
expected=$(basename "$src"); expected=${expected#libssh-}; expected=${expected%-*}   # 0.12.2-1 -> 0.12.2

show=$(.venv/bin/auditwheel show "$wheel")
printf '%s\n' "$show"
grep -q 'platform tag: "manylinux_' <<<"$show" || { say "auditwheel show gives no manylinux tag"; exit 1; }
grep -qE 'libssh-[0-9a-f]+\.so\.4' <<<"$show" || { say "auditwheel show reports no bundled libssh"; exit 1; }
unzip -Z1 "$wheel" | grep -qE '^pylibssh_server\.libs/libssh-[0-9a-f]+\.so\.4' \
  || { say "no bundled libssh in pylibssh_server.libs/ of $wheel"; exit 1; }
unzip -Z1 "$wheel" | grep -qE '\.dist-info/licenses/libssh/COPYING$' \
  || { say "no libssh license notice in $wheel"; exit 1; }

tmp=$(mktemp -d /tmp/pylibssh-ci-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
cp scripts/wheel_smoke.py "$tmp/"

system_lib=$(/sbin/ldconfig -p | awk '/^[[:space:]]*libssh\.so\.4 / { print $NF; exit }')
[ -z "$system_lib" ] || system_lib=$(readlink -f "$system_lib")
prefix_lib="$(make -s --no-print-directory -C vendor "prefix-$series")/lib"
: >"$tmp/empty"
# Private mounts only (unshare -m makes them private): the host's files are untouched.
hide="mount --bind $tmp/empty $system_lib; mount -t tmpfs none $prefix_lib"
[ -n "$system_lib" ] || { say "no system libssh.so.4 installed: nothing to hide"; hide="mount -t tmpfs none $prefix_lib"; }
cd "$tmp"
unshare -m sh -ec "$hide; exec $tmp/venv/bin/python -I $tmp/wheel_smoke.py $expected"
cd - >/dev/null
say "OK: $(basename "$wheel") runs on its bundled libssh $expected"
