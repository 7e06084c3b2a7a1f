# SPDX-License-Identifier: MIT
"""The error helpers: ``check_rc``/``check_ptr`` name the C call and libssh's message, and
real libssh failures in keys and binds reach the caller through them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pylibssh_server
from pylibssh_server import Bind, KeyExchangeError, LibSSHError, Session, SshKey, SshKeyError
from pylibssh_server import errors as errors_module
from pylibssh_server._ffi import ffi, lib
from pylibssh_server.errors import check_ptr, check_rc, get_error

BAD_KEX = b"no-such-kex"


class _Failing:
    """Stands for a wrapper with a public ``get_error()`` (as Session and Bind have)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def get_error(self) -> str:
        return self.text


@pytest.fixture
def failed_bind() -> Iterator[Any]:
    """A raw ``ssh_bind`` whose last ``ssh_bind_options_set`` failed (an unknown kex name)."""
    ptr = lib.ssh_bind_new()
    assert (ptr == ffi.NULL) is False
    rc = lib.ssh_bind_options_set(ptr, lib.SSH_BIND_OPTIONS_KEY_EXCHANGE, BAD_KEX)
    assert rc == lib.SSH_ERROR
    try:
        yield ptr
    finally:
        lib.ssh_bind_free(ptr)


def test_check_rc_names_function_and_libssh_message(failed_bind: Any) -> None:
    """check_rc raises the class it is given, naming the C function, the return code and the
    text libssh's ssh_get_error keeps for the pointer."""
    detail = ffi.string(lib.ssh_get_error(failed_bind)).decode()
    with pytest.raises(KeyExchangeError) as info:
        check_rc(lib.SSH_ERROR, failed_bind, "ssh_bind_options_set", exc=KeyExchangeError)
    assert str(info.value) == f"ssh_bind_options_set failed (rc=-1): {detail}"
    assert (info.value.function, info.value.code) == ("ssh_bind_options_set", lib.SSH_ERROR)
    assert type(info.value) is KeyExchangeError


def test_check_rc_ok_codes_and_message() -> None:
    """A code in ``ok`` is returned; ``message`` replaces the default wording, and libssh's
    text of an object with get_error() is appended to it."""
    assert check_rc(lib.SSH_AGAIN, None, "ssh_handle_key_exchange",
                    ok=(lib.SSH_OK, lib.SSH_AGAIN)) == lib.SSH_AGAIN
    assert check_rc(lib.SSH_OK, None, "ssh_handle_key_exchange") == lib.SSH_OK
    with pytest.raises(SshKeyError) as info:
        check_rc(lib.SSH_AGAIN, _Failing("Socket error: disconnected"), "ssh_pki_generate",
                 exc=SshKeyError, message="cannot generate the key")
    assert str(info.value) == "cannot generate the key: Socket error: disconnected"
    assert (info.value.function, info.value.code) == ("ssh_pki_generate", lib.SSH_AGAIN)


def test_check_rc_without_error_text() -> None:
    """With no object (the ssh_pki_* calls keep no error text), or one closed meanwhile, the
    message is only the head: reporting the failure does not fail itself."""
    with pytest.raises(LibSSHError) as info:
        check_rc(lib.SSH_ERROR, None, "ssh_pki_export_pubkey_base64")
    assert str(info.value) == "ssh_pki_export_pubkey_base64 failed (rc=-1)"
    session = Session()
    session.close()
    with pytest.raises(LibSSHError) as info:
        check_rc(lib.SSH_ERROR, session, "ssh_message_reply_default")
    assert str(info.value) == "ssh_message_reply_default failed (rc=-1)"
    assert get_error(session) == ""


def test_check_ptr() -> None:
    """check_ptr returns a non-NULL pointer; on NULL it raises the given class naming the C
    function and libssh's text, with no return code."""
    ptr = ffi.new("int *")
    assert check_ptr(ptr, "ssh_key_dup") is ptr
    with pytest.raises(SshKeyError) as info:
        check_ptr(ffi.NULL, "ssh_key_dup", exc=SshKeyError)
    assert str(info.value) == "ssh_key_dup returned NULL"
    assert (info.value.function, info.value.code) == ("ssh_key_dup", None)
    with pytest.raises(LibSSHError) as generic:
        check_ptr(ffi.NULL, "ssh_message_channel_request_open_reply_accept",
                  _Failing("Channel opening failure"))
    assert str(generic.value) == ("ssh_message_channel_request_open_reply_accept returned "
                                  "NULL: Channel opening failure")
    assert type(generic.value) is LibSSHError


def test_corrupt_private_key_file_names_the_c_function(tmp_path: Path) -> None:
    """libssh refusing a corrupt private key file surfaces as SshKeyError naming
    ssh_pki_import_privkey_file with its return code; the message names the file."""
    corrupt = tmp_path / "corrupt"
    corrupt.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
                       "-----END OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(SshKeyError) as info:
        SshKey.from_private_file(corrupt)
    assert (info.value.function, info.value.code) == ("ssh_pki_import_privkey_file",
                                                      lib.SSH_ERROR)
    assert str(info.value) == (
        f"cannot read private key {corrupt}: not a valid key, or wrong/missing passphrase")


def test_authorized_keys_line_keeps_the_c_function() -> None:
    """A key line libssh cannot import is re-worded with its line number, and still names
    the C function that refused it."""
    with pytest.raises(SshKeyError) as info:
        pylibssh_server.parse_authorized_keys("ssh-ed25519 AAAAnotakey\n")
    assert str(info.value) == "authorized_keys line 1: invalid ssh-ed25519 public key data"
    assert (info.value.function, info.value.code) == ("ssh_pki_import_pubkey_base64",
                                                      lib.SSH_ERROR)


def test_invalid_bind_option_value(host_key: SshKey, failed_bind: Any) -> None:
    """An option value libssh refuses is a LibSSHError naming ssh_bind_options_set, the
    option, the value and libssh's own text for the same refusal."""
    detail = ffi.string(lib.ssh_get_error(failed_bind)).decode()
    with pytest.raises(LibSSHError) as info:
        Bind(key=host_key, kex=BAD_KEX.decode())
    assert str(info.value) == (
        "ssh_bind_options_set(SSH_BIND_OPTIONS_KEY_EXCHANGE) failed: invalid key_exchange "
        f"value 'no-such-kex': {detail}")
    assert (info.value.function, info.value.code) == ("ssh_bind_options_set", lib.SSH_ERROR)


def test_removed_exceptions() -> None:
    """AuthenticationError and CallbackError are gone: nothing raised them (a server has no
    client-side authentication to fail, and hook exceptions are re-raised as they are)."""
    names = {"AuthenticationError", "CallbackError"}
    assert names & set(pylibssh_server.__all__) == set()
    assert names & set(dir(pylibssh_server)) == set()
    assert names & set(dir(errors_module)) == set()
