# SPDX-License-Identifier: MIT
"""A keyboard-interactive + exec server: kbd-interactive auth through the message API.

    python examples/kbdint_server.py --port 2222
    ssh -p 2222 -o StrictHostKeyChecking=no user@127.0.0.1 hello world
    (answer "foo" to "Password: " and "bar" to "Token: ")

libssh < 0.12 has no server callback for keyboard-interactive auth, so it arrives in the
message callback: the first request is answered with both prompts (INFO_REQUEST), the
client's INFO_RESPONSE comes back as a second message.  Only ``keyboard-interactive`` is
advertised; any other method falls to libssh's default reply, a failure.  Exec requests are
answered as in ``echo_server.py``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from echo_server import drive, open_echo_channel, run

from pylibssh_server import AuthMethod, RequestType, ServerCallbacks, Session, SshMessage

PROMPTS = ("Password: ", "Token: ")


def serve_client(session: Session, answers: tuple[str, str]) -> None:
    """Drive one client: key exchange, two-prompt kbd-interactive auth, echoed execs."""
    # libssh returns no user name on the INFO_RESPONSE message: remember the request's.
    state: dict[str, Any] = {"user": None}

    def on_message(sess: Session, msg: SshMessage, userdata: object) -> bool:
        if msg.type != RequestType.AUTH or msg.subtype != AuthMethod.INTERACTIVE:
            return False  # default reply: failure, listing the advertised methods
        if not msg.auth_kbdint_is_response:
            state["user"] = msg.auth_user
            msg.auth_interactive_request("pylibssh_server", "Answer both prompts.",
                                         PROMPTS, [False, False])
            return True
        if tuple(sess.kbdint_answers()) != answers:
            return False
        sess.user = state["user"]
        msg.auth_reply_success()
        return True

    session.set_message_callback(on_message)
    drive(session, ServerCallbacks(on_channel_open_request_session=open_echo_channel),
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
