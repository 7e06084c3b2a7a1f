#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/stress/test_threads.py (fast counts) under valgrind memcheck, in one process.
#
# The scenarios run inside the test process (PYLIBSSH_STRESS_INPROCESS=1) so valgrind sees every
# libssh call; the OpenSSH clients they start run natively (--trace-children=no).  Counted as
# errors: every memcheck error (invalid read/write/free, uninitialised values, overlapping
# copies...) that tests/stress/valgrind.supp does not suppress (third-party noise only), and
# definite leaks of memory allocated by the libssh calls we make.  Prints one summary line and
# exits non-zero on any error or test failure.
#
#   scripts/memcheck.sh [pytest args...]   PYTHON=.venv/bin/python, MEMCHECK_SCALE=10: full counts
#   output in .stress/ (MEMCHECK_DIR): memcheck.xml (valgrind's report), memcheck-errors.txt,
#   memcheck-summary.txt (the summary line)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${MEMCHECK_DIR:-.stress}
command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed" >&2; exit 2; }
mkdir -p "$OUT"
rm -f "$OUT"/memcheck.xml "$OUT"/memcheck-{errors,summary}.txt "$OUT"/memcheck-junit.xml

start=$(date +%s)
set +e
# PYTHONMALLOC=malloc: every Python object is a malloc block memcheck can follow (pymalloc's
# arenas would hide use-after-free of objects and look like invalid reads).
env PYTHONMALLOC=malloc PYLIBSSH_STRESS_INPROCESS=1 STRESS_SCALE="${MEMCHECK_SCALE:-1}" \
  valgrind --tool=memcheck --trace-children=no --fair-sched=yes \
    --suppressions=tests/stress/valgrind.supp \
    --error-exitcode=97 --errors-for-leak-kinds=none \
    --leak-check=full --show-leak-kinds=definite \
    --num-callers=40 --xml=yes --xml-file="$OUT/memcheck.xml" \
    "$PYTHON" -X faulthandler -m pytest -q --timeout=600 --junitxml="$OUT/memcheck-junit.xml" \
      tests/stress/test_threads.py "$@"
rc=$?
set -e
seconds=$(( $(date +%s) - start ))

# Count the errors in the XML report: every non-leak kind, and definite leaks of memory that a
# libssh call of ours allocated (a libssh frame, or one of cffi's _cffi_f_* call wrappers, in
# the allocation stack: cffi's own once-per-process module set-up does not count).  Their
# stacks go to $OUT/memcheck-errors.txt.
"$PYTHON" - "$OUT" "$rc" "$seconds" <<'PY'
import sys
import xml.etree.ElementTree as ET

out, rc, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    root = ET.parse(f"{out}/memcheck.xml").getroot()
except (OSError, ET.ParseError) as exc:
    print(f"memcheck: no valgrind report ({exc}); valgrind/pytest exit status {rc}")
    sys.exit(1)


def ours(frames: list[tuple[str, str]]) -> bool:
    return any("/libssh.so" in obj or fn.startswith("_cffi_f_") for fn, obj in frames)


kinds: dict[str, int] = {}
report = []
for error in root.iter("error"):
    kind = error.findtext("kind", "")
    stack = error.find("stack")
    frames = [] if stack is None else [
        (frame.findtext("fn", "?"), frame.findtext("obj", "?")) for frame in stack.iter("frame")]
    if kind.startswith("Leak_") and (kind != "Leak_DefinitelyLost" or not ours(frames)):
        continue
    kinds[kind] = kinds.get(kind, 0) + 1
    what = error.findtext("what") or error.findtext("xwhat/text", "")
    report.append(f"{kind}: {what}\n" + "".join(
        f"    {fn}  ({obj.rsplit('/', 1)[-1]})\n" for fn, obj in frames))
with open(f"{out}/memcheck-errors.txt", "w") as f:
    f.write("\n".join(report))
suppressed = sum(int(pair.findtext("count", "0")) for pair in root.iter("pair"))
# valgrind's exit status hides pytest's when it found errors (97): ask pytest's own report.
try:
    suite = ET.parse(f"{out}/memcheck-junit.xml").getroot().find("testsuite")
    assert suite is not None
    tests = int(suite.get("tests", "0"))
    failed = int(suite.get("failures", "0")) + int(suite.get("errors", "0"))
    status = f"{tests - failed}/{tests} tests passed"
except (OSError, ET.ParseError, AssertionError):
    failed, status = 1, f"no test report (exit status {rc})"
total = sum(kinds.values())
detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "none"
where = f", stacks in {out}/memcheck-errors.txt" if total else ""
summary = (f"memcheck: {total} errors ({detail}), {suppressed} suppressed third-party "
           f"reports, {status}, {seconds} s{where}")
print(summary)
with open(f"{out}/memcheck-summary.txt", "w") as f:
    f.write(summary + "\n")
sys.exit(0 if total == 0 and not failed and rc in (0, 97) else 1)
PY
