"""The scheduler's claims under concurrency, with real MariaDB and RabbitMQ.

1. Directly: 20 concurrent ``select_destination`` calls over RPC onto 2 hosts with room for 5
   each: exactly 10 placements, 10 NoValidHost, no host overcommitted.
2. End to end: 20 concurrent boots through compute-api onto fake hosts with room for 10: exactly
   10 ACTIVE, 10 ERROR with a "No valid host" fault.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from control.common import migrate, rpc
from control.common.context import RequestContext
from control.common.db import Database
from control.compute import claims, models, services
from control.scheduler.manager import SchedulerManager
from control.scheduler.rpcapi import SchedulerAPI
from tests.api.compute_env import ComputeEnv, env_fixture

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


def add_host(database: Database, host: str, vcpus: int, memory_mb: int, disk: int) -> None:
    with database.transaction() as sess:
        services.heartbeat(sess, host, services.COMPUTE_BINARY)
        sess.add(
            models.ComputeNode(
                uuid=str(uuid.uuid4()),
                host=host,
                hypervisor_hostname=host,
                hypervisor_type="fake",
                vcpus=vcpus,
                memory_mb=memory_mb,
                local_gb=disk,
            )
        )


def test_concurrent_claims_never_overcommit(mariadb: Any, rabbitmq: Any) -> None:
    url = mariadb.create_database("sched")
    migrate.upgrade("compute", url)
    database = Database(url, pool_size=10)
    transport = rpc.Transport(rabbitmq.url, exchange=f"sched-{secrets.token_hex(4)}")
    manager = SchedulerManager(database, claims.Ratios(1.0, 1.0, 1.0))
    server = rpc.RPCServer(transport, "scheduler", [manager], executor_threads=10)
    try:
        for name in ("h1", "h2"):
            add_host(database, name, vcpus=5, memory_mb=5 * 512, disk=100)
        server.start()
        api = SchedulerAPI(transport, timeout=30)
        barrier = threading.Barrier(20)

        def place(_: int) -> str:
            barrier.wait()
            spec = {"instance_uuid": str(uuid.uuid4()), "vcpus": 1, "memory_mb": 512, "disk_gb": 1}
            try:
                return str(api.select_destination(RequestContext(), spec)["host"])
            except rpc.RemoteError as exc:
                assert exc.exc_type == "NoValidHost", exc
                return "none"

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(place, range(20)))
        assert results.count("none") == 10
        assert results.count("h1") == 5 and results.count("h2") == 5
        with database.transaction() as sess:
            for node in sess.scalars(select(models.ComputeNode)):
                assert node.vcpus_used == 5 and node.memory_mb_used == 5 * 512
            allocations = list(sess.scalars(select(models.Allocation)))
            assert len(allocations) == 10
            # Releasing is idempotent and gives the room back.
            assert claims.release(sess, allocations[0].instance_uuid)
            assert not claims.release(sess, allocations[0].instance_uuid)
    finally:
        server.stop()
        server.wait()
        transport.close()
        database.dispose()


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: Any,
    image_server: Any,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComputeEnv]:
    yield from env_fixture(
        mariadb, identity_server, image_server, rabbitmq, tmp_path_factory, agents=0
    )


def test_twenty_concurrent_boots_onto_room_for_ten(env: ComputeEnv) -> None:
    for index in range(2):
        env.add_agent(f"room{index}", zone="room", vcpus=5, memory_mb=5 * 256, local_gb=50)
    flavor = env.flavor("c.claim", ram=256, vcpus=1, disk=1)
    project = env.project_id("a")
    env.put(f"/os-quota-sets/{project}", {"quota_set": {"instances": 50, "cores": 50}}, "admin")
    token = env.token("a")
    barrier = threading.Barrier(20)

    def boot(index: int) -> str:
        client = env.app.test_client()
        body = {
            "server": {
                "name": f"claim-{index}",
                "imageRef": env.image_id,
                "flavorRef": flavor,
                "availability_zone": "room",
            }
        }
        barrier.wait()
        resp = client.post("/v2.1/servers", json=body, headers={"X-Auth-Token": token})
        assert resp.status_code == 202, resp.get_json()
        return str(resp.get_json()["server"]["id"])

    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(boot, range(20)))
    final = {}
    for server_id in ids:
        server = env.show(server_id)
        if server["status"] == "BUILD":
            server = env.wait_status(server_id, "ACTIVE")
        final[server_id] = server
    statuses = [s["status"] for s in final.values()]
    assert statuses.count("ACTIVE") == 10, statuses
    assert statuses.count("ERROR") == 10, statuses
    for server in final.values():
        if server["status"] == "ERROR":
            assert "No valid host was found" in server["fault"]["message"]
    hypervisors = env.get("/os-hypervisors/detail", "admin").get_json()["hypervisors"]
    for hyp in hypervisors:
        assert hyp["vcpus_used"] <= hyp["vcpus"]
        assert hyp["memory_mb_used"] <= hyp["memory_mb"]
    assert sum(h["vcpus_used"] for h in hypervisors) == 10
    for server_id in ids:
        env.delete(f"/servers/{server_id}")
    for server_id in ids:
        env.wait_gone(server_id)


def test_concurrent_boots_never_exceed_the_quota(env: ComputeEnv) -> None:
    if not env.agents:
        env.add_agent("quota", zone="room", vcpus=16, memory_mb=16 * 256, local_gb=50)
    flavor = env.flavor("c.quota", ram=256, vcpus=1, disk=1)
    project = env.project_id("b")
    env.put(f"/os-quota-sets/{project}", {"quota_set": {"instances": 3}}, "admin")
    token = env.token("b")
    barrier = threading.Barrier(8)

    def boot(index: int) -> tuple[int, str]:
        client = env.app.test_client()
        body = {
            "server": {
                "name": f"quota-race-{index}",
                "imageRef": env.image_id,
                "flavorRef": flavor,
                "availability_zone": "room",
            }
        }
        barrier.wait()
        resp = client.post("/v2.1/servers", json=body, headers={"X-Auth-Token": token})
        if resp.status_code == 202:
            return 202, str(resp.get_json()["server"]["id"])
        assert resp.status_code == 403, resp.get_json()
        assert "instances" in resp.get_json()["error"]["message"]
        return 403, ""

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(boot, range(8)))
    accepted = [ident for code, ident in results if code == 202]
    assert 1 <= len(accepted) <= 3
    listed = env.get("/servers?name=^quota-race-", "b").get_json()["servers"]
    assert len(listed) == len(accepted)
    for server_id in accepted:
        env.delete(f"/servers/{server_id}", "b")
    for server_id in accepted:
        env.wait_gone(server_id, "b")
