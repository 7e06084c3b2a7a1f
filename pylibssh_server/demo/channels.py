# SPDX-License-Identifier: MIT
"""One object per channel of a DemoServer client, owning that channel's hooks.

:class:`SessionChannel` is a "session" channel: its request hooks (env, pty-req, exec, shell,
subsystem, window-change, signal, auth-agent-req) decide what runs, as
``asyncssh.SSHServerSession`` does, and it owns the :class:`~.handlers.Handler` that runs
then, to which its data hooks (data, EOF, CLOSE) go.  :class:`ForwardChannel` is a forward
(direct-tcpip, forwarded-tcpip, agent): its handler exists from the start.  Both reach their
client only through :class:`ChannelHost`, which the client implements.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any, Protocol

from pylibssh_server import ChannelCallbacks, Session, SessionEvent, SshChannel
from pylibssh_server.demo.authpolicy import AuthPolicy
from pylibssh_server.demo.commands import Reply
from pylibssh_server.demo.config import DemoConfig
from pylibssh_server.demo.handlers import (
    CannedHandler,
    CommandFailedHandler,
    ExecHandler,
    ForwardHandler,
    FunctionHandler,
    Handler,
    ScriptedShellHandler,
    SftpHandler,
    Terminal,
)
from pylibssh_server.demo.keyrules import INTERNAL_SFTP

__all__ = ["EXEC_FDS_STARTING", "MAX_ENV_PER_CHANNEL", "MAX_UNREAD_INPUT", "ChannelHost",
           "ForwardChannel", "SessionChannel"]

logger: logging.Logger = logging.getLogger("pylibssh_server.demo")

MAX_ENV_PER_CHANNEL = 1000
#: Client bytes libssh may hold for one channel.  Our window (1.25 MiB on libssh 0.10, 2 MiB
#: later) bounds what a well-behaved client can have in flight; more means it ignores it.
MAX_UNREAD_INPUT = 8 << 20
#: File descriptors a command needs while it starts (three pipe pairs, the exec-error pipe of
#: subprocess, the pidfd; it holds 4 once running).
EXEC_FDS_STARTING = 10


class ChannelHost(Protocol):
    """What a channel object uses of its client."""

    id: int
    config: DemoConfig
    auth: AuthPolicy
    #: True while the server stops: client data libssh still holds is not accepted.
    draining: bool

    def log(self, name: str, data: Any) -> None:
        """Record one event of the client."""
        ...

    def require_event(self) -> SessionEvent:
        """The client's event (channels exist only once it does)."""
        ...

    def fds_available(self, needed: int, what: str) -> bool:
        """Whether ``needed`` more fds fit in the client's budget (a refusal is logged)."""
        ...

    def native(self) -> bool | None:
        """The data path of a new handler (see ``native_data_path``)."""
        ...

    def add_handler(self, handler: Handler, session_channel: bool) -> None:
        """Drive ``handler`` under the client's faults (``session_channel``: it ends with
        the exit sequence, which ``no-exit-status`` changes)."""
        ...

    def beyond_window(self, unread: str) -> None:
        """The client ignores its channel window: disconnect it."""
        ...

    def agent_socket(self) -> str | None:
        """The path of the client's forwarded agent socket (made on first use), or None."""
        ...


class _DataHooks:
    """The data hooks every channel object has: the client's limits, then its handler."""

    host: ChannelHost
    handler: Handler | None

    def data_room(self, available: int) -> int:
        """``ChannelCallbacks.data_room``."""
        host = self.host
        if host.draining:
            return 0  # stopping: what libssh still holds was never accepted
        if available > MAX_UNREAD_INPUT:
            host.beyond_window(f"{available} bytes")
            return 0
        if self.handler is None:
            return available  # no command yet: nobody reads stdin, discard
        return self.handler.data_room(available)

    def on_data(self, session: Session, channel: SshChannel, data: bytes, is_stderr: bool,
                userdata: Any) -> int:
        """Client data: to the handler (dropped before a command runs: nobody reads it)."""
        if self.handler is None:
            return len(data)
        return self.handler.on_data(data)


