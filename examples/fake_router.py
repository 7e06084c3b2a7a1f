# SPDX-License-Identifier: MIT
"""A DemoServer that looks like a network device to automation libraries (netmiko, scrapli,
Ansible's network_cli): a login banner, a ``router#`` prompt, the paging and width commands
those libraries send first, and a few ``show`` commands, all answered from a table.  No
process is ever started on the host.

    python examples/fake_router.py --port 0
    ssh -p PORT admin@127.0.0.1      # password: admin

It prints one JSON line (``host``, ``port``, ``fingerprint``) when ready and serves until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading

from pylibssh_server.demo import CommandTable, DemoServer, Reply

HOSTNAME = "router"
VERSION = """Demo IOS Software, Version 15.2(4)M7, RELEASE SOFTWARE (fc2)
router uptime is 4 weeks, 2 days, 3 hours, 11 minutes
System image file is "flash:demo-universalk9-mz.152-4.M7.bin"
Cisco CISCO2901/K9 (revision 1.0) with 491520K/32768K bytes of memory.
Processor board ID FTX0000DEMO
"""
INTERFACES = """Interface              IP-Address      OK? Method Status                Protocol
GigabitEthernet0/0     192.0.2.1       YES NVRAM  up                    up
GigabitEthernet0/1     unassigned      YES NVRAM  administratively down down
"""


def router_commands() -> CommandTable:
    """The device's command table: what an automation library sends, answered as IOS does."""
    return CommandTable(
        {
            "terminal length 0": "",
            "terminal width 511": "",
            "show version": VERSION,
            "show ip interface brief": INTERFACES,
            "show running-config | include hostname": f"hostname {HOSTNAME}\n",
            re.compile(r"ping \S+"): Reply(stdout="!!!!!\nSuccess rate is 100 percent (5/5)\n",
                                          delay=0.2),
        },
        prompt=f"{HOSTNAME}#", banner="\nDemo router: authorized access only\n\n")


def make_server(port: int = 0, password: str = "admin") -> DemoServer:
    """A DemoServer answering as the router, with password auth and no host commands."""
    return DemoServer(port, password=password, commands=router_commands(),
                      host_commands=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="admin")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with make_server(args.port, args.password) as server:
        print(json.dumps({"host": server.host, "port": server.port,
                          "fingerprint": server.fingerprint}), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
