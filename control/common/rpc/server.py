"""The receiving side: :class:`RPCServer` consumes a topic queue and dispatches to endpoints.

Threads: one I/O thread owns the pika connection (pika connections are not thread-safe) and
runs ``process_data_events``; messages are handed to a pool of ``executor_threads`` workers,
which run the endpoint and then ask the I/O thread (``add_callback_threadsafe``) to publish the
reply and acknowledge. The broker's prefetch equals ``executor_threads``, so a server holds at
most one unacknowledged message per worker.

Acknowledgement: after the endpoint returned or raised, and after the reply of a call was
published. A server that dies mid-message leaves it unacknowledged and the broker redelivers it
(``redelivered`` flag) to another consumer. Handlers must therefore be idempotent; they get the
request id as ``ctxt.request_id``. Each server also remembers the ``msg_id`` of the last
:data:`COMPLETED_CAST_MEMORY` casts it completed and acknowledges exact redeliveries of those
without running them again (this covers a cast re-published by a client that lost the confirm,
or an ack lost with the connection; it does not span processes).

A failing cast is logged and acknowledged, never requeued (it would fail again, forever).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pika
import pika.exceptions

from control.common import log
from control.common.rpc import envelope
from control.common.rpc.dispatcher import Dispatcher
from control.common.rpc.errors import InvalidMessage, UnknownMethod, UnsupportedVersion
from control.common.rpc.session import FATAL, RETRYABLE
from control.common.rpc.transport import Backoff, Transport

LOG = logging.getLogger("cirrus.rpc")

COMPLETED_CAST_MEMORY = 4096
STOP_GRACE = 30.0  # seconds stop() lets in-flight messages finish before closing the connection


@dataclass
class _Consumer:
    """The state of one connection; replaced on reconnect (delivery tags die with it)."""

    connection: Any
    channel: Any
    inflight: int = 0


class RPCServer:
    """Serves ``topic`` (a durable queue bound to the transport's topic exchange with that
    routing key) and, with ``fanout=name``, broadcasts of :class:`FanoutPublisher` ``name``
    (through a queue of its own that lives as long as the connection)."""

    def __init__(
        self,
        transport: Transport,
        topic: str,
        endpoints: Sequence[object],
        version: str = "1.0",
        executor_threads: int = 1,
        fanout: str | None = None,
    ) -> None:
        if executor_threads < 1:
            raise ValueError("executor_threads must be at least 1")
        self.transport = transport
        self.topic = topic
        self.version = version
        self.executor_threads = executor_threads
        self.fanout = fanout
        self.dispatcher = Dispatcher(topic, endpoints, version)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._consumer: _Consumer | None = None
        self._completed: OrderedDict[str, None] = OrderedDict()
        self._completed_lock = threading.Lock()

    # -- life cycle --------------------------------------------------------------------------

    def start(self, ready_timeout: float | None = None) -> None:
        """Start consuming in a background thread. Waits up to ``ready_timeout`` (default: the
        transport's connect timeout) until the queues are declared and consumed; if the broker
        is unreachable it logs a warning and keeps trying in the background."""
        if self._thread is not None:
            raise RuntimeError(f"RPC server for topic '{self.topic}' was already started")
        self._executor = ThreadPoolExecutor(
            self.executor_threads, thread_name_prefix=f"rpc-{self.topic}"
        )
        self._thread = threading.Thread(
            target=self._run, name=f"rpc-server-{self.topic}", daemon=True
        )
        self._thread.start()
        timeout = self.transport.connect_timeout if ready_timeout is None else ready_timeout
        if not self._ready.wait(timeout):
            LOG.warning(
                "RPC server for topic %s is not consuming yet; still trying in the background",
                self.topic,
            )

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the server consumes (again, after a reconnect)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        """Stop consuming; messages in progress finish and are acknowledged (see wait())."""
        self._stopping.set()
        consumer = self._consumer
        if consumer is not None:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                consumer.connection.add_callback_threadsafe(lambda: None)  # wake the I/O loop

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the I/O thread finished (in-flight messages done or STOP_GRACE over)."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> RPCServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.wait()

    # -- I/O thread --------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(initial=0.2, cap=5.0)
        while not self._stopping.is_set():
            connection: Any = None
            try:
                connection = self.transport.connect()
                self._serve(connection, backoff)
            except FATAL as exc:
                LOG.error("RPC server for topic %s cannot connect: %r", self.topic, exc)
            except RETRYABLE as exc:
                LOG.warning("RPC server for topic %s lost the broker: %r", self.topic, exc)
            except pika.exceptions.AMQPError as exc:
                LOG.error("RPC server for topic %s: broker refused: %r", self.topic, exc)
            except Exception:
                LOG.exception("RPC server for topic %s: unexpected error", self.topic)
            finally:
                self._ready.clear()
                self._consumer = None
                if connection is not None and connection.is_open:
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        connection.close()
            if not self._stopping.is_set():
                delay = backoff.next()
                LOG.info("RPC server for topic %s reconnecting in %.2fs", self.topic, delay)
                self._stopping.wait(delay)
        LOG.info("RPC server for topic %s stopped", self.topic)

    def _serve(self, connection: Any, backoff: Backoff) -> None:
        exchange = self.transport.exchange
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.executor_threads)
        channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        topic_queue = self.transport.queue_name(self.topic)
        channel.queue_declare(queue=topic_queue, durable=True)
        channel.queue_bind(queue=topic_queue, exchange=exchange, routing_key=self.topic)
        queues = [topic_queue]
        if self.fanout:
            fanout_exchange = self.transport.fanout_exchange(self.fanout)
            channel.exchange_declare(exchange=fanout_exchange, exchange_type="fanout", durable=True)
            queue = f"{fanout_exchange}.{self.topic}.{uuid.uuid4().hex[:8]}"
            channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
            channel.queue_bind(queue=queue, exchange=fanout_exchange)
            queues.append(queue)
        consumer = _Consumer(connection, channel)
        on_message = functools.partial(self._on_message, consumer)
        tags = [channel.basic_consume(queue=q, on_message_callback=on_message) for q in queues]
        self._consumer = consumer
        self._ready.set()
        backoff.reset()
        LOG.info("RPC server consuming %s via %r", ", ".join(queues), self.transport)

        while not self._stopping.is_set():
            connection.process_data_events(time_limit=1.0)

        for tag in tags:
            channel.basic_cancel(tag)
        deadline = time.monotonic() + STOP_GRACE
        while consumer.inflight and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.1)
        if consumer.inflight:
            LOG.warning(
                "RPC server for topic %s stopping with %d message(s) unfinished; the broker "
                "will redeliver them",
                self.topic,
                consumer.inflight,
            )

    def _on_message(
        self, consumer: _Consumer, _channel: Any, method: Any, properties: Any, body: bytes
    ) -> None:
        assert self._executor is not None
        consumer.inflight += 1
        self._executor.submit(
            self._handle, consumer, method.delivery_tag, method.redelivered, properties, body
        )

    def _finish(
        self,
        consumer: _Consumer,
        delivery_tag: int,
        reply_to: str | None,
        correlation_id: str | None,
        reply: bytes | None,
    ) -> None:
        """Runs in the I/O thread: publish the reply (calls), then acknowledge."""
        consumer.inflight -= 1
        channel = consumer.channel
        if not channel.is_open:
            return
        try:
            if reply_to and reply is not None:
                properties = pika.BasicProperties(
                    content_type=envelope.CONTENT_TYPE, correlation_id=correlation_id
                )
                channel.basic_publish("", reply_to, reply, properties)
            channel.basic_ack(delivery_tag=delivery_tag)
        except (pika.exceptions.AMQPError, OSError) as exc:
            LOG.warning(
                "topic %s: could not reply/ack (%r); it will be redelivered", self.topic, exc
            )

    # -- worker threads ----------------------------------------------------------------------

    def _handle(
        self,
        consumer: _Consumer,
        delivery_tag: int,
        redelivered: bool,
        properties: Any,
        body: bytes,
    ) -> None:
        reply_to: str | None = properties.reply_to
        correlation_id: str | None = properties.correlation_id or properties.message_id
        reply: bytes | None = None
        try:
            try:
                request = envelope.decode_request(body)
            except InvalidMessage as exc:
                LOG.error("topic %s: dropping an invalid message: %s", self.topic, exc)
                if reply_to:
                    reply = envelope.encode_failure(correlation_id or "", exc)
            else:
                token = log.request_id_var.set(request.request_id)
                try:
                    reply = self._process(request, bool(reply_to), redelivered)
                finally:
                    log.request_id_var.reset(token)
        except Exception:
            LOG.exception("topic %s: unexpected error handling a message", self.topic)
        finally:
            callback = functools.partial(
                self._finish, consumer, delivery_tag, reply_to, correlation_id, reply
            )
            try:
                consumer.connection.add_callback_threadsafe(callback)
            except (pika.exceptions.AMQPError, OSError):
                LOG.warning(
                    "topic %s: connection lost before the ack; the broker will redeliver",
                    self.topic,
                )

    def _process(self, request: envelope.Request, is_call: bool, redelivered: bool) -> bytes | None:
        kind = "call" if is_call else "cast"
        if not is_call and self._already_completed(request.msg_id):
            LOG.info(
                "topic %s: cast %s msg_id=%s was already completed, dropping the redelivery [%s]",
                self.topic,
                request.method,
                request.msg_id,
                request.request_id,
            )
            return None
        if redelivered:
            LOG.info(
                "topic %s: %s %s msg_id=%s is a redelivery [%s]",
                self.topic,
                kind,
                request.method,
                request.msg_id,
                request.request_id,
            )
        started = time.monotonic()
        try:
            result = self.dispatcher.dispatch(request)
        except Exception as exc:
            if isinstance(exc, UnknownMethod | UnsupportedVersion):
                LOG.warning(
                    "topic %s: %s rejected: %s [%s]", self.topic, kind, exc, request.request_id
                )
            elif getattr(exc, "rpc_expected", False):
                LOG.info(
                    "topic %s: %s %s raised %s: %s [%s]",
                    self.topic,
                    kind,
                    request.method,
                    type(exc).__name__,
                    exc,
                    request.request_id,
                )
            else:
                LOG.exception(
                    "topic %s: %s %s failed [%s]",
                    self.topic,
                    kind,
                    request.method,
                    request.request_id,
                )
            if not is_call:
                self._remember_completed(request.msg_id)
            return envelope.encode_failure(request.msg_id, exc) if is_call else None
        LOG.debug(
            "topic %s: %s %s done in %.1f ms [%s]",
            self.topic,
            kind,
            request.method,
            (time.monotonic() - started) * 1000,
            request.request_id,
        )
        if not is_call:
            self._remember_completed(request.msg_id)
            return None
        return envelope.encode_result(request.msg_id, result)

    def _already_completed(self, msg_id: str) -> bool:
        with self._completed_lock:
            return msg_id in self._completed

    def _remember_completed(self, msg_id: str) -> None:
        with self._completed_lock:
            self._completed[msg_id] = None
            while len(self._completed) > COMPLETED_CAST_MEMORY:
                self._completed.popitem(last=False)

    def __repr__(self) -> str:
        return f"<RPCServer topic={self.topic!r} version={self.version} {self.transport!r}>"
