# SPDX-License-Identifier: MIT
"""``python -m pylibssh_server.demo``: run a DemoServer until SIGINT/SIGTERM.

When ready it prints exactly one JSON line on stdout (``host``, ``port``, ``fingerprint``,
``host_key``, ``known_hosts``, ``pid``, ``auth_methods``, ``user``), then serves; nothing else
is ever written to stdout (``--verbose`` event lines go to stderr).  Exit codes: 0 after a
clean stop (also when a second SIGINT/SIGTERM arrives during it), 1 if the server cannot start
(the reason is on stderr), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from pylibssh_server import AuthMethod, LogLevel
from pylibssh_server.demo.auth import AuthChains, Kbdint
from pylibssh_server.demo.commands import CommandTable
from pylibssh_server.demo.faults import FAULT_NAMES, Faults
from pylibssh_server.demo.keyrules import ANY_USER
from pylibssh_server.demo.server import DemoServer
from pylibssh_server.errors import LibSSHError

T = TypeVar("T")

_METHOD_NAMES = (
    (AuthMethod.NONE, "none"),
    (AuthMethod.PASSWORD, "password"),
    (AuthMethod.PUBLICKEY, "publickey"),
    (AuthMethod.INTERACTIVE, "keyboard-interactive"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line a log reader can quote, not the whole usage block.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m pylibssh_server.demo",
        description="Run a DemoServer: a real SSH server for testing SSH clients.")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--password", help="password accepted for any user name")
    parser.add_argument("--auth", type=_auth_list,
                        help="comma list of none,password,publickey,keyboard-interactive "
                             "(default: from the other options)")
    parser.add_argument("--authorized-keys", metavar="FILE", help="OpenSSH authorized_keys file")
    parser.add_argument("--hostkey", metavar="FILE",
                        help="private host key to use instead of a fresh Ed25519 key")
    parser.add_argument("--sftp-root", metavar="DIR",
                        help="directory served as / over SFTP (default: the real file system)")
    parser.add_argument("--login-grace-time", type=float, default=60.0, metavar="SECONDS",
                        help="drop a client not logged in after this long (60)")
    parser.add_argument("--max-auth-attempts", type=_positive_int, default=20, metavar="N",
                        help="drop a client after N failed authentications (20)")
    parser.add_argument("--max-channels", type=_positive_int, default=1024, metavar="N",
                        help="channels one client may have open at once (1024)")
    parser.add_argument("--max-connections", type=_positive_int, metavar="N",
                        help="clients served at once (default: from the open-files limit, "
                             "at most 1000)")
    parser.add_argument("--max-unauthenticated", type=_positive_int, metavar="N",
                        help="clients not yet logged in at once, as sshd's MaxStartups "
                             "(default: half of --max-connections)")
    parser.add_argument("--max-fds-per-client", type=_positive_int, metavar="N",
                        help="file descriptors and SFTP handles one client's channels may "
                             "hold (default: an eighth of the open-files limit)")
    parser.add_argument("--ignore-key-options", action="store_true",
                        help="load authorized_keys lines as plain keys without any of their "
                             "options, with a warning, instead of refusing lines with "
                             "options that are not supported")
    parser.add_argument("--shell", default="/bin/sh", metavar="CMD",
                        help="what a shell request runs, on the pty when one was requested "
                             "(/bin/sh)")
    parser.add_argument("--commands", type=_command_table, metavar="FILE",
                        help='JSON {"commands": {"<command line>": "<stdout>" or {"stdout", '
                             '"stderr", "exit_status", "delay"}}, "prompt", "banner"}: '
                             "commands answered without the host")
    parser.add_argument("--no-host-commands", action="store_true",
                        help="never start a host process: unknown commands get 127, a shell "
                             "request the scripted shell")
    parser.add_argument("--remote-forward-any", action="store_true",
                        help="grant ssh -R for any bind address and port (default: loopback "
                             "addresses, ports 0 and 1024 up)")
    parser.add_argument("--max-remote-forwards", type=_positive_int, default=16, metavar="N",
                        help="ssh -R listeners one client may hold (16)")
    parser.add_argument("--no-agent-forwarding", action="store_true",
                        help="refuse ssh -A (no SSH_AUTH_SOCK for commands)")
    parser.add_argument("--forward-loopback-only", action="store_true",
                        help="refuse direct-tcpip forwards to anything but loopback")
    parser.add_argument("--model", choices=["reactor", "threads"],
                        help="reactor: many clients per thread (default, unless "
                             "PYLIBSSH_DEMO_MODEL says otherwise); threads: a thread per client")
    parser.add_argument("--reactor-threads", type=_positive_int, metavar="N",
                        help="threads of the reactor (default: one per CPU core)")
    auth = parser.add_argument_group("authentication, and looking like another server")
    auth.add_argument("--user", action="append", type=_user_password, default=[],
                      metavar="USER:PASSWORD",
                      help="a per-user password (repeatable); with it the user name matters")
    auth.add_argument("--kbdint", type=_kbdint_file, metavar="FILE",
                      help='JSON {"name", "instruction", "rounds": [[{"prompt", "echo", '
                           '"answer"}, ...], ...]}: keyboard-interactive rounds')
    auth.add_argument("--auth-chain", action="append", type=_auth_chain, default=[],
                      metavar="M1,M2[,...]",
                      help="methods to pass in order, as OpenSSH's AuthenticationMethods "
                           "(repeatable: any one chain)")
    auth.add_argument("--banner", metavar="TEXT",
                      help="pre-authentication banner (SSH_MSG_USERAUTH_BANNER)")
    auth.add_argument("--server-version", metavar="TEXT",
                      help="software version in the identification line (SSH-2.0-TEXT)")
    auth.add_argument("--hostkey-type", choices=["ed25519", "ecdsa", "rsa"],
                      help="type of the generated host key (ed25519)")
    auth.add_argument("--ciphers", metavar="LIST", help="comma list of ciphers")
    auth.add_argument("--kex", metavar="LIST", help="comma list of key exchange methods")
    auth.add_argument("--macs", metavar="LIST", help="comma list of MACs")
    auth.add_argument("--hostkey-algorithms", metavar="LIST",
                      help="comma list of host key algorithms")
    parser.add_argument("--fault", action="append", type=_fault, default=[],
                        metavar="NAME[=VALUE]",
                        help=f"a fault on purpose (repeatable): {', '.join(FAULT_NAMES)}")
    # Per-user keys and OpenSSH certificates (see keyrules.py, certs.py).
    keys = parser.add_argument_group("per-user keys and certificates")
    keys.add_argument("--authorized-keys-for", type=_user_file, action="append", default=[],
                      metavar="USER:FILE",
                      help="authorized_keys file for USER only (repeatable); with "
                           "--authorized-keys, that file is for every user")
    keys.add_argument("--trusted-user-ca-keys", metavar="FILE",
                      help="CA public keys whose user certificates log in when a principal "
                           "is the user name (as sshd's TrustedUserCAKeys)")
    keys.add_argument("--hostkey-cert", metavar="FILE",
                      help="OpenSSH host certificate for the host key (refused: libssh "
                           "cannot present one)")
    parser.add_argument("--verbose", action="store_true", help="print every event")
    parser.add_argument("--libssh-log", choices=[lv.name.lower() for lv in LogLevel],
                        help="libssh log level (to stderr)")
    parser.add_argument("--example", action="store_true",
                        help="also print an example ssh command on stderr")
    return parser


def _converter(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` calling ``parse``: its ValueError or OSError (a malformed value,
    a file that cannot be read) becomes argparse's one-line error and exit code 2."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _checked(check: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse ``type`` keeping the text once ``check(text)`` accepted it."""
    def run(text: str) -> str:
        check(text)
        return text
    return _converter(run)


