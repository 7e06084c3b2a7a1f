# SPDX-License-Identifier: MIT
"""Coverage-guided fuzzing (atheris/libFuzzer) of the Python code that decodes client data.

Each harness in ``fuzz/`` runs in its own process for a bounded time: 10 s in ``make test``,
90 s in ``make stress``, starting from seeds it writes into a fresh corpus directory. What the
harnesses check, beyond "no crash", is in their docstrings. A failure shows the fuzzer's
output: the Python traceback and the crashing input (base64), which reproduces with
``python tests/stress/fuzz/fuzz_<name>.py FILE`` on a file holding it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stress import _support

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
HARNESSES = ["sftp", "authorized_keys", "demo_client_data", "demo_config"]
SECONDS = _support.pick(10, 60)
#: Fewer executions than this per second means the harness is broken, not slow: the slowest
#: harness runs several hundred per second on one shared core.
MIN_EXECS_PER_SECOND = 30


def _stat(output: str, name: str) -> int | None:
    match = re.search(rf"^stat::{name}:\s*(\d+)", output, re.MULTILINE)
    return int(match.group(1)) if match else None


def test_atheris_is_installed() -> None:
    """atheris is in the test extras: without it the fuzzing tests fail instead of skipping."""
    assert importlib.util.find_spec("atheris") is not None, \
        "atheris is missing: pip install -e '.[test]'"


@pytest.mark.timeout(SECONDS + 120)
@pytest.mark.parametrize("name", HARNESSES)
def test_fuzz(name: str, tmp_path: Path) -> None:
    """The harness runs its full time without a crash or a broken invariant, executes a sane
    number of inputs, and its coverage feedback works (libFuzzer keeps new inputs)."""
    corpus = tmp_path / "corpus"
    artifacts = tmp_path / "artifacts"
    scratch = tmp_path / "tmp"
    for directory in (artifacts, scratch):
        directory.mkdir()
    command = [
        sys.executable, str(FUZZ_DIR / f"fuzz_{name}.py"), "--seeds", str(corpus),
        f"-max_total_time={SECONDS}", "-rss_limit_mb=2048", "-timeout=30",
        "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus),
    ]
    # TMPDIR: the harness's own files live under tmp_path, even when a crash skips clean-up.
    env = {**os.environ, "TMPDIR": str(scratch)}
    start = time.monotonic()
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace", env=env,
                          timeout=SECONDS + 90, check=False)
    elapsed = time.monotonic() - start
    tail = "\n".join(proc.stdout.splitlines()[-60:])
    crashes = sorted(p.name for p in artifacts.iterdir())
    assert (proc.returncode, crashes) == (0, []), (
        f"fuzz_{name} exited {proc.returncode}, artifacts {crashes}:\n{tail}")
    executions = _stat(proc.stdout, "number_of_executed_units")
    new_units = _stat(proc.stdout, "new_units_added")
    _support.record(f"fuzz {name}", tried=executions or 0, seconds=elapsed,
                    extra={"new_units": new_units})
    assert executions is not None and executions >= MIN_EXECS_PER_SECOND * SECONDS, (
        f"fuzz_{name} executed {executions} inputs in {SECONDS} s:\n{tail}")
    assert new_units is not None and new_units > 0, (
        f"fuzz_{name} kept no new input: is the target instrumented?\n{tail}")