class SessionChannel(_DataHooks):
    """A "session" channel: its requests, its environment and terminal, and its handler.

    Attributes:
        channel: the channel.
        env: variables set by ``env`` requests (the command's environment on top).
        terminal: the accepted ``pty-req``, if any.
        handler: what runs on the channel, once an exec, shell or subsystem was accepted.
        eof: the client sent EOF.
    """

    handler: Handler | None
    terminal: Terminal | None

    def __init__(self, host: ChannelHost, channel: SshChannel) -> None:
        self.host = host
        self.channel = channel
        self.env: dict[str, str] = {}
        self.handler = None
        self.eof: bool = False
        self.terminal = None

    def callbacks(self) -> ChannelCallbacks:
        """The channel's hooks: this object's ``on_*`` methods."""
        return ChannelCallbacks(
            data_room=self.data_room, on_data=self.on_data, on_eof=self.on_eof,
            on_close=self.on_close, on_env_request=self.on_env_request,
            on_exec_request=self.on_exec_request, on_pty_request=self.on_pty_request,
            on_pty_window_change=self.on_pty_window_change,
            on_shell_request=self.on_shell_request, on_signal=self.on_signal,
            # With this hook set libssh answers success (to a client that asks for a reply);
            # with agent_forwarding=False the command just gets no SSH_AUTH_SOCK.
            on_auth_agent_req=self.on_auth_agent_req,
            on_subsystem_request=self.on_subsystem_request)

    @property
    def is_open(self) -> bool:
        """Whether the channel counts toward ``max_channels``."""
        return not self.channel.closed

    # ---- data ---------------------------------------------------------------------------
    def on_eof(self, session: Session, channel: SshChannel, userdata: Any) -> None:
        """The client's EOF."""
        self.host.log("channel_eof", True)
        self.eof = True
        if self.handler is not None:
            self.handler.on_eof()

    def on_close(self, session: Session, channel: SshChannel, userdata: Any) -> None:
        """The client's CLOSE: the handler stops now, the channel is closed."""
        self.host.log("channel_close", True)
        if self.handler is not None:
            self.handler.on_close()
        self.channel.close()

    # ---- requests -----------------------------------------------------------------------
    def on_env_request(self, session: Session, channel: SshChannel, name: str, value: str,
                       userdata: Any) -> bool:
        """``env``: recorded for the command (at most ``MAX_ENV_PER_CHANNEL``)."""
        self.host.log("channel_env_request", (name, value))
        if len(self.env) >= MAX_ENV_PER_CHANNEL:
            return False
        self.env[name] = value
        return True

    def on_signal(self, session: Session, channel: SshChannel, name: str,
                  userdata: Any) -> None:
        """``signal``: to the command's process group."""
        self.host.log("channel_signal", name)
        if self.handler is None or not self.handler.signal(name):
            logger.info("client %s: signal %r delivered to no process", self.host.id, name)

    def on_pty_request(self, session: Session, channel: SshChannel, term: str, cols: int,
                       rows: int, pxwidth: int, pxheight: int, userdata: Any) -> bool:
        """``pty-req``: the command to come runs on a pty of this size."""
        self.host.log("channel_pty_request", (term, cols, rows, pxwidth, pxheight))
        if self.handler is not None or len(term) > 256:
            return False  # too late (the command runs), or no terminal type a pty could have
        if not self.host.auth.key_grant.allows("pty", "pty-req", self.host.log):
            return False
        self.terminal = Terminal(term, cols, rows, pxwidth, pxheight)
        return True

    def on_pty_window_change(self, session: Session, channel: SshChannel, cols: int,
                             rows: int, pxwidth: int, pxheight: int, userdata: Any) -> None:
        """``window-change``: resize the pty (nothing without one, as in sshd)."""
        self.host.log("channel_pty_window_change", (cols, rows, pxwidth, pxheight))
        if self.terminal is None:
            return
        self.terminal = Terminal(self.terminal.term, cols, rows, pxwidth, pxheight)
        if self.handler is not None:
            self.handler.resize(self.terminal)

    def on_auth_agent_req(self, session: Session, channel: SshChannel, userdata: Any) -> None:
        """``auth-agent-req@openssh.com``: the command gets ``SSH_AUTH_SOCK``."""
        host = self.host
        host.log("channel_auth_agent_request", True)
        if not host.config.agent_forwarding or \
                not host.auth.key_grant.allows("agent_forwarding", "auth-agent-req", host.log):
            return  # no socket, so no SSH_AUTH_SOCK: refused in effect
        path = host.agent_socket()
        if path is not None:
            self.env["SSH_AUTH_SOCK"] = path

    def on_shell_request(self, session: Session, channel: SshChannel, userdata: Any) -> bool:
        """``shell``: the shell command, or the scripted shell without host commands."""
        host = self.host
        host.log("channel_shell_request", True)
        if self.handler is not None:
            return False
        forced = host.auth.key_grant.exec_command(self.env, None, host.log)  # keyrules
        if forced is not None:
            return self._exec(forced)
        if not host.config.host_commands:
            self._run(ScriptedShellHandler(self.channel, host.require_event(),
                                           host.config.commands, self.terminal))
            return True
        # The shell replaces the `sh -c` that starts it: signals and exit status are its own.
        return self._start_command(f"exec {host.config.shell}")

    def on_exec_request(self, session: Session, channel: SshChannel, command: str,
                        userdata: Any) -> bool:
        """``exec``: from the command table, or on the host."""
        host = self.host
        host.log("channel_exec_request", f"'{command}'")
        if self.handler is not None:
            return False
        return self._exec(host.auth.key_grant.exec_command(self.env, command, host.log) or "")

    def on_subsystem_request(self, session: Session, channel: SshChannel, name: str,
                             userdata: Any) -> bool:
        """``subsystem``: "sftp" (a forced command replaces any subsystem, as in sshd)."""
        host = self.host
        host.log("channel_subsystem_request", name)
        if self.handler is not None:
            return False
        grant = host.auth.key_grant
        if grant.command is not None:
            return self._exec(grant.exec_command(
                self.env, INTERNAL_SFTP if name == "sftp" else name, host.log) or "")
        if name != "sftp":
            return False
        from pylibssh_server.demo.sftp import RootedFileSystem, SftpServer  # on first use

        engine = SftpServer(RootedFileSystem(host.config.sftp_root),
                            handle_room=lambda: host.fds_available(1, "SFTP open"))
        self._run(SftpHandler(self.channel, host.require_event(), engine,
                              lambda exc: logger.warning("client %s: sftp: %s", host.id, exc)))
        return True

    # ---- what runs ----------------------------------------------------------------------
    def _run(self, handler: Handler) -> None:
        self.handler = handler
        self.host.add_handler(handler, session_channel=True)

    def _exec(self, command: str) -> bool:
        """Run ``command``: from the command table, or on the host."""
        host = self.host
        config = host.config
        reply = config.commands.lookup(command)
        handler: Handler
        if isinstance(reply, Reply):
            handler = CannedHandler(self.channel, host.require_event(), reply, self.terminal)
        elif reply is not None:
            handler = FunctionHandler(
                self.channel, host.require_event(), reply, command, self._command_env(),
                self.terminal,
                lambda exc: logger.error("client %s: command %r raised", host.id, command,
                                         exc_info=exc), native=host.native())
        elif not config.host_commands:
            handler = CommandFailedHandler(self.channel, host.require_event(),
                                           f"demo: command not found: {command}\n", 127)
        else:
            return self._start_command(command)
        self._run(handler)
        return True

    def _command_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.host.config.command_env)
        env.update(self.env)
        return env

    def _start_command(self, command: str) -> bool:
        """Run ``command`` on the host (on the pty if one was requested)."""
        host = self.host
        env = self._command_env()
        handler: Handler
        if not host.fds_available(EXEC_FDS_STARTING, f"command {command!r}"):
            handler = CommandFailedHandler(
                self.channel, host.require_event(),
                "demo: cannot run the command: too many open files on this connection\n", 126)
        else:
            try:
                handler = ExecHandler(self.channel, host.require_event(), command, env,
                                      self.terminal, native=host.native())
            except (OSError, ValueError) as exc:
                # Accepted all the same: the client gets the reason and an exit status, as a
                # shell would report it, instead of a channel that just closes.
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
                    reason += " (the command line or its environment is too large)"
                logger.warning("client %s: cannot start %r: %s", host.id, command, reason)
                status = 127 if isinstance(exc, OSError) and exc.errno == errno.ENOENT else 126
                handler = CommandFailedHandler(self.channel, host.require_event(),
                                               f"demo: cannot run the command: {reason}\n",
                                               status)
        self._run(handler)
        return True


class ForwardChannel(_DataHooks):
    """A forward channel (direct-tcpip, forwarded-tcpip, agent): its data, EOF and CLOSE go
    to its handler from the start."""

    handler: ForwardHandler

    def __init__(self, host: ChannelHost, handler: ForwardHandler) -> None:
        self.host = host
        self.handler = handler
        self.channel: SshChannel = handler.channel

    def attach(self) -> None:
        """Set the channel's hooks and drive the handler."""
        self.channel.set_callbacks(ChannelCallbacks(
            data_room=self.data_room, on_data=self.on_data, on_eof=self.on_eof,
            on_close=self.on_close))
        self.host.add_handler(self.handler, session_channel=False)

    @property
    def is_open(self) -> bool:
        """Whether the forward counts toward ``max_channels``."""
        return not self.handler.finished

    def on_eof(self, session: Session, channel: SshChannel, userdata: Any) -> None:
        """The client's EOF: half-close towards the target once the data is through."""
        self.handler.on_eof()

    def on_close(self, session: Session, channel: SshChannel, userdata: Any) -> None:
        """The client's CLOSE: the connection to the target goes now."""
        self.handler.terminate()
        self.channel.close()
