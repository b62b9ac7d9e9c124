"""One client connection, used by one thread at a time (see :mod:`.transport` for the pool).

A session has two channels, both opened lazily:

- the *call* channel consumes RabbitMQ's direct reply-to pseudo-queue
  (``amq.rabbitmq.reply-to``, no-ack) and publishes requests with ``reply_to`` set to it, so a
  reply comes straight back on this channel without any reply queue being declared;
- the *cast* channel is in publisher-confirm mode: ``basic_publish`` returns only once the broker
  has taken responsibility for the message (written it to disk, for a persistent message on a
  durable queue).

Exchanges and queues are declared once per connection and remembered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

if TYPE_CHECKING:
    from control.common.rpc.transport import Transport

LOG = logging.getLogger("cirrus.rpc")

REPLY_TO = "amq.rabbitmq.reply-to"

# Errors after which a fresh connection may succeed: the broker went away, restarted, or the
# socket broke. A channel closed by the broker for a protocol reason (404, 406...) is not here.
RETRYABLE: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.NackError,
    pika.exceptions.UnroutableError,
    AMQPConnectorException,  # e.g. the AMQP handshake timed out (a hung broker)
    OSError,
)

# Connection errors no retry can fix: wrong credentials, no access to the vhost, not AMQP.
FATAL: tuple[type[BaseException], ...] = (
    pika.exceptions.AuthenticationError,
    pika.exceptions.ProbableAuthenticationError,
    pika.exceptions.ProbableAccessDeniedError,
    pika.exceptions.IncompatibleProtocolError,
)


class Session:
    def __init__(self, transport: Transport, connection: Any) -> None:
        self.transport = transport
        self.connection = connection
        self.last_used = time.monotonic()
        self._call_channel: Any = None
        self._cast_channel: Any = None
        self._declared: set[tuple[str, str]] = set()
        self._waiting_for: str | None = None
        self._reply: bytes | None = None

    @property
    def is_open(self) -> bool:
        return bool(self.connection.is_open)

    def healthy(self) -> bool:
        """Cheap check before reuse; a connection idle for a while is probed (which also lets
        pika answer heartbeats), so one the broker dropped is replaced before publishing."""
        if not self.connection.is_open:
            return False
        if time.monotonic() - self.last_used > self.transport.idle_check_after:
            try:
                self.connection.process_data_events(0)
            except RETRYABLE:
                return False
        return bool(self.connection.is_open)

    def close(self) -> None:
        with contextlib.suppress(pika.exceptions.AMQPError, OSError):
            if self.connection.is_open:
                self.connection.close()

    # -- declarations ------------------------------------------------------------------------

    def declare_exchange(self, channel: Any, name: str, kind: str) -> None:
        if ("exchange", name) not in self._declared:
            channel.exchange_declare(exchange=name, exchange_type=kind, durable=True)
            self._declared.add(("exchange", name))

    def declare_topic_queue(self, channel: Any, topic: str) -> None:
        """The durable queue a topic's servers consume, bound to the topic exchange."""
        if ("queue", topic) not in self._declared:
            exchange = self.transport.exchange
            queue = self.transport.queue_name(topic)
            self.declare_exchange(channel, exchange, "topic")
            channel.queue_declare(queue=queue, durable=True)
            channel.queue_bind(queue=queue, exchange=exchange, routing_key=topic)
            self._declared.add(("queue", topic))

    # -- call --------------------------------------------------------------------------------

    def _on_reply(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        if self._waiting_for is not None and properties.correlation_id == self._waiting_for:
            self._reply = body
        else:
            LOG.debug("dropping a late or unknown reply %s", properties.correlation_id)

    def call_channel(self) -> Any:
        if self._call_channel is None or not self._call_channel.is_open:
            channel = self.connection.channel()
            self.declare_exchange(channel, self.transport.exchange, "topic")
            channel.basic_consume(queue=REPLY_TO, on_message_callback=self._on_reply, auto_ack=True)
            self._call_channel = channel
        return self._call_channel

    def call(self, topic: str, body: bytes, msg_id: str, deadline: float) -> bytes | None:
        """Publish a request and wait for its reply until ``deadline``; None on timeout."""
        channel = self.call_channel()
        remaining = deadline - time.monotonic()
        properties = pika.BasicProperties(
            content_type="application/json",
            correlation_id=msg_id,
            message_id=msg_id,
            reply_to=REPLY_TO,
            delivery_mode=pika.DeliveryMode.Transient,
            # A request nobody picks up in time is dropped by the broker, not served late.
            expiration=str(max(1, int(remaining * 1000))),
        )
        self._reply, self._waiting_for = None, msg_id
        try:
            channel.basic_publish(self.transport.exchange, topic, body, properties)
            while self._reply is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.connection.process_data_events(time_limit=remaining)
            return self._reply
        finally:
            self._waiting_for = None
            self.last_used = time.monotonic()

    # -- cast / fanout -----------------------------------------------------------------------

    def cast_channel(self) -> Any:
        if self._cast_channel is None or not self._cast_channel.is_open:
            channel = self.connection.channel()
            channel.confirm_delivery()
            self._cast_channel = channel
        return self._cast_channel

    def publish_confirmed(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, *, topic_queue: bool
    ) -> None:
        """Publish and return once the broker confirmed. With ``topic_queue`` the durable topic
        queue is declared first and the message is mandatory (an unroutable one raises)."""
        channel = self.cast_channel()
        if topic_queue:
            self.declare_topic_queue(channel, routing_key)
        else:
            self.declare_exchange(channel, exchange, "fanout")
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=topic_queue)
        finally:
            self.last_used = time.monotonic()
