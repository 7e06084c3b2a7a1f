# SPDX-License-Identifier: MIT
"""``SshMessage``: a borrowed ``ssh_message`` inside the message or global-request callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pylibssh_server._ffi import ffi, lib
from pylibssh_server._handle import Handle
from pylibssh_server.enums import PublicKeyState
from pylibssh_server.errors import SshKeyError, check_ptr, check_rc

if TYPE_CHECKING:
    from pylibssh_server.channel import SshChannel
    from pylibssh_server.keys import SshKey
    from pylibssh_server.session import Session

__all__ = ["SshMessage"]


def _opt_str(ptr: Any) -> str | None:
    return None if ptr == ffi.NULL else ffi.string(ptr).decode("utf-8", "surrogateescape")


class SshMessage(Handle):
    """A request from the client, valid only during the callback that received it.

    libssh frees the message when the callback returns, so this wrapper is borrowed and is
    invalidated then (any later use raises ``ValueError``).  Reply before returning.  Every C
    call takes the session lock, which the thread running the callback holds: another thread
    using the message waits until the callback has returned, then gets ``ValueError``.
    """

    _kind = "SshMessage"

    def __init__(self, ptr: Any, session: Session) -> None:
        super().__init__(ptr, owning=False, lock=session._lock)
        self.session = session
        self.replied: bool = False

    @property
    def type(self) -> int:
        """``ssh_message_type``: a :class:`RequestType` value."""
        with self._lock:
            return int(lib.ssh_message_type(self._c))

    @property
    def subtype(self) -> int:
        """``ssh_message_subtype``: auth method bit, channel type or request type."""
        with self._lock:
            return int(lib.ssh_message_subtype(self._c))

    # ---- auth ---------------------------------------------------------------------------
    @property
    def auth_user(self) -> str | None:
        """``ssh_message_auth_user`` (NULL on kbd-interactive responses)."""
        with self._lock:
            return _opt_str(lib.ssh_message_auth_user(self._c))

    @property
    def auth_password(self) -> str | None:
        """``ssh_message_auth_password``."""
        with self._lock:
            return _opt_str(lib.ssh_message_auth_password(self._c))

    @property
    def auth_pubkey(self) -> SshKey | None:
        """``ssh_message_auth_pubkey``: a copy the caller owns."""
        from pylibssh_server.keys import SshKey

        with self._lock:
            ptr = lib.ssh_message_auth_pubkey(self._c)
            if ptr == ffi.NULL:
                return None
            return SshKey(check_ptr(lib.ssh_key_dup(ptr), "ssh_key_dup", exc=SshKeyError))

    @property
    def auth_publickey_state(self) -> PublicKeyState:
        """``ssh_message_auth_publickey_state``."""
        with self._lock:
            return PublicKeyState(lib.ssh_message_auth_publickey_state(self._c))

    @property
    def auth_kbdint_is_response(self) -> bool:
        """``ssh_message_auth_kbdint_is_response``: True for an INFO_RESPONSE."""
        with self._lock:
            return bool(lib.ssh_message_auth_kbdint_is_response(self._c))

    def auth_reply_success(self, partial: bool = False) -> None:
        """``ssh_message_auth_reply_success``; marks the session authenticated."""
        with self._lock:
            check_rc(lib.ssh_message_auth_reply_success(self._c, 1 if partial else 0),
                     self.session, "ssh_message_auth_reply_success")
        self.replied = True
        if not partial:
            self.session.authenticated = True

    def auth_reply_pk_ok_simple(self) -> None:
        """``ssh_message_auth_reply_pk_ok_simple``: accept a public-key probe."""
        with self._lock:
            check_rc(lib.ssh_message_auth_reply_pk_ok_simple(self._c), self.session,
                     "ssh_message_auth_reply_pk_ok_simple")
        self.replied = True

    def auth_set_methods(self, methods: int) -> None:
        """``ssh_message_auth_set_methods``: methods listed in the next failure reply."""
        with self._lock:
            check_rc(lib.ssh_message_auth_set_methods(self._c, int(methods)), self.session,
                     "ssh_message_auth_set_methods")

    def auth_interactive_request(
        self, name: str, instruction: str, prompts: Sequence[str], echo: Sequence[bool]
    ) -> None:
        """Send a keyboard-interactive INFO_REQUEST
        (``ssh_message_auth_interactive_request``)."""
        if len(prompts) != len(echo):
            raise ValueError("prompts and echo must have the same length")
        c_prompts = [ffi.new("char[]", p.encode()) for p in prompts]
        prompt_array = ffi.new("const char *[]", c_prompts or [ffi.NULL])
        echo_array = ffi.new("char[]", bytes(1 if e else 0 for e in echo) or b"\0")
        with self._lock:
            check_rc(lib.ssh_message_auth_interactive_request(
                self._c, name.encode(), instruction.encode(), len(prompts), prompt_array,
                echo_array), self.session, "ssh_message_auth_interactive_request")
        self.replied = True

    # ---- service ------------------------------------------------------------------------
    @property
    def service(self) -> str | None:
        """``ssh_message_service_service``."""
        with self._lock:
            return _opt_str(lib.ssh_message_service_service(self._c))

    def service_reply_success(self) -> None:
        """``ssh_message_service_reply_success``."""
        with self._lock:
            check_rc(lib.ssh_message_service_reply_success(self._c), self.session,
                     "ssh_message_service_reply_success")
        self.replied = True

    # ---- channel open -------------------------------------------------------------------
    @property
    def destination(self) -> tuple[str | None, int]:
        """``ssh_message_channel_request_open_destination`` and ``_port``."""
        with self._lock:
            ptr = self._c
            return (_opt_str(lib.ssh_message_channel_request_open_destination(ptr)),
                    int(lib.ssh_message_channel_request_open_destination_port(ptr)))

    @property
    def originator(self) -> tuple[str | None, int]:
        """``ssh_message_channel_request_open_originator`` and ``_port``."""
        with self._lock:
            ptr = self._c
            return (_opt_str(lib.ssh_message_channel_request_open_originator(ptr)),
                    int(lib.ssh_message_channel_request_open_originator_port(ptr)))

    def channel_open_reply_accept(self) -> SshChannel:
        """Accept a channel-open (``ssh_message_channel_request_open_reply_accept``).

        Returns:
            The new channel, owned through the session.
        """
        from pylibssh_server.channel import SshChannel

        with self._lock:
            ptr = check_ptr(lib.ssh_message_channel_request_open_reply_accept(self._c),
                            "ssh_message_channel_request_open_reply_accept", self.session)
            self.replied = True
            return SshChannel(self.session, ptr)

    @property
    def x11_request(self) -> tuple[bool, str | None, int]:
        """An ``x11-req``'s ``(single_connection, auth protocol, screen number)``
        (``ssh_message_channel_request_x11_*``)."""
        single, screen = ffi.new("int *"), ffi.new("int *")
        protocol = ffi.new("const char **")
        with self._lock:
            lib.pylibssh_message_x11(self._c, single, protocol, screen)
            return bool(single[0]), _opt_str(protocol[0]), int(screen[0])

    def channel_request_reply_success(self) -> None:
        """``ssh_message_channel_request_reply_success``."""
        with self._lock:
            check_rc(lib.ssh_message_channel_request_reply_success(self._c), self.session,
                     "ssh_message_channel_request_reply_success")
        self.replied = True

    # ---- global requests ----------------------------------------------------------------
    @property
    def global_request(self) -> tuple[str | None, int]:
        """``ssh_message_global_request_address`` and ``_port``."""
        with self._lock:
            ptr = self._c
            return (_opt_str(lib.ssh_message_global_request_address(ptr)),
                    int(lib.ssh_message_global_request_port(ptr)))

    def global_request_reply_success(self, bound_port: int = 0) -> None:
        """``ssh_message_global_request_reply_success``."""
        with self._lock:
            check_rc(lib.ssh_message_global_request_reply_success(self._c, bound_port),
                     self.session, "ssh_message_global_request_reply_success")
        self.replied = True

    def reply_default(self) -> None:
        """Send libssh's default (negative) reply (``ssh_message_reply_default``)."""
        with self._lock:
            check_rc(lib.ssh_message_reply_default(self._c), self.session,
                     "ssh_message_reply_default")
        self.replied = True

    def _reply_default_if_unanswered(self) -> None:
        if not self.replied and self._ptr is not None:
            with self._lock:
                # Not via check_rc: called from a trampoline that cannot raise; a failed send
                # leaves the session in libssh's error state, where its driving loop sees it.
                lib.ssh_message_reply_default(self._c)
            self.replied = True

    def __repr__(self) -> str:
        with self._lock:
            if self._ptr is None:
                return "<SshMessage (expired)>"
            return f"<SshMessage type={self.type} subtype={self.subtype}>"
