"""The RPC layer against a real, private RabbitMQ broker (tests/fixtures/rabbitmq.py). No mocks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pika
import pytest

from control.common import rpc
from control.common.context import RequestContext
from tests.fixtures.rabbitmq import RabbitMQBroker

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- helpers ---------------------------------------------------------------------------------


def make_context(**overrides: Any) -> RequestContext:
    values: dict[str, Any] = {
        "user_id": "u-" + uuid.uuid4().hex[:8],
        "user_name": "alice",
        "project_id": "p-" + uuid.uuid4().hex[:8],
        "project_name": "demo",
        "roles": ["member", "reader"],
    }
    values.update(overrides)
    return RequestContext(**values)


def unique(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}"


class Recorder:
    """An endpoint that records what it was sent; tests wait on it."""

    target_version = "1.3"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.calls: list[tuple[RequestContext, dict[str, Any]]] = []

    def _add(self, ctxt: RequestContext, kwargs: dict[str, Any]) -> None:
        with self.cond:
            self.calls.append((ctxt, kwargs))
            self.cond.notify_all()

    def record(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add(ctxt, kwargs)

    def work(self, ctxt: RequestContext, job: str) -> None:
        self._add(ctxt, {"job": job})

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[RequestContext, dict]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.calls) >= count, timeout)
            assert ok, f"only {len(self.calls)} of {count} messages processed in {timeout}s"
            return list(self.calls)


class Echo:
    target_version = "1.3"

    def echo(self, ctxt: RequestContext, **kwargs: Any) -> dict[str, Any]:
        return {"context": ctxt.to_dict(), "kwargs": kwargs}

    def double(self, ctxt: RequestContext, x: int) -> dict[str, Any]:
        return {"x": x, "twice": 2 * x, "request_id": ctxt.request_id}


class ExpectedFailure(Exception):
    rpc_expected = True


class Failing:
    def fail(self, ctxt: RequestContext, reason: str) -> None:
        raise ValueError(f"bad input: {reason}")

    def fail_expected(self, ctxt: RequestContext) -> None:
        raise ExpectedFailure("no such thing")


def queue_depth(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


@pytest.fixture
def transport(rabbitmq: RabbitMQBroker) -> Iterator[rpc.Transport]:
    transport = rpc.Transport(rabbitmq.url, connect_timeout=5.0)
    yield transport
    transport.close()


ServerFactory = Callable[..., rpc.RPCServer]


@pytest.fixture
def start_server(transport: rpc.Transport) -> Iterator[ServerFactory]:
    servers: list[rpc.RPCServer] = []

    def start(topic: str, endpoints: list[object], **kwargs: Any) -> rpc.RPCServer:
        server = rpc.RPCServer(transport, topic, endpoints, **kwargs)
        server.start()
        assert server.wait_ready(10), f"server for {topic} did not start consuming"
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        server.wait(30)


# -- tests -----------------------------------------------------------------------------------


def test_call_returns_result_with_kwargs_and_context(
    transport: rpc.Transport, start_server: ServerFactory
) -> None:
    topic = unique("echo")
    start_server(topic, [Echo()])
    client = rpc.RPCClient(transport, topic, timeout=10)
    ctxt = make_context(roles=["admin", "member"], is_admin_project=True)
    kwargs = {"name": "vm-ü", "flavor": {"vcpus": 2, "ram": 512}, "tags": ["a", "b"], "n": None}

    result = client.call(ctxt, "echo", **kwargs)

    assert result["kwargs"] == kwargs
    assert RequestContext.from_dict(result["context"]) == ctxt
    assert result["context"]["request_id"] == ctxt.request_id
    assert result["context"]["roles"] == ["admin", "member"]


def test_cast_is_delivered_and_processed(
    transport: rpc.Transport, start_server: ServerFactory, rabbitmq: RabbitMQBroker
) -> None:
    topic = unique("cast")
    recorder = Recorder()
    start_server(topic, [recorder])
    ctxt = make_context()

    rpc.RPCClient(transport, topic).cast(ctxt, "record", key="k1", value=[1, 2])

    [(got_ctxt, got_kwargs)] = recorder.wait_for(1)
    assert got_kwargs == {"key": "k1", "value": [1, 2]}
    assert got_ctxt.request_id == ctxt.request_id
    assert got_ctxt.project_id == ctxt.project_id
    deadline = time.monotonic() + 5
    while queue_depth(rabbitmq.url, topic) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_depth(rabbitmq.url, topic) == 0


def test_unknown_method_and_incompatible_version_are_answered(
    transport: rpc.Transport,
    start_server: ServerFactory,
    rabbitmq: RabbitMQBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = unique("versions")
    recorder = Recorder()
    start_server(topic, [Echo(), recorder])  # both endpoints at target_version 1.3
    client = rpc.RPCClient(transport, topic, version="1.3", timeout=10)
    ctxt = make_context()

    with pytest.raises(rpc.RemoteError) as unknown:
        client.call(ctxt, "no_such_method")
    assert unknown.value.exc_type == "UnknownMethod"
    assert "no_such_method" in str(unknown.value)

    with pytest.raises(rpc.RemoteError) as private:
        client.call(ctxt, "_add")
    assert private.value.exc_type == "UnknownMethod"

    with pytest.raises(rpc.RemoteError) as newer_minor:
        client.prepare(version="1.4").call(ctxt, "echo")
    assert newer_minor.value.exc_type == "UnsupportedVersion"
    assert "1.4" in newer_minor.value.message and "1.3" in newer_minor.value.message

    with pytest.raises(rpc.RemoteError) as other_major:
        client.prepare(version="2.0").call(ctxt, "echo")
    assert other_major.value.exc_type == "UnsupportedVersion"
    assert "2.0" in other_major.value.message and "1.3" in other_major.value.message

    assert client.prepare(version="1.1").call(ctxt, "echo", a=1)["kwargs"] == {"a": 1}

    # An unknown method in a cast is logged and acknowledged, not redelivered forever.
    with caplog.at_level(logging.WARNING, logger="cirrus.rpc"):
        client.cast(ctxt, "vanished_method", x=1)
        client.cast(ctxt, "record", x=2)
        recorder.wait_for(1)
        deadline = time.monotonic() + 5
        while queue_depth(rabbitmq.url, topic) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert queue_depth(rabbitmq.url, topic) == 0
    assert any("vanished_method" in r.getMessage() for r in caplog.records)


def test_endpoint_exception_becomes_remote_error(
    transport: rpc.Transport, start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique("failing")
    start_server(topic, [Failing()])
    client = rpc.RPCClient(transport, topic, timeout=10)

    with caplog.at_level(logging.INFO, logger="cirrus.rpc"):
        with pytest.raises(rpc.RemoteError) as err:
            client.call(make_context(), "fail", reason="disk on fire")
        with pytest.raises(rpc.RemoteError) as expected:
            client.call(make_context(), "fail_expected")

    assert err.value.exc_type == "ValueError"
    assert err.value.message == "bad input: disk on fire"
    assert str(err.value) == "ValueError: bad input: disk on fire"  # no traceback for users
    assert err.value.remote_traceback and "ValueError" in err.value.remote_traceback
    assert expected.value.exc_type == "ExpectedFailure"
    records = [r for r in caplog.records if r.name == "cirrus.rpc"]
    assert any(r.exc_info and "fail" in r.getMessage() for r in records)
    assert not any(r.exc_info and "fail_expected" in r.getMessage() for r in records)


def test_call_to_unconsumed_topic_times_out(transport: rpc.Transport) -> None:
    topic = unique("nobody-home")
    client = rpc.RPCClient(transport, topic, timeout=1.0)

    started = time.monotonic()
    with pytest.raises(rpc.RPCTimeout) as err:
        client.call(make_context(), "ping")
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 3.0
    assert f"'{topic}'" in str(err.value) and "'ping'" in str(err.value)
    assert "within 1s" in str(err.value)


def test_fanout_reaches_servers_on_different_topics(
    transport: rpc.Transport, start_server: ServerFactory
) -> None:
    fanout = unique("secgroups")
    first, second, bystander = Recorder(), Recorder(), Recorder()
    start_server(unique("agent-a"), [first], fanout=fanout)
    start_server(unique("agent-b"), [second], fanout=fanout)
    start_server(unique("agent-c"), [bystander])  # not on the fanout
    ctxt = make_context()

    rpc.FanoutPublisher(transport, fanout).publish(ctxt, "record", group="sg-1", rev=7)

    for recorder in (first, second):
        [(got_ctxt, got_kwargs)] = recorder.wait_for(1)
        assert got_kwargs == {"group": "sg-1", "rev": 7}
        assert got_ctxt.request_id == ctxt.request_id
    time.sleep(0.2)
    assert bystander.calls == []


def test_concurrent_calls_through_one_client(
    transport: rpc.Transport, start_server: ServerFactory
) -> None:
    topic = unique("concurrent")
    start_server(topic, [Echo()], executor_threads=4)
    client = rpc.RPCClient(transport, topic, timeout=15)

    def worker(base: int) -> list[tuple[int, dict[str, Any], str]]:
        out = []
        for i in range(25):
            ctxt = make_context()
            out.append((base + i, client.call(ctxt, "double", x=base + i), ctxt.request_id))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for chunk in pool.map(worker, range(0, 800, 100)) for r in chunk]

    assert len(results) == 200
    for x, reply, request_id in results:
        assert reply == {"x": x, "twice": 2 * x, "request_id": request_id}


def test_killed_consumer_message_is_redelivered(
    transport: rpc.Transport,
    start_server: ServerFactory,
    rabbitmq: RabbitMQBroker,
    tmp_path: Path,
) -> None:
    topic = unique("redeliver")
    marker = tmp_path / "marker"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "CIRRUS_TEST_AMQP_URL": rabbitmq.url,
        "CIRRUS_TEST_TOPIC": topic,
        "CIRRUS_TEST_MARKER": str(marker),
    }
    ctxt = make_context()
    rpc.RPCClient(transport, topic).cast(ctxt, "work", job="job-1")  # declares the queue

    with (tmp_path / "consumer.log").open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests/integration/rpc_blocking_server.py")],
            env=env,
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert proc.poll() is None, (tmp_path / "consumer.log").read_text()
            assert time.monotonic() < deadline, "the subprocess never took the message"
            time.sleep(0.05)
        assert marker.read_text() == f"job-1 {ctxt.request_id}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    recorder = Recorder()
    start_server(topic, [recorder])
    [(got_ctxt, got_kwargs)] = recorder.wait_for(1, timeout=15)
    assert got_kwargs == {"job": "job-1"}
    assert got_ctxt.request_id == ctxt.request_id


def test_broker_restart_loses_no_confirmed_cast(
    rabbitmq: RabbitMQBroker, transport: rpc.Transport, start_server: ServerFactory
) -> None:
    topic = unique("durable")
    ping_topic = unique("ping")
    start_server(ping_topic, [Echo()])  # stays up across the restart: must reconnect
    client = rpc.RPCClient(transport, topic, timeout=20)
    before = [f"before-{i}" for i in range(20)]
    after = [f"after-{i}" for i in range(20)]

    for job in before:
        client.cast(make_context(), "work", job=job)
    rabbitmq.stop()
    rabbitmq.start()
    for job in after:
        client.cast(make_context(), "work", job=job)  # same client: reconnects

    recorder = Recorder()
    start_server(topic, [recorder])
    recorder.wait_for(len(before) + len(after), timeout=20)
    time.sleep(0.3)  # a duplicate would arrive now
    jobs = [kwargs["job"] for _, kwargs in recorder.calls]
    assert sorted(jobs) == sorted(before + after)  # every confirmed cast, exactly once

    # The server that was consuming during the restart re-declared its queue and resumes.
    pong = rpc.RPCClient(transport, ping_topic, timeout=20).call(make_context(), "echo", n=1)
    assert pong["kwargs"] == {"n": 1}
