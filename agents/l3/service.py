"""The l3-agent process (``cirrus-l3-agent``): router namespaces, SNAT and floating IPs.

Configuration (``/etc/cirrus/l3-agent.conf``)::

    [DEFAULT]
    host = network1                  # default: the host name
    [rpc]
    transport_url = amqp://...
    exchange = cirrus
    [l3]
    resync_interval = 30             # seconds between full resyncs
    report_interval = 10             # seconds between report_state heartbeats
    [metadata]
    host = 10.0.0.10                 # metadata-api's address; without it no metadata proxy
    port = 8775
    shared_secret = ...              # required with host: metadata.conf's same value
    proxy_port = 9697                # the proxy's port inside each router namespace
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass

from agents.l3 import metadata_proxy
from agents.l3.agent import L3Agent, RouterHook
from control.common import config as config_mod
from control.common import rpc, service
from control.network.rpc import FANOUT, NetworkAPI

SERVICE = "l3-agent"
LOG = logging.getLogger("cirrus.l3")


def topic(host: str) -> str:
    return f"l3.{host}"


@dataclass
class Agent:
    agent: L3Agent
    server: rpc.RPCServer
    transport: rpc.Transport
    proxy: metadata_proxy.MetadataProxy | None = None

    def start(self) -> None:
        self.server.start()
        self.agent.connected = lambda: self.server.wait_ready(0)
        self.agent.start()

    def stop(self) -> None:
        self.agent.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()
        self.server.wait()
        self.transport.close()


def build_proxy(
    conf: config_mod.Config, api: metadata_proxy.MetadataRPC
) -> metadata_proxy.MetadataProxy | None:
    """The metadata proxy of ``[metadata]``; None (logged) without ``host``."""
    host = (conf.get_optional("metadata", "host") or "").strip()
    if not host:
        LOG.warning("%s: [metadata] host is not set; the metadata proxy is disabled", conf.source)
        return None
    secret = conf.get_optional("metadata", "shared_secret")
    if not secret:
        raise config_mod.ConfigError(
            f"{conf.source}: [metadata] shared_secret is required when [metadata] host is set "
            "(metadata.conf's same value)"
        )
    ports = {}
    for key, default in (("port", metadata_proxy.DEFAULT_UPSTREAM_PORT),
                         ("proxy_port", metadata_proxy.DEFAULT_PROXY_PORT)):  # fmt: skip
        ports[key] = conf.get_int("metadata", key, default)
        if not 1 <= ports[key] <= 65535:
            raise config_mod.ConfigError(
                f"{conf.source}: [metadata] {key} must be a TCP port (1-65535), got {ports[key]}"
            )
    return metadata_proxy.MetadataProxy(
        api, host, secret, port=ports["port"], proxy_port=ports["proxy_port"]
    )


def build(conf: config_mod.Config) -> Agent:
    host = conf.get("DEFAULT", "host", socket.gethostname())
    transport = rpc.Transport(
        conf.get("rpc", "transport_url"), exchange=conf.get("rpc", "exchange", "cirrus")
    )
    api = NetworkAPI(transport)
    proxy = build_proxy(conf, api)
    hooks: list[RouterHook] = [proxy] if proxy is not None else []
    agent = L3Agent(
        host,
        api,
        resync_interval=conf.get_float("l3", "resync_interval", 30.0),
        report_interval=conf.get_float("l3", "report_interval", 10.0),
        hooks=hooks,
    )
    server = rpc.RPCServer(transport, topic(host), [agent], version="1.0", fanout=FANOUT)
    return Agent(agent, server, transport, proxy)


def main(argv: list[str] | None = None) -> int:
    return service.run(SERVICE, argv, build, __doc__ or "", prog="cirrus-l3-agent")


if __name__ == "__main__":
    sys.exit(main())
