"""``cirrus-compute-agent``: the compute agent process of a compute node.

Settings (``/etc/cirrus/compute-agent.conf``, or ``CIRRUS_COMPUTE_AGENT_CONFIG``)::

    [DEFAULT]
    host = node1                   # default: the host name; RPC topic compute.<host>
    log_level = INFO
    [rpc]
    transport_url = amqp://user:pass@controller:5672/cirrus
    [compute]
    driver = libvirt               # or fake
    availability_zone = nova
    image_cache_dir = /var/lib/cirrus/images
    heartbeat_interval = 10
    sync_power_state_interval = 10
    executor_threads = 8
    fake_vcpus = 16                # fake driver only: the capacity it reports
    fake_memory_mb = 32768
    fake_local_gb = 1000
    [image]
    api_url =                      # optional; else the image endpoint of the user's catalog
    [identity]
    auth_url = http://controller:5000/v3

The agent has no database access: everything goes through the conductor.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
import sys
from dataclasses import dataclass
from typing import Any

from agents.compute.driver import ComputeDriver
from agents.compute.fake import FakeDriver
from agents.compute.imagecache import ImageCache
from agents.compute.manager import ComputeManager
from agents.compute.rpcapi import topic
from control.common import catalog, rpc, service
from control.common import config as config_mod
from control.conductor.rpcapi import ConductorAPI

SERVICE = "compute-agent"


def load_driver(conf: config_mod.Config) -> ComputeDriver:
    name = conf.get("compute", "driver", "libvirt")
    if name == "fake":
        return FakeDriver(
            vcpus=conf.get_int("compute", "fake_vcpus", 16),
            memory_mb=conf.get_int("compute", "fake_memory_mb", 32768),
            local_gb=conf.get_int("compute", "fake_local_gb", 1000),
        )
    if name == "libvirt":
        module: Any = importlib.import_module("agents.compute.libvirt.driver")
        driver: ComputeDriver = module.LibvirtDriver(conf)
        return driver
    raise config_mod.ConfigError(f"{conf.source}: [compute] driver must be libvirt or fake")


def image_endpoint(conf: config_mod.Config) -> Any:
    configured = conf.get_optional("image", "api_url")
    auth_url = conf.get("identity", "auth_url", "")

    def endpoint(token: str) -> str:
        if configured:
            return configured
        try:
            return catalog.public_endpoint(auth_url, token, "image")
        except catalog.CatalogError as exc:
            from agents.compute.driver import DriverError

            raise DriverError(f"cannot find the image service: {exc}") from None

    return endpoint


@dataclass
class Agent:
    manager: ComputeManager
    server: rpc.RPCServer
    transport: rpc.Transport

    def start(self) -> None:
        self.manager.init_host()
        self.server.start()
        with contextlib.suppress(rpc.RPCError):  # the periodic task retries
            self.manager.heartbeat()
        self.manager.start_periodic()

    def stop(self) -> None:
        self.manager.stop_periodic()
        self.server.stop()
        self.server.wait()
        self.manager.image_cache.close()
        self.manager.driver.cleanup_host()
        self.transport.close()


def build(conf: config_mod.Config, driver: ComputeDriver | None = None) -> Agent:
    host = conf.get("DEFAULT", "host", socket.gethostname())
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    cache = ImageCache(
        conf.get("compute", "image_cache_dir", "/var/lib/cirrus/images"), image_endpoint(conf)
    )
    manager = ComputeManager(
        host,
        driver or load_driver(conf),
        ConductorAPI(transport),
        cache,
        availability_zone=conf.get("compute", "availability_zone", "nova"),
        heartbeat_interval=conf.get_float("compute", "heartbeat_interval", 10.0),
        sync_interval=conf.get_float("compute", "sync_power_state_interval", 10.0),
    )
    server = rpc.RPCServer(
        transport,
        topic(host),
        [manager],
        version="1.0",
        executor_threads=conf.get_int("compute", "executor_threads", 8),
    )
    return Agent(manager, server, transport)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-compute-agent")


if __name__ == "__main__":
    sys.exit(main())
