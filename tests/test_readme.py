# SPDX-License-Identifier: MIT
"""The README cannot drift: its server example runs as written, its CLI reference is the
parser's own help, and the repository needs nothing beside it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import paramiko
from conftest import ROOT, SSH_OPTS, stop_process

README = Path(ROOT) / "README.md"
TIMEOUT = 30


def _python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def test_writing_your_own_server_example_runs(tmp_path: Path) -> None:
    """The "Writing your own server" block, run as a script: it prints its port (port 0),
    answers an OpenSSH exec, and stops cleanly on Ctrl-C (SIGINT) with a client still
    connected: exit 0, no traceback."""
    script = tmp_path / "server.py"
    script.write_text(_python_block_after("## Writing your own server"))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    idle = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match is not None, (line, proc.stderr.read() if proc.stderr else "")
        port = int(match.group(1))
        argv = ["sshpass", "-p", "secret", "ssh", *SSH_OPTS, "-o", "PubkeyAuthentication=no",
                "-p", str(port), "u@127.0.0.1", "hello"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
        assert (result.returncode, result.stdout) == (0, "you said: hello\n"), result.stderr
        idle = paramiko.Transport(("127.0.0.1", port))
        idle.start_client(timeout=10)
        idle.auth_password("u", "secret")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if idle is not None:
            idle.close()
        stop_process(proc)
    assert (proc.returncode, err) == (0, "")


def test_cli_reference_is_the_parsers_help() -> None:
    """The CLI block in the README is ``--help`` as the parser prints it (regenerate it with
    ``python scripts/update_readme_cli.py``)."""
    sys.path.insert(0, str(Path(ROOT) / "scripts"))
    try:
        import update_readme_cli
    finally:
        sys.path.pop(0)
    assert update_readme_cli.cli_block() in README.read_text(), \
        "README.md's CLI reference is stale: run python scripts/update_readme_cli.py"


def test_the_repository_stands_alone() -> None:
    """Nothing tracked refers to a folder beside the checkout: the contract is in docs/ and
    the C reference server in benchmarks/."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=TIMEOUT).stdout.split()
    offenders = []
    for name in tracked:
        path = Path(ROOT) / name
        if name.startswith("tests/") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if "../shared" in text or "/work/shared" in text:
            offenders.append(name)
    assert offenders == []
    assert (Path(ROOT) / "docs" / "demo-contract.md").is_file()
    assert (Path(ROOT) / "benchmarks" / "c_server" / "c_libssh_server.c").is_file()
