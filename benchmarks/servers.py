# SPDX-License-Identifier: MIT
"""The four servers under test, each started as its own process and stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench-pw"

NAMES = ("pylibssh", "asyncssh", "paramiko", "c")
TITLES = {"pylibssh": "pylibssh_server", "asyncssh": "asyncssh", "paramiko": "paramiko",
          "c": "C libssh"}


def build_c_server(src_dir: Path, out_dir: Path) -> Path:
    """``make -C src_dir OUT=out_dir``; returns the binary (raises if the build fails)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["make", "-s", "-C", str(src_dir), f"OUT={out_dir}"],
                         capture_output=True, text=True, timeout=300)
    binary = out_dir / "c_libssh_server"
    if res.returncode != 0 or not binary.exists():
        raise RuntimeError(f"building the C server failed: {res.stderr.strip()[-500:]}")
    return binary


class Server:
    """One server process: ``start()`` waits until it listens; ``stop()`` ends it by PID."""

    def __init__(self, name: str, hostkey: Path, logdir: Path, c_binary: Path | None) -> None:
        self.name = name
        self.hostkey = hostkey
        self.logdir = logdir
        self.c_binary = c_binary
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = str(logdir / f"server-{name}.log")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        py = sys.executable
        key = str(self.hostkey)
        if self.name == "pylibssh":
            argv = [py, "-m", "pylibssh_server.demo", "--password", PASSWORD, "--port", "0",
                    "--hostkey", key]
        elif self.name == "asyncssh":
            argv = [py, str(HERE / "asyncssh_server.py"), "--password", PASSWORD,
                    "--port", "0", "--hostkey", key]
        elif self.name == "paramiko":
            argv = [py, str(HERE / "paramiko_server.py"), "--password", PASSWORD,
                    "--port", "0", "--hostkey", key]
        elif self.name == "c":
            if self.c_binary is None:
                raise RuntimeError("the C server was not built")
            self.port = benchlib.free_port()
            argv = [str(self.c_binary), "--port", str(self.port), "--hostkey", key,
                    "--password", PASSWORD]
        else:
            raise ValueError(self.name)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH"))
                                            if p)
        with open(self.log_path, "w") as log:
            self.proc = benchlib.spawn(argv, server=True, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        try:
            if self.name == "c":
                benchlib.wait_text(self.log_path, self.proc, "listening on")
            else:
                self.port = int(benchlib.wait_json_line(self.log_path, self.proc,
                                                        "port")["port"])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None:
            benchlib.stop(self.proc)
            self.proc = None
