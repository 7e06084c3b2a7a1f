"""The cffi builder's error messages: a wrong libssh location is one clear, actionable line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_missing_vendored_prefix_is_a_clear_error(tmp_path: Path) -> None:
    """PYLIBSSH_LIBSSH_PREFIX without headers stops the build naming the variable and the fix."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "build_libssh.py")],
        env={"PYLIBSSH_LIBSSH_PREFIX": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "has no include/libssh/libssh.h" in result.stderr
    assert "make -C vendor" in result.stderr


def test_builder_declares_every_trampoline_it_defines() -> None:
    """Each extern "Python" declared in the cdef has a def_extern in _trampolines.py or _ffi.py
    (an unattached one would return 0, i.e. SSH_AUTH_SUCCESS)."""
    import re

    cdef = (ROOT / "build_libssh.py").read_text()
    declared = set(re.findall(r"\b(_[a-z0-9_]+_cb)\(", cdef.split('extern "Python" {')[1]))
    sources = (ROOT / "pylibssh_server" / "_trampolines.py").read_text() + (
        ROOT / "pylibssh_server" / "_ffi.py").read_text()
    defined = set(re.findall(r"@ffi\.def_extern\([^)]*\)\ndef (_[a-z0-9_]+_cb)\(", sources))
    assert declared == defined
