# SPDX-License-Identifier: MIT
"""TCP sink for the direct-tcpip benchmark: counts what it receives, answers with the count.

Each connection is read until EOF; the sink then sends the byte count as 8 bytes (big-endian)
and closes.  Listens on 127.0.0.1 only; prints ``{"port": N}`` once listening; runs until
SIGTERM/SIGINT (the benchmark stops it by PID).
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import threading


def _handle(conn: socket.socket) -> None:
    buf = bytearray(1 << 20)
    total = 0
    try:
        conn.settimeout(300)
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
        conn.sendall(struct.pack("!Q", total))
    except OSError:
        pass
    finally:
        conn.close()


def main() -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    listener.settimeout(0.5)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except (socket.timeout, InterruptedError):
            continue
        threading.Thread(target=_handle, args=(conn,), daemon=True).start()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
