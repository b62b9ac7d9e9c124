"""A consumer that takes one message, writes a marker file and then blocks forever.

test_rpc.py starts it as a subprocess and SIGKILLs it mid-message to prove the broker redelivers
an unacknowledged message. Configuration comes from the environment (the URL holds a password,
so it is not passed on the command line): CIRRUS_TEST_AMQP_URL, CIRRUS_TEST_TOPIC,
CIRRUS_TEST_MARKER.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from control.common import rpc


class Blocker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def work(self, ctxt: Any, job: str) -> None:
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(f"{job} {ctxt.request_id}")
        tmp.rename(self.marker)  # atomic: the test never reads a half-written marker
        time.sleep(3600)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    transport = rpc.Transport(os.environ["CIRRUS_TEST_AMQP_URL"])
    marker = Path(os.environ["CIRRUS_TEST_MARKER"])
    server = rpc.RPCServer(transport, os.environ["CIRRUS_TEST_TOPIC"], [Blocker(marker)])
    server.start()
    server.wait()  # never returns: the test kills this process


if __name__ == "__main__":
    main()
