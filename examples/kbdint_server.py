# SPDX-License-Identifier: MIT
"""A keyboard-interactive + exec server: kbd-interactive auth through ``on_auth_kbdint``.

    python examples/kbdint_server.py --port 2222
    ssh -p 2222 -o StrictHostKeyChecking=no user@127.0.0.1 hello world
    (answer "foo" to "Password: " and "bar" to "Token: ")

The hook sees the first request and then each INFO_RESPONSE: it answers the first with both
prompts (``AuthStatus.INFO``: the INFO_REQUEST is sent) and the response with SUCCESS or
DENIED.  The same hook works on every libssh: 0.12 calls it itself, older versions reach it
through the session's message path.  Only ``keyboard-interactive`` is advertised; any other
method falls to libssh's default reply, a failure.  Exec requests are answered as in
``echo_server.py``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from echo_server import drive, open_echo_channel, run

from pylibssh_server import AuthMethod, AuthStatus, ServerCallbacks, Session, SshMessage

PROMPTS = ("Password: ", "Token: ")


def serve_client(session: Session, answers: tuple[str, str]) -> None:
    """Drive one client: key exchange, two-prompt kbd-interactive auth, echoed execs."""
    # libssh returns no user name on the INFO_RESPONSE message: remember the request's.
    state: dict[str, Any] = {"user": None}

    def on_kbdint(sess: Session, msg: SshMessage, userdata: object) -> AuthStatus:
        if not msg.auth_kbdint_is_response:
            state["user"] = msg.auth_user
            msg.auth_interactive_request("pylibssh_server", "Answer both prompts.",
                                         PROMPTS, [False, False])
            return AuthStatus.INFO
        sess.user = state["user"]
        return AuthStatus.SUCCESS if tuple(sess.kbdint_answers()) == answers \
            else AuthStatus.DENIED

    drive(session, ServerCallbacks(on_auth_kbdint=on_kbdint,
                                   on_channel_open_request_session=open_echo_channel),
          AuthMethod.INTERACTIVE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="foo", help='answer to "Password: "')
    parser.add_argument("--token", default="bar", help='answer to "Token: "')
    args = parser.parse_args(argv)
    return run(lambda session: serve_client(session, (args.password, args.token)), args.port)


if __name__ == "__main__":
    sys.exit(main())
