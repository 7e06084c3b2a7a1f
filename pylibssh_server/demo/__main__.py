# SPDX-License-Identifier: MIT
"""``python -m pylibssh_server.demo``: run a DemoServer until SIGINT/SIGTERM.

When ready it prints exactly one JSON line on stdout (``host``, ``port``, ``fingerprint``,
``pid``, ``auth_methods``, ``user``), then serves.  Exit codes: 0 after a clean stop,
1 if the server cannot start (the reason is on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading

from pylibssh_server import AuthMethod, LogLevel
from pylibssh_server.demo.server import DemoServer
from pylibssh_server.errors import LibSSHError

_METHOD_NAMES = (
    (AuthMethod.NONE, "none"),
    (AuthMethod.PASSWORD, "password"),
    (AuthMethod.PUBLICKEY, "publickey"),
    (AuthMethod.INTERACTIVE, "keyboard-interactive"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pylibssh_server.demo",
        description="Run a DemoServer: a real SSH server for testing SSH clients.")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--password", help="password accepted for any user name")
    parser.add_argument("--auth", help="comma list of none,password,publickey,"
                                       "keyboard-interactive (default: from the other options)")
    parser.add_argument("--authorized-keys", metavar="FILE", help="OpenSSH authorized_keys file")
    parser.add_argument("--hostkey", metavar="FILE",
                        help="private host key to use instead of a fresh Ed25519 key")
    parser.add_argument("--sftp-root", metavar="DIR",
                        help="directory served as / over SFTP (default: the real file system)")
    parser.add_argument("--login-grace-time", type=float, default=60.0, metavar="SECONDS",
                        help="drop a client not logged in after this long (60)")
    parser.add_argument("--max-auth-attempts", type=int, default=20, metavar="N",
                        help="drop a client after N failed authentications (20)")
    parser.add_argument("--max-channels", type=int, default=1024, metavar="N",
                        help="channels one client may have open at once (1024)")
    parser.add_argument("--forward-loopback-only", action="store_true",
                        help="refuse direct-tcpip forwards to anything but loopback")
    parser.add_argument("--verbose", action="store_true", help="print every event")
    parser.add_argument("--libssh-log", choices=[lv.name.lower() for lv in LogLevel],
                        help="libssh log level (to stderr)")
    parser.add_argument("--example", action="store_true",
                        help="also print an example ssh command on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.libssh_log:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        server = DemoServer(
            args.port, host=args.host, password=args.password, auth_methods=args.auth,
            authorized_keys=args.authorized_keys or (), host_key=args.hostkey,
            sftp_root=args.sftp_root, verbose=args.verbose,
            login_grace_time=args.login_grace_time,
            max_auth_attempts=args.max_auth_attempts, max_channels=args.max_channels,
            forward_allow=DemoServer.loopback_only if args.forward_loopback_only else None,
            keep_clients=False,  # serves indefinitely; its log is printed (--verbose), not kept
            allow_auth_none=bool(args.auth and "none" in args.auth.split(",")),
            log_verbosity=LogLevel[args.libssh_log.upper()] if args.libssh_log else None,
        )
    except (ValueError, OSError, LibSSHError) as exc:
        print(f"demo server: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (ValueError, OSError, LibSSHError) as exc:
        print(f"demo server: {exc}", file=sys.stderr)
        server.close()
        return 1
    try:
        ready = {
            "host": server.host,
            "port": server.port,
            "fingerprint": server.fingerprint,
            "pid": os.getpid(),
            "auth_methods": [name for flag, name in _METHOD_NAMES
                             if server.auth_methods & flag],
            "user": getpass.getuser(),
        }
        print(json.dumps(ready), flush=True)
        if args.example:
            print(example_text(server), file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.close()
    return 0


def example_text(server: DemoServer) -> str:
    """Human instructions for ``make demo``: a command to paste into another terminal."""
    opts = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    lines = [f"DemoServer listening on {server.host}:{server.port} "
             f"(host key {server.fingerprint})"]
    if server.password is not None:
        lines.append(f"Password for any user: {server.password}")
    lines += [
        "Try, in another terminal:",
        f"  ssh {opts} -p {server.port} demo@{server.host} 'echo hello from $(hostname)'",
        f"  sftp {opts} -P {server.port} demo@{server.host}",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
