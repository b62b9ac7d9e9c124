"""Volume types and extra specs, the scheduler (backend selection, capacity, concurrent creates,
no valid host), quotas (show with usage, defaults, update, over quota, concurrent creates at the
limit), limits, os-services and os-availability-zone, and an agent that does not answer."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from control.common.context import RequestContext
from control.common.db import utcnow
from control.volume import models
from control.volume.rpc import VolumeEndpoint
from tests.api import volume_env
from tests.api.volume_env import VolumeEnv, assert_error, unique

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(volume_server: Any, identity_server: Any) -> Iterator[VolumeEnv]:
    yield from volume_env.env_fixture(volume_server, identity_server)


def _admin(env: VolumeEnv, method: str, path: str, body: Any = None) -> Any:
    return env.request(method, path, "admin", body, project=env.project_id("admin"))


def _fake_host(env: VolumeEnv, capacity: float, backend: str | None = None) -> tuple[str, str]:
    """A volume host that reported (through the RPC endpoint) but has no agent behind it."""
    host = f"fake-{secrets.token_hex(3)}"
    backend = backend or f"be-{secrets.token_hex(3)}"
    VolumeEndpoint(env.database).report_state(
        RequestContext(),
        host,
        "cinder-volume",
        "nova",
        {"backend_name": backend, "total_capacity_gb": capacity, "free_capacity_gb": capacity},
    )
    return host, backend


def _type_for(env: VolumeEnv, backend: str) -> dict[str, Any]:
    resp = _admin(
        env,
        "POST",
        "/types",
        {"volume_type": {"name": unique("type"), "extra_specs": {"volume_backend_name": backend}}},
    )
    assert resp.status_code == 200, resp.text
    created: dict[str, Any] = resp.json()["volume_type"]
    return created


def _forget(env: VolumeEnv, volume_ids: list[str], host: str | None = None) -> None:
    with env.database.transaction() as sess:
        if volume_ids:
            sess.execute(delete(models.Volume).where(models.Volume.id.in_(volume_ids)))
        if host:
            sess.execute(delete(models.Service).where(models.Service.host == host))


def test_volume_types_and_extra_specs(env: VolumeEnv) -> None:
    listed = env.get("/types").json()["volume_types"]
    assert "__DEFAULT__" in [t["name"] for t in listed]
    assert "extra_specs" not in listed[0]
    assert env.get("/types/default").json()["volume_type"]["name"] == "__DEFAULT__"
    assert_error(env.post("/types", {"volume_type": {"name": "mine"}}), 403)

    vtype = _type_for(env, "file")
    tid = vtype["id"]
    assert vtype["extra_specs"] == {"volume_backend_name": "file"}
    assert env.get(f"/types/{tid}").json()["volume_type"]["name"] == vtype["name"]
    assert _admin(env, "GET", f"/types/{tid}/extra_specs").json() == {
        "extra_specs": {"volume_backend_name": "file"}
    }
    assert _admin(env, "POST", f"/types/{tid}/extra_specs", {"extra_specs": {"k": "v"}}).json() == {
        "extra_specs": {"k": "v"}
    }
    assert _admin(env, "DELETE", f"/types/{tid}/extra_specs/k").status_code == 202
    duplicate = _admin(env, "POST", "/types", {"volume_type": {"name": vtype["name"]}})
    assert_error(duplicate, 409, "already exists")

    # The type selects the real agent's backend: the volume becomes available.
    volume = env.create_volume(volume_type=vtype["name"])
    assert volume["volume_type"] == vtype["name"]
    assert_error(_admin(env, "DELETE", f"/types/{tid}"), 400, "in use")
    env.delete_volume(volume["id"])
    assert _admin(env, "DELETE", f"/types/{tid}").status_code == 202
    assert_error(_admin(env, "DELETE", "/types/__DEFAULT__"), 400, "can not be deleted")


def test_no_valid_host_is_an_error_volume_answered_202(env: VolumeEnv) -> None:
    vtype = _type_for(env, f"missing-{secrets.token_hex(3)}")
    resp = env.post("/volumes", {"volume": {"size": 1, "volume_type": vtype["name"]}})

    assert resp.status_code == 202, resp.text
    volume = resp.json()["volume"]
    assert volume["status"] == "error"
    shown = _admin(env, "GET", f"/volumes/{volume['id']}").json()["volume"]
    assert shown["os-vol-host-attr:host"] is None
    env.delete_volume(volume["id"])


def test_scheduler_never_overcommits_under_concurrent_creates(env: VolumeEnv) -> None:
    host, backend = _fake_host(env, capacity=3.0)
    vtype = _type_for(env, backend)
    who = env.new_account()

    def create(_: int) -> Any:
        body = {"volume": {"size": 1, "volume_type": vtype["name"]}}
        return env.post("/volumes", body, who).json()["volume"]

    with ThreadPoolExecutor(6) as pool:
        volumes = list(pool.map(create, range(6)))

    placed = [v for v in volumes if v["status"] == "creating"]
    assert len(placed) == 3
    assert len([v for v in volumes if v["status"] == "error"]) == 3
    for volume in placed:
        shown = _admin(env, "GET", f"/volumes/{volume['id']}").json()["volume"]
        assert shown["os-vol-host-attr:host"] == f"{host}@{backend}#{backend}"
    _forget(env, [v["id"] for v in volumes], host)
    _admin(env, "DELETE", f"/types/{vtype['id']}")


def test_agent_that_does_not_answer_is_named(env: VolumeEnv) -> None:
    host, backend = _fake_host(env, capacity=10.0)
    vtype = _type_for(env, backend)
    volume = env.create_volume(volume_type=vtype["name"], wait=None)
    _admin(
        env, "POST", f"/volumes/{volume['id']}/action", {"os-reset_status": {"status": "available"}}
    )

    resp = env.action(volume["id"], "os-initialize_connection", {"connector": {"host": "c1"}})

    assert_error(resp, 503, host, "initialize_connection")
    _forget(env, [volume["id"]], host)
    _admin(env, "DELETE", f"/types/{vtype['id']}")


def test_quotas_usage_defaults_update_and_over_quota(env: VolumeEnv) -> None:
    who = env.new_account()
    project = env.project_id(who)

    shown = env.get(f"/os-quota-sets/{project}", who).json()["quota_set"]
    assert (shown["volumes"], shown["gigabytes"], shown["snapshots"]) == (10, 1000, 10)
    assert shown["id"] == project
    defaults = env.get(f"/os-quota-sets/{project}/defaults", who).json()["quota_set"]
    assert defaults["volumes"] == 10
    assert_error(env.put(f"/os-quota-sets/{project}", {"quota_set": {"volumes": 1}}, who), 403)
    assert_error(env.get(f"/os-quota-sets/{env.project_id('a')}", who), 403)

    resp = _admin(
        env, "PUT", f"/os-quota-sets/{project}", {"quota_set": {"volumes": 2, "gigabytes": 3}}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["quota_set"]["volumes"] == 2

    first = env.create_volume(who, size=2)
    assert_error(
        env.post("/volumes", {"volume": {"size": 2}}, who),
        413,
        "gigabytes",
        "Requested 2G, quota is 3G and 2G has been consumed",
    )
    second = env.create_volume(who, size=1)
    assert_error(
        env.post("/volumes", {"volume": {"size": 1}}, who),
        413,
        "Maximum number of volumes allowed (2) exceeded for quota 'volumes'",
    )
    usage = env.get(f"/os-quota-sets/{project}?usage=true", who).json()["quota_set"]
    assert usage["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0, "allocated": 0}
    assert usage["gigabytes"]["in_use"] == 3
    assert_error(env.action(second["id"], "os-extend", {"new_size": 2}, who), 413, "gigabytes")

    absolute = env.get("/limits", who).json()["limits"]["absolute"]
    assert absolute["maxTotalVolumes"] == 2
    assert absolute["totalVolumesUsed"] == 2
    assert absolute["totalGigabytesUsed"] == 3

    for ident in (first["id"], second["id"]):
        env.delete_volume(ident, who)
    assert _admin(env, "DELETE", f"/os-quota-sets/{project}").status_code == 200
    assert env.get(f"/os-quota-sets/{project}", who).json()["quota_set"]["volumes"] == 10


def test_concurrent_creates_cannot_both_pass_at_the_limit(env: VolumeEnv) -> None:
    who = env.new_account()
    project = env.project_id(who)
    _admin(env, "PUT", f"/os-quota-sets/{project}", {"quota_set": {"volumes": 2}})

    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(lambda _: env.post("/volumes", {"volume": {"size": 1}}, who), range(6))
        )

    assert sorted(r.status_code for r in answers) == [202, 202, 413, 413, 413, 413]
    for resp in answers:
        if resp.status_code == 202:
            ident = resp.json()["volume"]["id"]
            env.wait_volume(ident, "available", who)
            env.delete_volume(ident, who)


def test_services_and_availability_zones(env: VolumeEnv) -> None:
    assert_error(env.get("/os-services"), 403)
    services = _admin(env, "GET", "/os-services").json()["services"]
    scheduler = [s for s in services if s["binary"] == "cinder-scheduler"]
    assert scheduler and scheduler[0]["state"] == "up"
    agent = next(s for s in services if s["host"] == f"{env.server.agent_host}@file")
    assert (agent["binary"], agent["state"], agent["status"], agent["zone"]) == (
        "cinder-volume",
        "up",
        "enabled",
        "nova",
    )

    # A host whose last report is older than service_down_time is down.
    host, _ = _fake_host(env, capacity=1.0)
    with env.database.transaction() as sess:
        for row in sess.query(models.Service).filter(models.Service.host == host):
            row.updated_at = utcnow() - timedelta(minutes=5)
    services = _admin(env, "GET", "/os-services?binary=cinder-volume").json()["services"]
    assert next(s for s in services if s["host"].startswith(host))["state"] == "down"
    _forget(env, [], host)

    zones = env.get("/os-availability-zone").json()["availabilityZoneInfo"]
    assert {"zoneName": "nova", "zoneState": {"available": True}} in zones


def test_another_backend_host_is_selected_by_type(env: VolumeEnv) -> None:
    backend = f"fast-{secrets.token_hex(2)}"
    agent = env.server.start_agent(backend_name=backend)
    try:
        vtype = _type_for(env, backend)
        volume = env.create_volume(volume_type=vtype["name"])
        shown = _admin(env, "GET", f"/volumes/{volume['id']}").json()["volume"]
        assert shown["os-vol-host-attr:host"] == f"{agent.host}@{backend}#{backend}"
        assert any(volume["id"] in p.name for p in agent.volumes_dir.iterdir())
        env.delete_volume(volume["id"])
        _admin(env, "DELETE", f"/types/{vtype['id']}")
    finally:
        env.server.stop_agent(agent)
