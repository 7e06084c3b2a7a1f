# SPDX-License-Identifier: MIT
"""Run by scripts/ci_wheel.sh with the Python of a fresh venv that has only the wheel
installed, inside a mount namespace where the system libssh cannot be loaded.

Checks, in order: ``libssh.so.4`` cannot be opened by name (the system copy is hidden); the
package comes from the venv; ``libssh_version()`` is the bundled version; the libssh mapped into
the process is the one in ``pylibssh_server.libs/``; a DemoServer serves OpenSSH's ``ssh`` (a
password login and an exec).  Prints one JSON line with what it found; exits 1 naming the
first check that failed.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

TIMEOUT = 30


def check(ok: bool, what: str) -> None:
    if not ok:
        sys.exit(f"wheel_smoke: FAILED: {what}")


def main() -> None:
    expected = sys.argv[1]
    try:
        ctypes.CDLL("libssh.so.4")
        hidden = False
    except OSError:
        hidden = True
    check(hidden, "the system libssh.so.4 can still be loaded (it should be hidden)")

    import pylibssh_server
    from pylibssh_server.demo import DemoServer

    check(pylibssh_server.__file__ is not None
          and pylibssh_server.__file__.startswith(sys.prefix),
          f"pylibssh_server imported from {pylibssh_server.__file__}, not from {sys.prefix}")
    version = pylibssh_server.libssh_version()
    check(version.split("/")[0] == expected,
          f"libssh_version() is {version!r}, expected the bundled {expected}")
    with open("/proc/self/maps") as maps:
        mapped = sorted({line.split()[-1] for line in maps if "/libssh" in line})
    check(len(mapped) == 1 and "/pylibssh_server.libs/" in mapped[0],
          f"libssh mapped from {mapped}, expected one copy in pylibssh_server.libs/")

    with DemoServer(password="wheel") as server:
        result = subprocess.run(
            ["sshpass", "-p", "wheel", "ssh", "-o", "PubkeyAuthentication=no",
             *server.ssh_args("alice"), "echo bundled"],
            capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        check((result.returncode, result.stdout) == (0, "bundled\n"),
              f"ssh through the DemoServer: exit {result.returncode}, stdout "
              f"{result.stdout!r}, stderr {result.stderr!r}")
        log = server.clients[0].callback_log
        check(log["auth_password"] == [("alice", "wheel")], f"auth_password {log['auth_password']}")
    print(json.dumps({"libssh_version": version, "libssh_mapped": mapped[0],
                      "package": pylibssh_server.__file__, "ssh_exec": "ok"}))


if __name__ == "__main__":
    main()
