"""``cirrus-volume-rpc`` (``python -m control.volume.service``): serves the volume agents' RPC
endpoint (topic ``volume``, :class:`control.volume.rpc.VolumeEndpoint`). Reads volume.conf (the
volume database, ``[rpc] transport_url``, ``exchange``) and::

    [volume]
    rpc_executor_threads = 8
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from control.common import config as config_mod
from control.common import db, rpc, service
from control.volume.rpc import TOPIC, VolumeEndpoint

CONFIG = "volume"


@dataclass
class VolumeRPC:
    server: rpc.RPCServer
    transport: rpc.Transport
    database: db.Database

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server.wait()
        self.transport.close()
        self.database.dispose()


def build(conf: config_mod.Config) -> VolumeRPC:
    database = db.Database(
        conf.get("database", "connection"), pool_size=conf.get_int("database", "pool_size", 10)
    )
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    server = rpc.RPCServer(
        transport,
        TOPIC,
        [VolumeEndpoint(database)],
        executor_threads=conf.get_int("volume", "rpc_executor_threads", 8),
    )
    return VolumeRPC(server, transport, database)


def main(argv: list[str] | None = None) -> int:
    return service.run(CONFIG, argv, build, __doc__ or "", prog="cirrus-volume-rpc")


if __name__ == "__main__":
    sys.exit(main())
