# SPDX-License-Identifier: MIT
"""The public API stays fully typed: ``mypy`` (strict, from pyproject.toml) passes on the whole
package, and ``pyright --verifytypes`` finds every public symbol's type known (``make lint``
runs the same two commands)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.checkout
TIMEOUT = 300


def test_mypy_strict_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pyright_verifytypes_is_complete() -> None:
    """100 %, with pyright resolving the package through the venv's editable install (it
    runs the ``python`` first on PATH).  Types that other packages leave unknown (pytest's
    own, in the pytest plugin's hook) are not counted (``--ignoreexternal``)."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    result = subprocess.run([sys.executable, "-m", "pyright", "--verifytypes", "pylibssh_server",
                             "--ignoreexternal"], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT, env=env)
    assert f'Package directory: "{ROOT}/pylibssh_server"' in result.stdout, result.stdout
    match = re.search(r"Type completeness score: ([\d.]+)%", result.stdout)
    assert match is not None and match.group(1) == "100", result.stdout[-6000:]
    assert result.returncode == 0, result.stdout[-6000:]
