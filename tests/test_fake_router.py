# SPDX-License-Identifier: MIT
"""``examples/fake_router.py`` driven by netmiko as a Cisco IOS device: the library's own
session preparation (prompt detection, ``terminal width``, ``terminal length 0``) and its
``send_command`` work against the scripted shell, and no host process is started."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT, stop_process
from netmiko import ConnectHandler

sys.path.insert(0, str(Path(ROOT) / "examples"))
from fake_router import VERSION, make_server


def test_netmiko_talks_to_the_fake_router(no_process_started: list[str]) -> None:
    """netmiko (device_type cisco_ios) finds the ``router#`` prompt, prepares the session and
    gets the table's answers; the server saw netmiko's preparation commands."""
    with make_server() as server:
        conn = ConnectHandler(device_type="cisco_ios", host="127.0.0.1", port=server.port,
                              username="admin", password="admin", timeout=20,
                              conn_timeout=20, banner_timeout=20)
        try:
            assert conn.find_prompt() == "router#"
            assert conn.send_command("show version").strip() == VERSION.strip()
            assert "Success rate is 100 percent" in conn.send_command("ping 192.0.2.2")
            assert "command not found: reload" in conn.send_command("reload")
        finally:
            conn.disconnect()
        log = server.clients[0].callback_log
    assert log["channel_shell_request"] == [True]
    assert log["channel_pty_request"][0][0] == "vt100"
    assert no_process_started == []


def test_fake_router_script_runs(tmp_path: Path) -> None:
    """The example as a script: the JSON line, then a clean exit on SIGTERM."""
    proc = subprocess.Popen([sys.executable, str(Path(ROOT) / "examples" / "fake_router.py")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        ready: dict[str, Any] = json.loads(proc.stdout.readline())
        assert ready["host"] == "127.0.0.1" and ready["port"] > 0
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    finally:
        stop_process(proc)
    assert (proc.returncode, err) == (0, "")
