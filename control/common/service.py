"""What every long-running Cirrus process (scheduler, conductor, agents) shares: reading its
configuration from the command line, and running until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
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


def run_until_signalled(start: Callable[[], None], stop: Callable[[], None]) -> int:
    """Start, wait for SIGTERM or SIGINT, stop cleanly; the exit status."""
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    start()
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
