"""The volume agent process (``cirrus-volume-agent``): volumes as disk files, exported over NBD.

Configuration (``/etc/cirrus/volume-agent.conf``)::

    [DEFAULT]
    log_level = INFO
    host = storage1                  # default: the host name; the agent serves volume.<host>
    [rpc]
    transport_url = amqp://...
    exchange = cirrus
    [volume]
    backend = file                   # file | fake
    backend_name = file              # reported; a volume type's volume_backend_name selects it
    volumes_dir = /var/lib/cirrus/volumes
    volume_format = raw              # raw (sparse files) | qcow2
    export_address = 127.0.0.1       # NBD servers bind here: the management address
    export_port_min = 10809
    export_port_max = 10999
    availability_zone = nova
    report_interval = 10             # seconds between report_state heartbeats
    state_dir = /var/lib/cirrus/volume-exports   # one JSON per live export
    rpc_timeout = 30                 # seconds the reports to the volume topic may take
    workers = 4                      # messages handled at once (copies run beside attaches)

See docs/volume-agent.md.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from agents.volume import fake, file, nbd
from agents.volume.driver import VolumeDriver
from agents.volume.manager import ImageFetcher, VolumeManager
from agents.volume.rpcapi import VolumeRPCAPI
from control.common import config as config_mod
from control.common import rpc, service

SERVICE = "volume-agent"
TOPIC = "volume"
LOG = logging.getLogger("cirrus.volume.agent")


def topic(host: str) -> str:
    return f"{TOPIC}.{host}"


@dataclass
class Agent:
    manager: VolumeManager
    server: rpc.RPCServer
    transport: rpc.Transport

    def start(self) -> None:
        self.manager.start()  # adopts the live exports, then reconciles and reports
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        self.server.wait()
        self.manager.stop()
        self.transport.close()


def _error(conf: config_mod.Config, option: str, message: str) -> config_mod.ConfigError:
    return config_mod.ConfigError(f"{conf.source}: [volume] {option} {message}")


def _directory(conf: config_mod.Config, option: str, default: str) -> Path:
    path = Path(conf.get("volume", option, default))
    if not path.is_absolute():
        raise _error(conf, option, f"must be an absolute path, got {str(path)!r}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(conf, option, f"= {path}: cannot create it: {exc.strerror}") from None
    return path


def build_driver(conf: config_mod.Config) -> tuple[VolumeDriver, ImageFetcher]:
    backend = conf.get("volume", "backend", "file")
    volume_format = conf.get("volume", "volume_format", "raw")
    if volume_format not in file.FORMATS:
        raise _error(conf, "volume_format", f"must be raw or qcow2, got {volume_format!r}")
    address = conf.get("volume", "export_address", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise _error(conf, "export_address", f"must be an IP address, got {address!r}") from None
    port_min = conf.get_int("volume", "export_port_min", 10809)
    port_max = conf.get_int("volume", "export_port_max", 10999)
    if not 0 < port_min < 65536:
        raise _error(conf, "export_port_min", f"must be a port (1-65535), got {port_min}")
    if not port_min <= port_max < 65536:
        raise _error(
            conf,
            "export_port_max",
            f"must be a port >= export_port_min ({port_min}), got {port_max}",
        )
    if backend == "fake":
        return (
            fake.FakeDriver(
                volume_format=volume_format, address=address, port_min=port_min, port_max=port_max
            ),
            fake.FakeImageFetcher(),
        )
    if backend != "file":
        raise _error(conf, "backend", f"must be file or fake, got {backend!r}")
    volumes_dir = _directory(conf, "volumes_dir", "/var/lib/cirrus/volumes")
    state_dir = _directory(conf, "state_dir", "/var/lib/cirrus/volume-exports")
    exports = nbd.NbdExports(state_dir, address, port_min, port_max)
    driver = file.FileDriver(volumes_dir, volume_format, exports)
    return driver, file.ImageDownloader(volumes_dir)


def build(conf: config_mod.Config) -> Agent:
    host = conf.get("DEFAULT", "host", socket.gethostname())
    report_interval = conf.get_float("volume", "report_interval", 10.0)
    if report_interval <= 0:
        raise _error(conf, "report_interval", f"must be more than 0, got {report_interval:g}")
    workers = conf.get_int("volume", "workers", 4)
    if workers < 1:
        raise _error(conf, "workers", f"must be at least 1, got {workers}")
    rpc_timeout = conf.get_float("volume", "rpc_timeout", 30.0)
    driver, images = build_driver(conf)
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    manager = VolumeManager(
        host,
        driver,
        VolumeRPCAPI(transport, timeout=rpc_timeout),
        images,
        backend_name=conf.get("volume", "backend_name", driver.name),
        availability_zone=conf.get("volume", "availability_zone", "nova"),
        report_interval=report_interval,
    )
    server = rpc.RPCServer(
        transport, topic(host), [manager], version="1.0", executor_threads=workers
    )
    return Agent(manager, server, transport)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-volume-agent")


if __name__ == "__main__":
    sys.exit(main())
