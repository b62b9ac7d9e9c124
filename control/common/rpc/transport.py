"""Connection parameters, reconnect back-off, and the pool of client sessions.

pika's ``BlockingConnection`` is not thread-safe. Clients therefore never share a connection
between threads at the same time: each call or cast checks a :class:`~.session.Session` (one
connection with a call channel and a confirm-mode cast channel) out of the transport's pool, uses
it, and checks it back in. Concurrent callers get separate connections; sequential callers reuse
one, so a call costs one publish and one reply, not a connection set-up.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pika

from control.common.rpc.errors import RPCError
from control.common.rpc.session import Session

LOG = logging.getLogger("cirrus.rpc")

MAX_IDLE_SESSIONS = 16



DEFAULT_EXCHANGE = "cirrus"

class Backoff:
    """Exponential back-off, capped, with "equal jitter": half fixed, half random."""

    def __init__(self, initial: float = 0.1, cap: float = 10.0) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return float(delay / 2 + random.uniform(0, delay / 2))

    def reset(self) -> None:
        self.attempt = 0


class Transport:
    """Where the broker is and how to reach it; owns the pool of client connections.

    ``url`` is an AMQP URL (``amqp://user:pass@host:port/vhost``; pika's query options such as
    ``?heartbeat=30`` apply). ``exchange`` is the topic exchange every topic queue is bound to.
    One Transport may be shared by any number of clients and threads; create it after forking.
    """

    def __init__(
        self, url: str, exchange: str = DEFAULT_EXCHANGE, connect_timeout: float = 5.0
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.connect_timeout = connect_timeout
        parts = urlsplit(url)
        self.display_url = f"{parts.scheme}://{parts.hostname}:{parts.port or 5672}{parts.path}"
        self._lock = threading.Lock()
        self._idle: list[Session] = []
        self._pid = os.getpid()
        self._closed = False
        heartbeat = self.parameters(connect_timeout).heartbeat  # validates the URL now
        # A pooled connection idle for longer than this is probed before reuse, so one the broker
        # dropped for missed heartbeats is replaced quietly instead of failing a publish.
        self.idle_check_after = min(10.0, heartbeat / 2) if heartbeat else 10.0

    def queue_name(self, topic: str) -> str:
        """The durable queue serving ``topic``: the topic itself on the default exchange (the
        queue names operators see: ``scheduler``, ``compute.host1``), prefixed by the exchange on
        any other, so that two deployments sharing a broker never consume each other's queue."""
        return topic if self.exchange == DEFAULT_EXCHANGE else f"{self.exchange}.{topic}"

    def fanout_exchange(self, name: str) -> str:
        return f"{self.exchange}.fanout.{name}"

    def parameters(self, timeout: float | None = None) -> pika.URLParameters:
        params = pika.URLParameters(self.url)
        params.connection_attempts = 1  # retries are ours, with back-off
        params.socket_timeout = timeout or self.connect_timeout
        params.stack_timeout = (timeout or self.connect_timeout) + 1
        if "blocked_connection_timeout=" not in self.url:
            # A broker in a resource alarm blocks publishers; fail instead of hanging forever.
            params.blocked_connection_timeout = 60
        if "heartbeat=" not in self.url:
            params.heartbeat = 30
        params.client_properties = {"connection_name": f"cirrus pid {os.getpid()}"}
        return params

    def connect(self, timeout: float | None = None) -> Any:
        """Open one ``pika.BlockingConnection`` (one attempt). Raises a RETRYABLE error."""
        return pika.BlockingConnection(self.parameters(timeout))

    # -- client session pool -----------------------------------------------------------------

    @contextmanager
    def session(self, timeout: float | None = None) -> Iterator[Session]:
        """Check a session out for the calling thread. A session whose use raised is closed,
        not returned, so the next use reconnects."""
        session = self._checkout(timeout)
        try:
            yield session
        except BaseException:
            session.close()
            raise
        self._checkin(session)

    def _checkout(self, timeout: float | None) -> Session:
        while True:
            with self._lock:
                if self._closed:
                    raise RPCError(f"{self!r} is closed")
                if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
                    self._idle, self._pid = [], os.getpid()
                session = self._idle.pop() if self._idle else None
            if session is None:
                return Session(self, self.connect(timeout))
            if session.healthy():
                return session
            session.close()

    def _checkin(self, session: Session) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_SESSIONS and session.is_open:
                session.last_used = time.monotonic()
                self._idle.append(session)
                return
        session.close()

    def close(self) -> None:
        """Close the pooled client connections. Servers are stopped separately."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()

    def __repr__(self) -> str:
        return f"<Transport {self.display_url} exchange={self.exchange!r}>"
