# SPDX-License-Identifier: MIT
"""``AuthPolicy``: one connection's login, from its first request to its success.

It owns what a login remembers (the user, the steps of an auth chain passed, the
keyboard-interactive round, the failures and requests counted, the banner sent, the key's
grant) and answers every authentication hook of the session with the rules of
:mod:`~pylibssh_server.demo.auth` (passwords, kbdint rounds, chains),
:mod:`~pylibssh_server.demo.keyrules` (keys and certificates) and the auth faults.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pylibssh_server import (
    AuthMethod,
    AuthStatus,
    Flag,
    PublicKeyState,
    Session,
    SshKey,
    SshMessage,
)
from pylibssh_server.demo.auth import METHOD_FLAGS, password_ok
from pylibssh_server.demo.config import DemoConfig
from pylibssh_server.demo.keyrules import UNRESTRICTED, KeyGrant

__all__ = ["AUTH_REQUESTS_PER_ATTEMPT", "AuthPolicy", "Logger"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

#: Authentication requests of any kind (PK_OK probes included) one connection may make: every
#: failure counts toward max_auth_attempts, and this bounds the requests that do not fail.
AUTH_REQUESTS_PER_ATTEMPT = 10


class Logger(Protocol):
    """What records the events of a login (the client's event log)."""

    def log(self, name: str, data: Any) -> None:
        """Record one event."""


class AuthPolicy:
    """The login of one connection (its session's auth hooks are these methods).

    Args:
        config: the server's settings.
        session: the connection (for the banner, the methods advertised, the kbdint answers
            and the disconnects the policy decides).
        log: the client's event log.
        stop: set when the server stops (ends a ``delay-auth`` wait early).
        peer_host: the client's address (``from=`` options of authorized keys).

    Attributes:
        user: the user name of the last auth attempt.
        authenticated: whether the client logged in.
        ending: a successful login is being disconnected (``disconnect-after-auth``).
        failed: authentication attempts that failed.
        key_grant: what the key the client logged in with allows (its options).
    """

    user: str | None
    authenticated: bool
    ending: bool
    failed: int
    key_grant: KeyGrant

    __slots__ = ("_banner_sent", "_chain_passed", "_chain_user", "_kbdint_round",
                 "_kbdint_user", "_requests", "authenticated", "config", "ending", "failed",
                 "key_grant", "logger", "peer_host", "session", "stop", "user")

    def __init__(self, config: DemoConfig, session: Session, logger: Logger,
                 stop: Flag, peer_host: str) -> None:
        self.config: DemoConfig = config
        self.session: Session = session
        # The client itself, not its bound log method: one object fewer for each client.
        self.logger: Logger = logger
        self.stop: Flag = stop
        self.peer_host: str = peer_host
        self.user = None
        self.authenticated = False
        self.ending = False
        self.failed = 0
        self.key_grant = UNRESTRICTED
        self._requests = 0
        self._banner_sent = False
        #: Methods passed so far of an auth chain, and the user who passed them.
        self._chain_passed: tuple[str, ...] = ()
        self._chain_user: str | None = None
        #: keyboard-interactive: libssh gives no user name on the response message.
        self._kbdint_user: str | None = None
        self._kbdint_round = 0

    def log(self, name: str, data: Any) -> None:
        """Record one event in the client's log."""
        self.logger.log(name, data)

    # ---- the decisions --------------------------------------------------------------------

    def allowed_methods(self, user: str | None = None) -> AuthMethod:
        """The methods a request of ``user`` may use now (what a failure reply lists): all
        of ``auth_methods``, or with auth chains those next in a chain (a user other than
        the one who passed the first steps starts over)."""
        chains = self.config.auth_chains
        if chains is None:
            return AuthMethod(self.config.auth_methods)
        passed = self._chain_passed if user is None or user == self._chain_user else ()
        return chains.next_methods(passed)

    def method_allowed(self, method: str, user: str) -> bool:
        """Whether ``user`` may use ``method`` (a protocol name) now."""
        return bool(self.allowed_methods(user) & METHOD_FLAGS[method])

    def serving(self) -> bool:
        """Whether the client may open channels and forwards: logged in, and not being
        disconnected (``disconnect-after-auth``: requests already sent are refused)."""
        return self.authenticated and not self.ending

    def out_of_attempts(self) -> bool:
        """True (and the client is disconnected) once max_auth_attempts failed, or the
        client made more requests than that allows: requests already in the same poll batch
        are refused unheard."""
        limit = self.config.max_auth_attempts
        if self.failed < limit and self._requests < limit * AUTH_REQUESTS_PER_ATTEMPT:
            return False
        if self.authenticated:
            return False
        self.session.disconnect()  # deferred until the poll returns
        return True

    def refuse_unserved(self, msg: SshMessage) -> bool:
        """A method without a hook (hostbased, gssapi): refused, listing ours."""
        self.failed += 1
        msg.auth_set_methods(int(self.allowed_methods()))
        return False

    def result(self, ok: bool, user: str, method: str) -> AuthStatus:
        """The answer to an authentication request whose check gave ``ok``: with the
        ``fail-auth`` fault, chains (partial success) and ``disconnect-after-auth``."""
        config = self.config
        self.user = user
        counter = config.fault_counters.get("fail-auth")
        if ok and counter is not None and counter.take():
            self.log("fault", ("fail-auth", config.faults["fail-auth"]))
            ok = False
        if not ok:
            self.failed += 1
            self.out_of_attempts()
            return AuthStatus.DENIED
        chains = config.auth_chains
        if chains is not None:
            if user != self._chain_user:
                self._chain_passed, self._chain_user = (), user
            self._chain_passed += (method,)
            if not chains.complete(self._chain_passed):
                self.log("auth_partial", method)
                self.session.set_auth_methods(chains.next_methods(self._chain_passed))
                return AuthStatus.PARTIAL
        self.authenticated = True
        if "disconnect-after-auth" in config.faults:
            self.log("fault", ("disconnect-after-auth", None))
            self.ending = True
            self.session.disconnect()  # deferred: the success reply goes out first
        return AuthStatus.SUCCESS

    def _count_request(self) -> bool:
        """Count one authentication request; True if it may be heard."""
        self._requests += 1
        return not self.out_of_attempts()

    def _before_answer(self) -> None:
        """What every heard authentication request gets before its answer: the banner (once)
        and the ``delay-auth`` fault."""
        banner = self.config.banner
        if banner is not None and not self._banner_sent:
            self._banner_sent = True
            self.session.send_issue_banner(banner)
        delay = self.config.faults.values.get("delay-auth")
        if delay:
            self.log("fault", ("delay-auth", delay))
            self.stop.wait(delay)

    # ---- the session's auth hooks ---------------------------------------------------------
    def on_auth_none(self, session: Session, user: str, userdata: Any) -> AuthStatus:
        """``ServerCallbacks.on_auth_none``."""
        self.log("auth_none", True)
        self.user = user
        if not self._count_request():
            return AuthStatus.DENIED
        self._before_answer()
        if self.config.allow_auth_none and self.config.auth_chains is None:
            return self.result(True, user, "none")
        return AuthStatus.DENIED  # the usual first probe: not counted as a failure

    def on_auth_password(self, session: Session, user: str, password: str,
                         userdata: Any) -> AuthStatus:
        """``ServerCallbacks.on_auth_password``."""
        if not self._count_request():
            return AuthStatus.DENIED
        self.log("auth_password", (user, password))
        self._before_answer()
        ok = self.method_allowed("password", user) and password_ok(
            self.config.users, self.config.password, user, password)
        return self.result(ok, user, "password")

    def on_auth_pubkey(self, session: Session, user: str, key: SshKey, state: Any,
                       userdata: Any) -> AuthStatus:
        """``ServerCallbacks.on_auth_pubkey``: probes (PK_OK) and signed requests."""
        if not self._count_request():
            return AuthStatus.DENIED
        self.log("auth_pubkey", (user, key.fingerprint(), int(state)))
        self._before_answer()
        authorized = self.method_allowed("publickey", user) and \
            self._key_authorized(user, key, state)
        if state == PublicKeyState.NONE and authorized:
            self.user = user
            return AuthStatus.SUCCESS  # PK_OK: not a failure, as in sshd
        # As in sshd, a probe with a key that is not authorized is a failed attempt.
        return self.result(authorized and state == PublicKeyState.VALID, user, "publickey")

    # keyrules: authorized_keys options and certificates decide, and limit the session.
    def _key_authorized(self, user: str, key: SshKey, state: Any) -> bool:
        """Whether ``key`` may log in ``user`` (options and certificates checked); a signed
        request that passes sets :attr:`key_grant`."""
        grant, reason = self.config.key_rules.authorize(user, key, self.peer_host)
        if grant is None:
            if reason is not None:
                self.log("auth_key_refused", reason)
            return False
        if state == PublicKeyState.VALID:
            self.key_grant = grant
            if grant.restricted:
                self.log("auth_key_accepted", grant.origin)
        return True

    def kbdint_step(self, msg: SshMessage) -> AuthStatus:
        """Advance keyboard-interactive by one message: ``INFO`` (prompts sent),
        ``SUCCESS``, ``PARTIAL`` (a chain step) or ``DENIED``."""
        response = msg.auth_kbdint_is_response
        user = self._kbdint_user if response else (msg.auth_user or "")
        if user is None or not self.method_allowed("keyboard-interactive", user) or \
                not self._count_request():
            return AuthStatus.DENIED
        kbdint = self.config.kbdint
        if not response:
            self._kbdint_user = self.user = user
            self.log("auth_kbdint", user)
            self._before_answer()
            self._kbdint_prompt(msg, 0)
            return AuthStatus.INFO
        self._before_answer()
        number = self._kbdint_round
        if not kbdint.matches(number, self.session.kbdint_answers()):
            self.log("auth_kbdint", "denied")
            self._kbdint_user = None
            self.result(False, user, "keyboard-interactive")
            return AuthStatus.DENIED
        if number + 1 < len(kbdint.rounds):
            self._kbdint_prompt(msg, number + 1)
            return AuthStatus.INFO
        self.log("auth_kbdint", kbdint.accepted_text())
        self._kbdint_user = None
        status = self.result(True, user, "keyboard-interactive")
        return status if status in (AuthStatus.SUCCESS, AuthStatus.PARTIAL) else \
            AuthStatus.DENIED

    def _kbdint_prompt(self, msg: SshMessage, number: int) -> None:
        kbdint = self.config.kbdint
        self._kbdint_round = number
        prompts = kbdint.rounds[number]
        msg.auth_interactive_request(kbdint.name, kbdint.instruction,
                                     [p.prompt for p in prompts], [p.echo for p in prompts])
