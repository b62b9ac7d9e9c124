"""RPC over RabbitMQ: call (request/reply), cast (confirmed, persistent) and fanout.

    from control.common import rpc

    transport = rpc.Transport(url)
    client = rpc.RPCClient(transport, "scheduler", version="1.0")
    client.call(ctxt, "select_destinations", spec=spec)        # -> result, or raises
    client.prepare(topic="compute.host1").cast(ctxt, "build_instance", instance_id=iid)

    server = rpc.RPCServer(transport, "scheduler", [SchedulerEndpoint()])
    server.start(); ...; server.stop(); server.wait()

Design notes (envelope, queues, acks, reconnects, versions, errors): docs/rpc.md.
"""

from control.common.rpc.client import FanoutPublisher, Notifier, RPCClient
from control.common.rpc.envelope import PROTOCOL_VERSION, version_compatible
from control.common.rpc.errors import (
    InvalidMessage,
    MessageDeliveryFailure,
    RemoteError,
    RPCError,
    RPCTimeout,
    UnknownMethod,
    UnsupportedVersion,
)
from control.common.rpc.server import RPCServer
from control.common.rpc.transport import Backoff, Transport

__all__ = [
    "PROTOCOL_VERSION",
    "Backoff",
    "FanoutPublisher",
    "InvalidMessage",
    "MessageDeliveryFailure",
    "Notifier",
    "RPCClient",
    "RPCError",
    "RPCServer",
    "RPCTimeout",
    "RemoteError",
    "Transport",
    "UnknownMethod",
    "UnsupportedVersion",
    "version_compatible",
]
