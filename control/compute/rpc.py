"""The RPC proxies compute-api uses, built once per process (after gunicorn forks)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agents.compute.rpcapi import ComputeAPI
from control.common import rpc
from control.scheduler.rpcapi import SchedulerAPI


@dataclass
class RPCAPIs:
    scheduler: SchedulerAPI
    compute: ComputeAPI
    transport: rpc.Transport


class LazyRPC:
    """Creates the transport on first use, so that it is made in the worker process."""

    def __init__(self, url: str, scheduler_timeout: float = 60.0, exchange: str = "cirrus") -> None:
        self.url = url
        self.exchange = exchange
        self.scheduler_timeout = scheduler_timeout
        self._apis: RPCAPIs | None = None
        self._lock = threading.Lock()

    def get(self) -> RPCAPIs:
        with self._lock:
            if self._apis is None:
                transport = rpc.Transport(self.url, exchange=self.exchange)
                self._apis = RPCAPIs(
                    SchedulerAPI(transport, timeout=self.scheduler_timeout),
                    ComputeAPI(transport),
                    transport,
                )
            return self._apis

    def close(self) -> None:
        with self._lock:
            if self._apis is not None:
                self._apis.transport.close()
                self._apis = None
