"""What every long-running Cirrus process (scheduler, conductor, agents) shares: reading its
configuration from the command line, and running until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from control.common import config as config_mod
from control.common import log


def load_config(
    service: str, argv: list[str] | None, description: str = "", prog: str | None = None
) -> config_mod.Config:
    """``--config-file PATH`` (default ``/etc/cirrus/<service>.conf``) read, logging set up."""
    parser = argparse.ArgumentParser(prog=prog or f"cirrus-{service}", description=description)
    parser.add_argument(
        "--config-file", help=f"configuration file (default /etc/cirrus/{service}.conf)"
    )
    args = parser.parse_args(argv)
    conf = config_mod.load(service, args.config_file, required=args.config_file is not None)
    log.setup(conf.get("DEFAULT", "log_level", "INFO"))
    return conf


def notify_ready() -> bool:
    """Tell systemd the process is ready (``Type=notify`` units), when started by it.

    Sends ``READY=1`` to ``$NOTIFY_SOCKET`` (sd_notify's protocol: one datagram; a name starting
    with ``@`` is in the abstract namespace). Returns whether a notification was sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")
    return True


def run_until_signalled(start: Callable[[], None], stop: Callable[[], None]) -> int:
    """Start, tell systemd it is ready, wait for SIGTERM or SIGINT, stop cleanly; the exit
    status. ``start()`` returns once the process serves (connected to the broker), so a
    ``Type=notify`` unit is started only when it really is."""
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    start()
    notify_ready()
    done.wait()
    stop()
    return 0


class Runnable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def run(
    service: str,
    argv: list[str] | None,
    build: Callable[[config_mod.Config], Runnable],
    description: str = "",
    prog: str | None = None,
) -> int:
    """The ``main()`` of a long-running process: configuration, build, run until signalled.

    A configuration mistake ends it with one line naming the file, section and option, and exit
    status 2, never a traceback."""
    try:
        conf = load_config(service, argv, description, prog)
        process = build(conf)
    except config_mod.ConfigError as exc:
        print(f"{prog or 'cirrus-' + service}: {exc}", file=sys.stderr)
        return 2
    return run_until_signalled(process.start, process.stop)
