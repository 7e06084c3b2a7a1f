# SPDX-License-Identifier: MIT
"""Smoke tests of the raw layer: the compiled module, its constants, version and features."""

from __future__ import annotations

import os
import subprocess

import pytest

import pylibssh_server
from pylibssh_server import _ffi
from pylibssh_server._ffi import ffi, lib
from pylibssh_server.enums import AuthMethod, AuthStatus, PublicKeyState

EXPECTED_FEATURES = {
    "channel_open_response": "0.11.0",
    "import_key_str": "0.11.0",
    "no_more_sessions": "0.11.0",
    "sftp_server_callbacks": "0.11.0",
    "server_kbdint_callback": "0.12.0",
    "server_direct_tcpip_callback": "0.12.0",
}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_return_code_constants() -> None:
    """The SSH_* return codes have the values libssh.h documents."""
    assert (lib.SSH_OK, lib.SSH_ERROR, lib.SSH_AGAIN, lib.SSH_EOF) == (0, -1, -2, -127)


def test_auth_constants_and_enums() -> None:
    """Auth return values and method bits match libssh.h, and the enums mirror them."""
    assert (lib.SSH_AUTH_SUCCESS, lib.SSH_AUTH_DENIED, lib.SSH_AUTH_PARTIAL,
            lib.SSH_AUTH_INFO, lib.SSH_AUTH_AGAIN, lib.SSH_AUTH_ERROR) == (0, 1, 2, 3, 4, -1)
    assert (lib.SSH_AUTH_METHOD_NONE, lib.SSH_AUTH_METHOD_PASSWORD,
            lib.SSH_AUTH_METHOD_PUBLICKEY, lib.SSH_AUTH_METHOD_HOSTBASED,
            lib.SSH_AUTH_METHOD_INTERACTIVE) == (0x01, 0x02, 0x04, 0x08, 0x10)
    assert int(AuthStatus.DENIED) == lib.SSH_AUTH_DENIED
    assert int(AuthMethod.INTERACTIVE) == lib.SSH_AUTH_METHOD_INTERACTIVE
    assert [int(s) for s in PublicKeyState] == [lib.SSH_PUBLICKEY_STATE_ERROR,
                                                 lib.SSH_PUBLICKEY_STATE_NONE,
                                                 lib.SSH_PUBLICKEY_STATE_VALID,
                                                 lib.SSH_PUBLICKEY_STATE_WRONG]
    assert AuthMethod.parse("password, keyboard-interactive") == (
        AuthMethod.PASSWORD | AuthMethod.INTERACTIVE)


def test_struct_sizes_come_from_the_compiler() -> None:
    """Callback structs are complete types whose size the compiler supplied (``...;``)."""
    for ctype in ("struct ssh_server_callbacks_struct", "struct ssh_channel_callbacks_struct",
                  "struct ssh_callbacks_struct"):
        assert ffi.sizeof(ctype) > ffi.sizeof("void *")


def test_libssh_version_matches_pkg_config() -> None:
    """``libssh_version()`` is the run-time libssh, the one pkg-config reports (for a vendored
    build, the one in ``PYLIBSSH_LIBSSH_PREFIX``)."""
    env = dict(os.environ)
    prefix = env.get("PYLIBSSH_LIBSSH_PREFIX")
    if prefix:
        env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    expected = subprocess.run(["pkg-config", "--modversion", "libssh"], capture_output=True,
                              text=True, check=True, timeout=10, env=env).stdout.strip()
    assert pylibssh_server.libssh_version() == expected
    assert pylibssh_server.header_version() == expected
    assert ffi.string(lib.ssh_version(0)).decode().split("/")[0] == expected


def test_runtime_at_least() -> None:
    """``runtime_at_least`` compares with the loaded version (``ssh_version(min)``)."""
    version = pylibssh_server.libssh_version()
    major, minor, patch = _version_tuple(version)
    assert _ffi.runtime_at_least(version) is True
    assert _ffi.runtime_at_least("0.1.0") is True
    assert _ffi.runtime_at_least(f"{major}.{minor}.{patch + 1}") is False


def test_features_dict() -> None:
    """``features`` has one bool per optional feature, True exactly when the headers are at
    least the version that introduced it."""
    assert set(pylibssh_server.features) == set(EXPECTED_FEATURES)
    headers = _version_tuple(pylibssh_server.header_version())
    expected = {name: headers >= _version_tuple(minimum)
                for name, minimum in EXPECTED_FEATURES.items()}
    assert pylibssh_server.features == expected


def test_require_feature() -> None:
    """``require_feature`` passes for available features and raises NotImplementedError
    naming the minimum libssh version otherwise (on 0.10 every optional feature is missing)."""
    missing = [name for name, ok in pylibssh_server.features.items() if not ok]
    if _version_tuple(pylibssh_server.header_version()) < (0, 11, 0):
        assert missing == list(EXPECTED_FEATURES)
    for name, minimum in EXPECTED_FEATURES.items():
        if name in missing:
            with pytest.raises(NotImplementedError) as info:
                _ffi.require_feature(name)
            assert str(info.value).startswith(f"{name} needs libssh >= {minimum};")
        else:
            assert _ffi.require_feature(name) is None


def test_require_feature_unknown_name() -> None:
    """An unknown feature name is a programming error (KeyError), not a silent pass."""
    with pytest.raises(KeyError):
        _ffi.require_feature("no_such_feature")