_auth_list = _checked(AuthMethod.parse)
_auth_chain = _checked(lambda text: AuthChains([text]))
_fault = _checked(lambda text: Faults.parse([text]))
_command_table = _converter(CommandTable.from_file)
_kbdint_file = _converter(Kbdint.from_file)


def _user_and(what: str, allow_empty: bool) -> Callable[[str], tuple[str, str]]:
    """An argparse ``type`` for ``USER:<what>`` (the user name never empty)."""
    def split(text: str) -> tuple[str, str]:
        user, sep, rest = text.partition(":")
        if not sep or not user or not (rest or allow_empty):
            raise ValueError(f"expected USER:{what}, not {text!r}")
        return user, rest
    return _converter(split)


_user_password = _user_and("PASSWORD", allow_empty=True)
_user_file = _user_and("FILE", allow_empty=False)


def _merge_key_files(args: argparse.Namespace) -> None:
    """--authorized-keys-for turns ``args.authorized_keys`` into the per-user mapping."""
    if not args.authorized_keys_for:
        return
    users: dict[str, list[Path]] = {}
    for user, path in args.authorized_keys_for:
        users.setdefault(user, []).append(Path(path))
    if args.authorized_keys:
        users.setdefault(ANY_USER, []).append(Path(args.authorized_keys))
    args.authorized_keys = users


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults = Faults.parse(args.fault)
    except ValueError as exc:
        parser.error(f"argument --fault: {exc}")
    users = dict(args.user)
    if len(users) != len(args.user):
        parser.error("argument --user: a user is given twice")
    if args.hostkey_type and args.hostkey:
        parser.error("argument --hostkey-type: not with --hostkey")
    _merge_key_files(args)
    if args.libssh_log:
        import logging

        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    try:
        server = DemoServer(
            args.port, host=args.host, password=args.password, auth_methods=args.auth,
            users=users, kbdint=args.kbdint, auth_chains=args.auth_chain or None,
            banner=args.banner, server_version=args.server_version,
            hostkey_type=args.hostkey_type, faults=faults, ciphers=args.ciphers, kex=args.kex,
            macs=args.macs, hostkey_algorithms=args.hostkey_algorithms,
            authorized_keys=args.authorized_keys or (), host_key=args.hostkey,
            sftp_root=args.sftp_root, verbose=args.verbose,
            login_grace_time=args.login_grace_time,
            max_auth_attempts=args.max_auth_attempts, max_channels=args.max_channels,
            max_connections=args.max_connections,
            max_unauthenticated=args.max_unauthenticated,
            max_fds_per_client=args.max_fds_per_client,
            ignore_key_options=args.ignore_key_options, shell=args.shell,
            commands=args.commands, host_commands=not args.no_host_commands,
            remote_forward_allow=(lambda a, p: True) if args.remote_forward_any else None,
            max_remote_forwards=args.max_remote_forwards,
            agent_forwarding=not args.no_agent_forwarding,
            forward_allow=DemoServer.loopback_only if args.forward_loopback_only else None,
            # Serves indefinitely: nothing per past client, and no event log nobody can read
            # (--verbose prints the events).
            keep_clients=False, event_log=False,
            allow_auth_none=bool(args.auth and "none" in args.auth.split(",")),
            log_verbosity=LogLevel[args.libssh_log.upper()] if args.libssh_log else None,
            trusted_user_ca_keys=args.trusted_user_ca_keys, hostkey_cert=args.hostkey_cert,
            model=args.model, reactor_threads=args.reactor_threads,
        )
    except (ValueError, TypeError, OSError, LibSSHError) as exc:
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
            "host_key": server.host_key.authorized_key_line(),
            "known_hosts": server.known_hosts_line(),
            "pid": os.getpid(),
            "auth_methods": [name for flag, name in _METHOD_NAMES
                             if server.auth_methods & flag],
            "user": getpass.getuser(),
        }
        print(json.dumps(ready), flush=True)
        if args.example:
            print(example_text(server), file=sys.stderr, flush=True)
        # No timeout: a waiting main thread still runs the signal handlers (lock waits are
        # interruptible), and an idle server then never wakes up.
        stop.wait()
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
    for user in server.users:
        lines.append(f"User {user} has a password of its own")
    lines += [
        "Try, in another terminal:",
        f"  ssh {opts} -p {server.port} demo@{server.host} 'echo hello from $(hostname)'",
        f"  sftp {opts} -P {server.port} demo@{server.host}",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
