#!/usr/bin/env bash
# The self-contained wheel, end to end (make test runs this when CI is set; make test-wheel
# by hand): build it with the vendored libssh (make wheel), check that auditwheel reports the
# bundled libssh, install it into a fresh venv and, inside a mount namespace where the system
# libssh.so.4 is an empty file and the vendor prefix is hidden, run a DemoServer for OpenSSH's
# ssh and check libssh_version(), with python3 and, where installed (on PATH or by pyenv), the
# oldest and newest CPython the abi3 tag promises (3.9, 3.13).  WHEEL_PYTHONS overrides the list.
set -euo pipefail
cd "$(dirname "$0")/.."
series=${WHEEL_LIBSSH:-0.12}
say() { printf 'ci_wheel: %s\n' "$*" >&2; }
trap 'say "FAILED at line $LINENO: $BASH_COMMAND"' ERR

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
contents=$(unzip -Z1 "$wheel")   # (not piped into grep -q: pipefail would see unzip's SIGPIPE)
grep -qE '^pylibssh_server\.libs/libssh-[0-9a-f]+\.so\.4' <<<"$contents" \
  || { say "no bundled libssh in pylibssh_server.libs/ of $wheel"; exit 1; }
grep -qE '\.dist-info/licenses/libssh/COPYING$' <<<"$contents" \
  || { say "no libssh license notice in $wheel"; exit 1; }

tmp=$(mktemp -d /tmp/pylibssh-ci-wheel.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp scripts/wheel_smoke.py "$tmp/"

# The cache is read whole before it is searched: an early-exiting reader on a pipe
# leaves ldconfig to die of SIGPIPE when the cache is large, and pipefail stops the run.
ld_cache=$(/sbin/ldconfig -p)
system_lib=$(awk '/^[[:space:]]*libssh\.so\.4 / && !found { print $NF; found = 1 }' <<<"$ld_cache")
[ -z "$system_lib" ] || system_lib=$(readlink -f "$system_lib")
prefix_lib="$(make -s --no-print-directory -C vendor "prefix-$series")/lib"
: >"$tmp/empty"
# Private mounts only (unshare -m makes them private): the host's files are untouched.
hide="mount --bind $tmp/empty $system_lib; mount -t tmpfs none $prefix_lib"
[ -n "$system_lib" ] || { say "no system libssh.so.4 installed: nothing to hide"; hide="mount -t tmpfs none $prefix_lib"; }
find_python() {   # python3.X on PATH, else pyenv's, else nothing
  if "python$1" -c '' 2>/dev/null; then echo "python$1"; return; fi
  local prefix
  prefix=$(pyenv prefix "$1" 2>/dev/null) && [ -x "$prefix/bin/python3" ] && echo "$prefix/bin/python3"
  return 0
}
pythons=${WHEEL_PYTHONS:-"python3 $(find_python 3.9) $(find_python 3.13)"}
n=0
for python in $pythons; do
  n=$((n + 1)); venv="$tmp/venv-$n"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
  (cd "$tmp" && unshare -m sh -ec "$hide; exec $venv/bin/python -I $tmp/wheel_smoke.py $expected")
  say "OK: $(basename "$wheel") runs on its bundled libssh $expected ($("$venv/bin/python" -V))"
done
