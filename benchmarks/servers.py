# SPDX-License-Identifier: MIT
"""The servers under test, each started as its own process and stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PASSWORD = "bench-pw"

NAMES = ("pylibssh", "pylibssh-threads", "asyncssh", "paramiko", "c", "c-floor")
TITLES = {"pylibssh": "pylibssh_server", "pylibssh-threads": "pylibssh_server (threads)",
          "asyncssh": "asyncssh", "paramiko": "paramiko", "c": "C libssh",
          "c-floor": "C libssh, one process"}
# The C programs (benchmarks/c_server), by server name.
C_BINARIES = {"c": "c_libssh_server", "c-floor": "c_libssh_floor"}


def build_c_servers(src_dir: Path, out_dir: Path) -> dict[str, Path]:
    """``make -C src_dir OUT=out_dir``; the binaries by server name (raises if the build
    fails)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["make", "-s", "-C", str(src_dir), f"OUT={out_dir}"],
                         capture_output=True, text=True, timeout=300)
    binaries = {name: out_dir / file for name, file in C_BINARIES.items()}
    missing = [str(b) for b in binaries.values() if not b.exists()]
    if res.returncode != 0 or missing:
        raise RuntimeError(f"building the C servers failed: {res.stderr.strip()[-500:]}")
    return binaries


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def demo_has_model_flag() -> bool:
    """Whether the DemoServer CLI offers ``--model`` (reactor or threads)."""
    res = subprocess.run([sys.executable, "-m", "pylibssh_server.demo", "--help"],
                         capture_output=True, text=True, timeout=120, env=_env(),
                         cwd=str(ROOT), stdin=subprocess.DEVNULL)
    return res.returncode == 0 and "--model" in res.stdout


class Server:
    """One server process: ``start()`` waits until it listens; ``stop()`` ends it by PID."""

    def __init__(self, name: str, hostkey: Path, logdir: Path, binaries: dict[str, Path],
                 extra: tuple[str, ...] = ()) -> None:
        self.name = name
        self.hostkey = hostkey
        self.logdir = logdir
        self.binaries = binaries
        self.extra = extra  # more command-line arguments
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
        if self.name in ("pylibssh", "pylibssh-threads"):
            argv = [py, "-m", "pylibssh_server.demo", "--password", PASSWORD, "--port", "0",
                    "--hostkey", key]
            if self.name == "pylibssh-threads":
                argv += ["--model", "threads"]
        elif self.name == "asyncssh":
            argv = [py, str(HERE / "asyncssh_server.py"), "--password", PASSWORD,
                    "--port", "0", "--hostkey", key]
        elif self.name == "paramiko":
            argv = [py, str(HERE / "paramiko_server.py"), "--password", PASSWORD,
                    "--port", "0", "--hostkey", key]
        elif self.name in C_BINARIES:
            binary = self.binaries.get(self.name)
            if binary is None:
                raise RuntimeError("the C server was not built")
            self.port = benchlib.free_port()
            argv = [str(binary), "--port", str(self.port), "--hostkey", key,
                    "--password", PASSWORD]
        else:
            raise ValueError(self.name)
        argv += self.extra
        with open(self.log_path, "w") as log:
            self.proc = benchlib.spawn(argv, server=True, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=_env(), cwd=str(ROOT))
        try:
            if self.name in C_BINARIES:
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
