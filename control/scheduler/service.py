"""``cirrus-scheduler``: serves topic ``scheduler``. Reads compute.conf (the compute database,
``[rpc] transport_url``) and::

    [scheduler]
    cpu_allocation_ratio = 16.0
    ram_allocation_ratio = 1.5
    disk_allocation_ratio = 1.0
    executor_threads = 8
    [compute]
    service_down_time = 60
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass

from control.common import config as config_mod
from control.common import db, rpc, service
from control.compute import claims, services
from control.scheduler.manager import SchedulerManager
from control.scheduler.rpcapi import TOPIC

CONFIG = "compute"


def ratios(conf: config_mod.Config) -> claims.Ratios:
    return claims.Ratios(
        cpu=conf.get_float("scheduler", "cpu_allocation_ratio", 16.0),
        ram=conf.get_float("scheduler", "ram_allocation_ratio", 1.5),
        disk=conf.get_float("scheduler", "disk_allocation_ratio", 1.0),
    )


@dataclass
class Scheduler:
    manager: SchedulerManager
    server: rpc.RPCServer
    transport: rpc.Transport
    host: str
    interval: float = 10.0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                with self.manager.database.transaction() as sess:
                    services.heartbeat(sess, self.host, services.SCHEDULER_BINARY)
            except Exception:  # noqa: S110 - the next beat retries; logged by SQLAlchemy
                pass
            self._stop.wait(self.interval)

    def start(self) -> None:
        self.server.start()
        self._thread = threading.Thread(target=self._beat, name="scheduler-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.server.stop()
        self.server.wait()
        self.transport.close()
        self.manager.database.dispose()


def build(conf: config_mod.Config) -> Scheduler:
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 10)
    )
    manager = SchedulerManager(
        database,
        ratios(conf),
        service_down_time=conf.get_float("compute", "service_down_time", 60.0),
    )
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    server = rpc.RPCServer(
        transport,
        TOPIC,
        [manager],
        executor_threads=conf.get_int("scheduler", "executor_threads", 8),
    )
    host = conf.get("DEFAULT", "host", socket.gethostname())
    return Scheduler(manager, server, transport, host)


def main(argv: list[str] | None = None) -> int:
    return service.run(CONFIG, argv, build, __doc__ or "", prog="cirrus-scheduler")


if __name__ == "__main__":
    sys.exit(main())
