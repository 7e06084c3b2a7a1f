# SPDX-License-Identifier: MIT
"""The documentation site cannot break silently: ``make docs``'s build (Sphinx, warnings as
errors) runs here, and the guide's shell example runs as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.checkout

DOCS = Path(ROOT) / "docs"
TIMEOUT = 120


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """The same command as ``make docs`` (-W: any warning fails), into a scratch directory."""
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("pylibssh_server.Session.handle_key_exchange", "pylibssh_server.demo.DemoServer",
                 "pylibssh_server.hooks.AuthPasswordHook"):
        assert f'id="{name}"' in api, f"{name} missing from the API reference"


def test_cli_guide_shell_example_runs() -> None:
    """The shell block of docs/guide/cli.md: the CLI's JSON line gives the port, OpenSSH's ssh
    logs in with the password, SIGTERM stops the server with exit status 0."""
    text = (DOCS / "guide" / "cli.md").read_text()
    (block,) = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    # Its own process group: if the block fails half-way, the server it started is stopped.
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=TIMEOUT)
    assert (proc.returncode, out) == (0, "hello\n"), err


def test_guide_python_blocks_run() -> None:
    """The guide's own Python blocks (the README's are run by test_readme.py) run as written."""
    blocks = [(page.name, block) for page in sorted((DOCS / "guide").glob("*.md"))
              for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]
    assert len(blocks) >= 2
    for name, block in blocks:
        exec(compile(block, name, "exec"), {})


def test_api_reference_names_every_public_name() -> None:
    """Each name in ``__all__`` of ``pylibssh_server`` and ``pylibssh_server.demo`` (the
    enums through their module) has an entry in docs/api.md."""
    import pylibssh_server
    import pylibssh_server.demo
    from pylibssh_server import enums

    api = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"pylibssh_server(?:\.demo)?\.(\w+)", api)) | set(dir(enums))
    names = [*pylibssh_server.__all__, *pylibssh_server.demo.__all__]
    assert [n for n in names if n not in documented and n != "__version__"] == []
