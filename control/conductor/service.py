"""``cirrus-conductor``: serves topic ``conductor`` and sweeps stale builds. Reads compute.conf
(the compute database, ``[rpc] transport_url``) and::

    [conductor]
    build_timeout = 600            # seconds a server may stay in BUILD
    sweep_interval = 30
    executor_threads = 8
    [compute]
    service_down_time = 60
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from dataclasses import dataclass

from control.common import config as config_mod
from control.common import db, rpc, service
from control.compute import services
from control.conductor.manager import ConductorManager
from control.conductor.rpcapi import TOPIC

CONFIG = "compute"
LOG = logging.getLogger("cirrus.conductor")


@dataclass
class Conductor:
    manager: ConductorManager
    server: rpc.RPCServer
    transport: rpc.Transport
    host: str
    build_timeout: float = 600.0
    service_down_time: float = 60.0
    interval: float = 30.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _periodic(self) -> None:
        while not self._stop.is_set():
            try:
                with self.manager.database.transaction() as sess:
                    services.heartbeat(sess, self.host, services.CONDUCTOR_BINARY)
                self.manager.sweep_stale_builds(self.build_timeout, self.service_down_time)
            except Exception:
                LOG.exception("conductor periodic task failed")
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.server.start()
        self._thread = threading.Thread(target=self._periodic, name="conductor-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.server.stop()
        self.server.wait()
        self.transport.close()
        self.manager.database.dispose()


def build(conf: config_mod.Config) -> Conductor:
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 10)
    )
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    manager = ConductorManager(database)
    server = rpc.RPCServer(
        transport,
        TOPIC,
        [manager],
        executor_threads=conf.get_int("conductor", "executor_threads", 8),
    )
    return Conductor(
        manager,
        server,
        transport,
        conf.get("DEFAULT", "host", socket.gethostname()),
        build_timeout=conf.get_float("conductor", "build_timeout", 600.0),
        service_down_time=conf.get_float("compute", "service_down_time", 60.0),
        interval=conf.get_float("conductor", "sweep_interval", 30.0),
    )


def main(argv: list[str] | None = None) -> int:
    return service.run(CONFIG, argv, build, __doc__ or "", prog="cirrus-conductor")


if __name__ == "__main__":
    sys.exit(main())
