"""The sending side: :class:`RPCClient` (call and cast to a topic) and :class:`FanoutPublisher`.

Both are cheap, immutable-ish objects over a shared :class:`~.transport.Transport`; they are
safe to use from several threads at once (each operation checks its own connection out of the
transport's pool). After a lost connection they reconnect with capped, jittered exponential
back-off within the operation's timeout.

Delivery guarantees:

- ``call`` publishes a transient request that expires after the timeout and waits for the reply.
  If the connection drops while waiting, the request is published again (same ``msg_id``) on a
  new connection, so a call may reach a server twice: handlers must be idempotent.
- ``cast`` publishes a persistent message to the durable topic queue and returns only once the
  broker confirmed it. Unconfirmed messages are published again (same ``msg_id``); servers drop
  exact redeliveries of casts they already completed.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pika
import pika.exceptions

from control.common.context import RequestContext
from control.common.rpc import envelope
from control.common.rpc.errors import MessageDeliveryFailure, RPCTimeout
from control.common.rpc.session import FATAL, RETRYABLE
from control.common.rpc.transport import Backoff, Transport

LOG = logging.getLogger("cirrus.rpc")


class RPCClient:
    """Calls and casts to one topic (a queue name such as ``scheduler`` or ``compute.host1``)
    at one API version."""

    def __init__(
        self, transport: Transport, topic: str, version: str = "1.0", timeout: float = 30.0
    ) -> None:
        envelope.parse_version(version)
        self.transport = transport
        self.topic = topic
        self.version = version
        self.timeout = timeout

    def prepare(
        self, topic: str | None = None, version: str | None = None, timeout: float | None = None
    ) -> RPCClient:
        """A copy with some of topic, version and timeout replaced (the transport is shared)."""
        return RPCClient(
            self.transport,
            topic if topic is not None else self.topic,
            version if version is not None else self.version,
            timeout if timeout is not None else self.timeout,
        )

    def call(self, ctxt: RequestContext, method: str, **kwargs: Any) -> Any:
        """Invoke ``method`` on a server of the topic and return its result.

        Raises :class:`RemoteError` if the endpoint raised, :class:`RPCTimeout` if no reply came
        within ``timeout`` seconds (also when the broker stayed unreachable that long).
        """
        msg_id = uuid.uuid4().hex
        body = envelope.encode_request(ctxt, method, kwargs, self.version, msg_id)
        deadline = time.monotonic() + self.timeout
        backoff = Backoff()
        last_error: BaseException | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                detail = None
                if last_error is not None:
                    detail = f"broker {self.transport.display_url}: {last_error!r}"
                LOG.warning(
                    "call %s to topic %s timed out after %gs [%s]",
                    method,
                    self.topic,
                    self.timeout,
                    ctxt.request_id,
                )
                raise RPCTimeout(self.topic, method, self.timeout, detail) from last_error
            try:
                with self.transport.session(
                    max(0.1, min(remaining, self.transport.connect_timeout))
                ) as s:
                    reply = s.call(self.topic, body, msg_id, deadline)
            except FATAL as exc:
                raise MessageDeliveryFailure(
                    f"call {method} to topic '{self.topic}': broker "
                    f"{self.transport.display_url} refused the connection: {exc!r}"
                ) from exc
            except RETRYABLE as exc:
                last_error = exc
                delay = min(backoff.next(), max(0.0, deadline - time.monotonic()))
                LOG.warning(
                    "call %s to topic %s: broker connection failed (%r), retrying in %.2fs [%s]",
                    method,
                    self.topic,
                    exc,
                    delay,
                    ctxt.request_id,
                )
                time.sleep(delay)
                continue
            except pika.exceptions.AMQPError as exc:
                raise MessageDeliveryFailure(
                    f"call {method} to topic '{self.topic}' refused by the broker: {exc!r}"
                ) from exc
            if reply is None:
                continue  # the deadline passed: the top of the loop raises RPCTimeout
            return envelope.decode_reply(reply)

    def cast(self, ctxt: RequestContext, method: str, **kwargs: Any) -> None:
        """Send ``method`` to the topic without waiting for a result. Returns once the broker
        confirmed the persistent message; raises :class:`MessageDeliveryFailure` if it could not
        within ``timeout`` seconds."""
        msg_id = uuid.uuid4().hex
        body = envelope.encode_request(ctxt, method, kwargs, self.version, msg_id)
        properties = pika.BasicProperties(
            content_type=envelope.CONTENT_TYPE,
            message_id=msg_id,
            delivery_mode=pika.DeliveryMode.Persistent,
            timestamp=int(time.time()),
        )
        publish_confirmed(
            self.transport,
            self.transport.exchange,
            self.topic,
            body,
            properties,
            topic_queue=True,
            timeout=self.timeout,
            what=f"cast {method} to topic '{self.topic}' [{ctxt.request_id}]",
        )

    def __repr__(self) -> str:
        return f"<RPCClient topic={self.topic!r} version={self.version} {self.transport!r}>"


class FanoutPublisher:
    """Broadcasts to every server started with ``fanout=name`` (e.g. security-group changes).

    A broadcast is confirmed by the broker but not persisted: each server's fanout queue exists
    only while that server is connected, so a server that was away must resync on reconnect.
    """

    def __init__(
        self, transport: Transport, name: str, version: str = "1.0", timeout: float = 30.0
    ) -> None:
        envelope.parse_version(version)
        self.transport = transport
        self.name = name
        self.version = version
        self.timeout = timeout

    def publish(self, ctxt: RequestContext, method: str, **kwargs: Any) -> None:
        msg_id = uuid.uuid4().hex
        body = envelope.encode_request(ctxt, method, kwargs, self.version, msg_id)
        properties = pika.BasicProperties(
            content_type=envelope.CONTENT_TYPE,
            message_id=msg_id,
            delivery_mode=pika.DeliveryMode.Transient,
            timestamp=int(time.time()),
        )
        publish_confirmed(
            self.transport,
            self.transport.fanout_exchange(self.name),
            "",
            body,
            properties,
            topic_queue=False,
            timeout=self.timeout,
            what=f"fanout {method} to '{self.name}' [{ctxt.request_id}]",
        )


Notifier = FanoutPublisher


def publish_confirmed(
    transport: Transport,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: Any,
    *,
    topic_queue: bool,
    timeout: float,
    what: str,
) -> None:
    """Publish until the broker confirms, reconnecting with back-off, for at most ``timeout``."""
    deadline = time.monotonic() + timeout
    backoff = Backoff()
    while True:
        remaining = deadline - time.monotonic()
        try:
            with transport.session(max(0.1, min(remaining, transport.connect_timeout))) as session:
                session.publish_confirmed(
                    exchange, routing_key, body, properties, topic_queue=topic_queue
                )
            return
        except FATAL as exc:
            raise MessageDeliveryFailure(
                f"{what}: broker {transport.display_url} refused the connection: {exc!r}"
            ) from exc
        except RETRYABLE as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MessageDeliveryFailure(
                    f"{what}: not confirmed by broker {transport.display_url} "
                    f"within {timeout:g}s: {exc!r}"
                ) from exc
            delay = min(backoff.next(), remaining)  # the last attempt is made at the deadline
            LOG.warning("%s: not confirmed (%r), retrying in %.2fs", what, exc, delay)
            time.sleep(delay)
        except pika.exceptions.AMQPError as exc:
            raise MessageDeliveryFailure(f"{what}: refused by the broker: {exc!r}") from exc
