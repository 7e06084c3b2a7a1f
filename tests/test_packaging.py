# SPDX-License-Identifier: MIT
"""The sdist: complete enough to build the extension against the system libssh as an
installer does (pip, isolated build), and one clear error naming the package to install when
the libssh headers are absent.  (The self-contained wheel is built and run by
scripts/ci_wheel.sh: ``make test-wheel``, and ``make test`` in CI.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.checkout
TIMEOUT = 300
MISSING = "the libssh development headers were not found"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("sdist")
    env = {k: v for k, v in os.environ.items() if k != "PYLIBSSH_LIBSSH_PREFIX"}
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), ROOT],
                   check=True, capture_output=True, timeout=TIMEOUT, env=env)
    (path,) = out.glob("pylibssh_server-*.tar.gz")
    yield path


def _pip_wheel(sdist: Path, out: Path, *, hide_headers: bool) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` the sdist with the system libssh; with ``hide_headers``, inside a private
    mount namespace where /usr/include/libssh is an empty directory."""
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
            "-w", str(out), str(sdist)]
    if hide_headers:
        unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
        argv = [*unshare, "sh", "-ec", 'mount -t tmpfs none /usr/include/libssh; exec "$@"',
                "sh", *argv]
    env = {k: v for k, v in os.environ.items() if k != "PYLIBSSH_LIBSSH_PREFIX"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          cwd=out)


def test_sdist_carries_the_builder_and_no_build_output(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"build_libssh.py", "setup.py", "pyproject.toml", "README.md",
            "pylibssh_server/py.typed", "vendor/Makefile", "tests/conftest.py"} <= names
    assert not [n for n in names if n.endswith((".so", ".o", "_libssh.c"))
                or n.startswith(("vendor/build", "docs/_build"))]


def test_sdist_builds_an_abi3_wheel_on_the_system_libssh(sdist: Path, tmp_path: Path) -> None:
    """The extension of the wheel pip builds from the sdist needs ``libssh.so.4`` from the
    system (no RUNPATH to a vendored prefix) and is tagged for the stable ABI."""
    result = _pip_wheel(sdist, tmp_path, hide_headers=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name.endswith("-cp39-abi3-linux_x86_64.whl")
    with zipfile.ZipFile(wheel) as zf:
        (ext,) = [n for n in zf.namelist() if n.endswith(".so")]
        assert ext == "pylibssh_server/_libssh.abi3.so"
        (tmp_path / "ext.so").write_bytes(zf.read(ext))
    dynamic = subprocess.run(["readelf", "-d", str(tmp_path / "ext.so")], capture_output=True,
                             text=True, check=True, timeout=TIMEOUT).stdout
    assert "Shared library: [libssh.so.4]" in dynamic
    # The interpreter's own build flags may add a RUNPATH; none points at a vendored libssh.
    assert "vendor/build" not in dynamic and "libssh-0." not in dynamic


def test_sdist_without_libssh_headers_is_one_clear_error(sdist: Path, tmp_path: Path) -> None:
    """No libssh/libssh.h: the build stops before compiling, with one message that names the
    package to install."""
    result = _pip_wheel(sdist, tmp_path, hide_headers=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(MISSING) == 1, output
    assert "apt-get install libssh-dev" in output
    assert not list(tmp_path.glob("*.whl"))
