# SPDX-License-Identifier: MIT
"""Misbehaving SSH clients, run as a child process so the test can stop (SIGSTOP) or kill them.

``rogue_client.py PORT MODE`` logs in with paramiko, prints ``ready`` and then:

- ``huge-window``: opens a session with a 4 GiB window, runs ``cat /dev/zero`` (the test then
  stops this process: a peer that grants everything and reads nothing);
- ``beyond-window``: runs ``sleep 600`` and sends up to 64 MiB ignoring the server's window.
"""

from __future__ import annotations

import sys
import time

import paramiko


def main(port: int, mode: str) -> None:
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.start_client(timeout=10)
    transport.auth_password("rogue", "foo")
    if mode == "huge-window":
        transport._sanitize_window_size = lambda w: w  # type: ignore[method-assign]
        chan = transport.open_session(window_size=2**32 - 1, max_packet_size=32768)
        chan.exec_command("cat /dev/zero")
        print("ready", flush=True)
    elif mode == "beyond-window":
        chan = transport.open_session()
        chan.exec_command("sleep 600")
        print("ready", flush=True)
        chunk = b"x" * 32768
        sent = 0
        deadline = time.monotonic() + 20
        while sent < (64 << 20) and time.monotonic() < deadline:
            chan.out_window_size = 1 << 40  # paramiko's view of our window: ignore it
            try:
                sent += chan.send(chunk)
            except (OSError, EOFError, paramiko.SSHException):
                break
        print(f"sent {sent}", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
    time.sleep(120)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
