"""The block storage RPC contract against the private RabbitMQ and MariaDB: the agents' calls to
the ``volume`` topic (report_state, volume_update, volume_deleted, snapshot_update,
snapshot_deleted, get_host_volumes) served by :class:`VolumeEndpoint`, and the API's client of
``volume.<host>`` (:class:`VolumeAgentAPI`: casts and calls reaching a fake agent, a timeout when
no agent listens)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from control.common import migrate, rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.volume import models
from control.volume.agentapi import VolumeAgentAPI
from control.volume.rpc import TOPIC, VolumeEndpoint
from tests.fixtures.recording import Recorder

pytestmark = [pytest.mark.rabbitmq, pytest.mark.mariadb]


class FakeAgent(Recorder):
    """The agent's side of ``volume.<host>``: records what it is sent."""

    def create_volume(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("create_volume", kwargs)

    def delete_volume(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("delete_volume", kwargs)

    def extend_volume(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("extend_volume", kwargs)

    def create_snapshot(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("create_snapshot", kwargs)

    def delete_snapshot(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("delete_snapshot", kwargs)

    def initialize_connection(self, ctxt: RequestContext, **kwargs: Any) -> dict[str, Any]:
        self._add("initialize_connection", kwargs)
        return {
            "driver_volume_type": "nbd",
            "data": {"host": "127.0.0.1", "port": 10809, "export_name": kwargs["volume_id"]},
        }

    def terminate_connection(self, ctxt: RequestContext, **kwargs: Any) -> None:
        self._add("terminate_connection", kwargs)


class Env:
    def __init__(self, database: Database, transport: rpc.Transport, host: str) -> None:
        self.database = database
        self.client = rpc.RPCClient(transport, TOPIC, timeout=10)
        self.agent_api = VolumeAgentAPI(transport, timeout=10)
        self.host = host
        self.agent = FakeAgent()

    def volume(self, host: str | None = None, size: int = 1) -> str:
        ident = str(uuid.uuid4())
        with self.database.transaction() as sess:
            sess.add(
                models.Volume(
                    id=ident,
                    project_id="p1",
                    size=size,
                    status="creating",
                    host=host or self.host,
                    volume_type_id=models.DEFAULT_TYPE_ID,
                )
            )
        return ident

    def get(self, volume_id: str) -> models.Volume | None:
        with self.database.transaction() as sess:
            return sess.get(models.Volume, volume_id)


@pytest.fixture(scope="module")
def env(mariadb: Any, rabbitmq: Any) -> Iterator[Env]:
    url = mariadb.create_database("volume")
    migrate.upgrade("volume", url)
    database = Database(url)
    exchange = f"cirrus-vol-{secrets.token_hex(4)}"
    transport = rpc.Transport(rabbitmq.url, exchange=exchange)
    environment = Env(database, transport, f"storage-{secrets.token_hex(3)}")
    server = rpc.RPCServer(transport, TOPIC, [VolumeEndpoint(database)], executor_threads=2)
    agent = rpc.RPCServer(transport, f"volume.{environment.host}", [environment.agent])
    server.start()
    agent.start()
    try:
        yield environment
    finally:
        for part in (agent, server):
            part.stop()
            part.wait()
        transport.close()
        database.dispose()


def test_report_state_registers_and_refreshes_the_host(env: Env) -> None:
    caps = {
        "backend_name": "file",
        "volume_format": "raw",
        "total_capacity_gb": 100.0,
        "free_capacity_gb": 90.0,
        "provisioned_capacity_gb": 10.0,
    }
    ctxt = RequestContext()
    for _ in range(2):
        answer = env.client.call(
            ctxt,
            "report_state",
            host=env.host,
            binary="cinder-volume",
            availability_zone="nova",
            capabilities=caps,
        )
        assert answer == {}
    with env.database.transaction() as sess:
        rows = sess.query(models.Service).filter(models.Service.host == env.host).all()
        assert len(rows) == 1
        assert (rows[0].backend_name, rows[0].total_capacity_gb) == ("file", 100.0)
        assert rows[0].capabilities == caps


def test_volume_update_and_deleted(env: Env) -> None:
    ctxt = RequestContext()
    vid = env.volume()

    assert env.client.call(
        ctxt,
        "volume_update",
        volume_id=vid,
        updates={
            "status": "available",
            "bootable": True,
            "volume_image_metadata": {"image_id": "i1", "disk_format": "qcow2"},
        },
    )
    volume = env.get(vid)
    assert volume is not None
    assert (volume.status, volume.bootable) == ("available", True)
    assert volume.image_metadata == {"image_id": "i1", "disk_format": "qcow2"}
    assert volume.launched_at is not None

    assert env.client.call(
        ctxt, "volume_update", volume_id=vid, updates={"status": "available", "size": 4}
    )
    assert env.client.call(
        ctxt, "volume_update", volume_id=vid, updates={"status": "bogus"}, message="disk full"
    )
    volume = env.get(vid)
    assert volume is not None
    assert (volume.size, volume.status, volume.last_error) == (4, "available", "disk full")

    assert env.client.call(ctxt, "get_host_volumes", host=env.host)[vid] == {
        "status": "available",
        "size": 4,
    }
    assert env.client.call(ctxt, "volume_deleted", volume_id=vid) is True
    assert env.get(vid) is None
    assert env.client.call(ctxt, "volume_deleted", volume_id=vid) is False
    assert env.client.call(ctxt, "volume_update", volume_id=vid, updates={}) is False


def test_snapshot_update_and_deleted(env: Env) -> None:
    ctxt = RequestContext()
    vid = env.volume()
    sid = str(uuid.uuid4())
    with env.database.transaction() as sess:
        sess.add(models.Snapshot(id=sid, project_id="p1", volume_id=vid, size=1, meta={}))

    assert env.client.call(
        ctxt, "snapshot_update", snapshot_id=sid, updates={"status": "available"}
    )
    with env.database.transaction() as sess:
        snap = sess.get(models.Snapshot, sid)
        assert snap is not None and snap.status == "available"
    assert env.client.call(ctxt, "snapshot_deleted", snapshot_id=sid) is True
    assert env.client.call(ctxt, "snapshot_deleted", snapshot_id=sid) is False
    env.client.call(ctxt, "volume_deleted", volume_id=vid)


def test_agent_api_reaches_the_host(env: Env) -> None:
    ctxt = RequestContext()
    api = env.agent_api
    api.create_volume(ctxt, env.host, {"id": "v1", "size": 1}, {"type": "blank"})
    api.extend_volume(ctxt, env.host, "v1", 2)
    api.create_snapshot(ctxt, env.host, {"id": "s1", "volume_id": "v1", "size": 1}, True)
    api.delete_snapshot(ctxt, env.host, "s1")
    api.delete_volume(ctxt, env.host, "v1")

    assert env.agent.wait_for("create_volume") == {
        "volume": {"id": "v1", "size": 1},
        "source": {"type": "blank"},
    }
    assert env.agent.wait_for("extend_volume") == {"volume_id": "v1", "new_size": 2}
    assert env.agent.wait_for("create_snapshot")["force"] is True
    assert env.agent.wait_for("delete_snapshot") == {"snapshot_id": "s1"}
    assert env.agent.wait_for("delete_volume") == {"volume_id": "v1"}
    info = api.initialize_connection(ctxt, env.host, "v1", "a1", {"host": "c1"})
    assert info["driver_volume_type"] == "nbd"
    assert env.agent.wait_for("initialize_connection")["attachment_id"] == "a1"
    api.terminate_connection(ctxt, env.host, "v1", "a1")
    assert env.agent.wait_for("terminate_connection") == {"volume_id": "v1", "attachment_id": "a1"}


def test_a_host_without_agent_times_out(env: Env) -> None:
    api = VolumeAgentAPI(env.agent_api.client.transport, timeout=1)

    with pytest.raises(rpc.RPCTimeout) as caught:
        api.initialize_connection(RequestContext(), "nobody-home", "v1", "a1", {"host": "c1"})

    assert "volume.nobody-home" in str(caught.value)
