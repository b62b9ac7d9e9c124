"""Servers end to end with real MariaDB, RabbitMQ, identity and image-api: compute-api, the
scheduler, the conductor and fake-driver compute agents in threads (see ``compute_env``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from control.compute import models
from tests.api.compute_env import SERVICE_DOWN_TIME, ComputeEnv, env_fixture, wait_for

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]

SERVER_FIELDS = [
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "created",
    "updated",
    "hostId",
    "key_name",
    "metadata",
    "accessIPv4",
    "accessIPv6",
    "progress",
    "image",
    "flavor",
    "addresses",
    "OS-EXT-STS:vm_state",
    "OS-EXT-STS:task_state",
    "OS-EXT-STS:power_state",
    "OS-EXT-AZ:availability_zone",
    "OS-SRV-USG:launched_at",
    "os-extended-volumes:volumes_attached",
    "security_groups",
    "config_drive",
    "locked",
    "links",
]


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: Any,
    image_server: Any,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComputeEnv]:
    yield from env_fixture(mariadb, identity_server, image_server, rabbitmq, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny(env: ComputeEnv) -> str:
    return env.flavor("s.tiny", ram=256, vcpus=1, disk=1)


def test_boot_reaches_active_with_every_field(env: ComputeEnv, tiny: str) -> None:
    created = env.boot("vm-fields", tiny, metadata={"role": "web"})
    assert set(created) >= {"id", "links", "adminPass", "OS-DCF:diskConfig", "security_groups"}
    server = env.wait_status(created["id"], "ACTIVE")
    for key in SERVER_FIELDS:
        assert key in server, key
    assert server["OS-EXT-STS:vm_state"] == "active"
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["OS-SRV-USG:launched_at"]
    assert server["metadata"] == {"role": "web"}
    assert server["image"]["id"] == env.image_id
    assert server["flavor"]["id"] == tiny
    assert server["addresses"] == {}
    assert server["hostId"]
    assert "fault" not in server
    assert "OS-EXT-SRV-ATTR:host" not in server
    admin_view = env.show(created["id"], "admin")
    host = admin_view["OS-EXT-SRV-ATTR:host"]
    assert host in env.drivers
    assert created["id"] in env.drivers[host].guests
    # The image was fetched once into that host's cache and verified.
    assert env.agents[host].manager.image_cache.path(env.image_id).exists()
    actions = env.get(f"/servers/{created['id']}/os-instance-actions").get_json()
    assert [a["action"] for a in actions["instanceActions"]] == ["create"]
    request_id = actions["instanceActions"][0]["request_id"]
    detail = env.get(f"/servers/{created['id']}/os-instance-actions/{request_id}", "admin")
    events = detail.get_json()["instanceAction"]["events"]
    assert events[0]["event"] == "compute_build_and_run_instance"
    wait_for(
        lambda: (
            env.get(
                f"/servers/{created['id']}/os-instance-actions/{request_id}", "admin"
            ).get_json()["instanceAction"]["events"][0]["result"]
            == "Success"
        ),
        "build event finished",
    )
    assert env.get(f"/servers/{created['id']}", "b").status_code == 404
    env.delete(f"/servers/{created['id']}")
    env.wait_gone(created["id"])


def test_stop_start_reboot_console_delete(env: ComputeEnv, tiny: str) -> None:
    server_id = env.boot("vm-power", tiny)["id"]
    env.wait_status(server_id, "ACTIVE")
    action = f"/servers/{server_id}/action"
    assert env.post(action, {"os-stop": None}).status_code == 202
    stopped = env.wait_status(server_id, "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4
    assert env.post(action, {"os-stop": None}).status_code == 409
    assert env.post(action, {"os-start": None}).status_code == 202
    env.wait_status(server_id, "ACTIVE")
    assert env.post(action, {"reboot": {"type": "HARD"}}).status_code == 202
    env.wait_status(server_id, "ACTIVE")
    assert env.post(action, {"reboot": {"type": "SOFT"}}).status_code == 202
    env.wait_status(server_id, "ACTIVE")
    assert env.post(action, {"reboot": {"type": "BOGUS"}}).status_code == 400
    console = env.post(action, {"os-getConsoleOutput": {"length": 50}})
    assert console.status_code == 200
    output = console.get_json()["output"]
    assert "hard reboot" in output and "soft reboot" in output and "cirrus guest up" in output
    names = [
        a["action"]
        for a in env.get(f"/servers/{server_id}/os-instance-actions").get_json()["instanceActions"]
    ]
    assert names == ["reboot", "reboot", "start", "stop", "create"]
    host = env.show(server_id, "admin")["OS-EXT-SRV-ATTR:host"]
    assert env.delete(f"/servers/{server_id}").status_code == 204
    env.wait_gone(server_id)
    assert server_id not in env.drivers[host].guests
    with env.database.transaction() as sess:
        assert sess.get(models.Allocation, server_id) is None


def test_rename_metadata_and_list_filters(env: ComputeEnv, tiny: str) -> None:
    first = env.boot("list-alpha", tiny)["id"]
    second = env.boot("list-beta", tiny)["id"]
    env.wait_status(first, "ACTIVE")
    env.wait_status(second, "ACTIVE")
    renamed = env.put(f"/servers/{first}", {"server": {"name": "list-gamma"}})
    assert renamed.get_json()["server"]["name"] == "list-gamma"
    names = {s["name"] for s in env.get("/servers?name=^list-").get_json()["servers"]}
    assert names == {"list-gamma", "list-beta"}
    assert [s["id"] for s in env.get("/servers?name=gam").get_json()["servers"]] == [first]
    detail = env.get("/servers/detail?status=ACTIVE&name=^list-").get_json()["servers"]
    assert {s["id"] for s in detail} == {first, second}
    assert env.get("/servers?status=SHUTOFF&name=^list-").get_json()["servers"] == []
    # Pagination: newest first, limit and marker.
    page = env.get("/servers?name=^list-&limit=1").get_json()
    assert [s["id"] for s in page["servers"]] == [second]
    assert "marker=" in page["servers_links"][0]["href"]
    rest = env.get(f"/servers?name=^list-&limit=1&marker={second}").get_json()
    assert [s["id"] for s in rest["servers"]] == [first]
    # Other projects see nothing; admins with all_tenants see everything, and filter by host.
    assert env.get("/servers?name=^list-", "b").get_json()["servers"] == []
    assert env.get("/servers?name=^list-", "admin").get_json()["servers"] == []
    everyone = env.get("/servers?all_tenants=1&name=^list-", "admin").get_json()["servers"]
    assert {s["id"] for s in everyone} == {first, second}
    assert env.get("/servers?all_tenants=1", "a").status_code == 403
    host = env.show(first, "admin")["OS-EXT-SRV-ATTR:host"]
    on_host = env.get(f"/servers/detail?all_tenants=1&host={host}", "admin").get_json()
    assert first in {s["id"] for s in on_host["servers"]}
    assert env.get(f"/servers?host={host}").status_code == 403
    since = env.show(first)["updated"]
    changed = env.get(f"/servers?changes-since={since}&name=^list-").get_json()["servers"]
    assert first in {s["id"] for s in changed}
    # Metadata.
    base = f"/servers/{first}/metadata"
    assert env.post(base, {"metadata": {"a": "1", "b": "2"}}).get_json()["metadata"] == {
        "a": "1",
        "b": "2",
    }
    assert env.put(f"{base}/c", {"meta": {"c": "3"}}).get_json() == {"meta": {"c": "3"}}
    assert env.get(f"{base}/c").get_json() == {"meta": {"c": "3"}}
    assert env.delete(f"{base}/a").status_code == 204
    assert env.get(base).get_json()["metadata"] == {"b": "2", "c": "3"}
    assert env.put(base, {"metadata": {"z": "9"}}).get_json()["metadata"] == {"z": "9"}
    assert env.get(f"{base}/a").status_code == 404
    for server_id in (first, second):
        env.delete(f"/servers/{server_id}")
    for server_id in (first, second):
        env.wait_gone(server_id)


def test_unknown_server_is_404_and_bad_requests_400(env: ComputeEnv, tiny: str) -> None:
    assert env.get("/servers/no-such-server").status_code == 404
    assert env.get("/servers/00000000-0000-0000-0000-000000000000").status_code == 404
    bad_image = {"server": {"name": "x", "imageRef": "nope", "flavorRef": tiny}}
    assert env.post("/servers", bad_image).status_code == 400
    missing = {"server": {"name": "x", "imageRef": env.image_id, "flavorRef": "nope"}}
    assert env.post("/servers", missing).status_code == 404
    no_name = {"server": {"imageRef": env.image_id, "flavorRef": tiny}}
    resp = env.post("/servers", no_name)
    assert resp.status_code == 400
    assert "name" in resp.get_json()["error"]["message"]
    bad_key = {
        "server": {"name": "x", "imageRef": env.image_id, "flavorRef": tiny, "key_name": "no"}
    }
    assert env.post("/servers", bad_key).status_code == 400


def test_quota_exceeded_is_403_naming_the_quota(env: ComputeEnv, tiny: str) -> None:
    project_b = env.project_id("b")
    big = env.flavor("s.big", ram=1024, vcpus=4, disk=1)
    env.put(f"/os-quota-sets/{project_b}", {"quota_set": {"cores": 6, "instances": 5}}, "admin")
    try:
        first = env.boot("quota-1", big, who="b")["id"]
        body = {"server": {"name": "quota-2", "imageRef": env.image_id, "flavorRef": big}}
        resp = env.post("/servers", body, "b")
        assert resp.status_code == 403
        message = resp.get_json()["error"]["message"]
        assert "Quota exceeded for cores" in message
        many = {
            "server": {
                "name": "quota-many",
                "imageRef": env.image_id,
                "flavorRef": tiny,
                "min_count": 5,
                "max_count": 5,
            }
        }
        resp = env.post("/servers", many, "b")
        assert resp.status_code == 403
        assert "instances" in resp.get_json()["error"]["message"]
        env.delete(f"/servers/{first}", "b")
        env.wait_gone(first, "b")
    finally:
        env.put(
            f"/os-quota-sets/{project_b}", {"quota_set": {"cores": 20, "instances": 10}}, "admin"
        )


def test_no_valid_host_goes_error_with_a_fault(env: ComputeEnv) -> None:
    huge = env.flavor("s.huge", ram=16384, vcpus=1, disk=1)
    server_id = env.boot("vm-huge", huge)["id"]
    server = env.wait_status(server_id, "ERROR")
    assert "No valid host was found" in server["fault"]["message"]
    assert "ram" in server["fault"]["message"]
    assert server["fault"]["code"] == 500
    zone = env.boot("vm-zone", env.flavor("s.zone"), availability_zone="nowhere")["id"]
    zoned = env.wait_status(zone, "ERROR")
    assert "availability zone" in zoned["fault"]["message"]
    for ident in (server_id, zone):
        assert env.delete(f"/servers/{ident}").status_code == 204
        env.wait_gone(ident)


def test_driver_failure_goes_error_and_releases_the_claim(env: ComputeEnv) -> None:
    host, driver = env.add_agent("failing", zone="fail-zone")
    driver.fail_spawn = "the fake hypervisor refused"
    server_id = env.boot("vm-fail", env.flavor("s.fail"), availability_zone="fail-zone")["id"]
    server = env.wait_status(server_id, "ERROR")
    assert "the fake hypervisor refused" in server["fault"]["message"]
    with env.database.transaction() as sess:
        assert sess.get(models.Allocation, server_id) is None
        node = sess.scalars(select(models.ComputeNode).where(models.ComputeNode.host == host)).one()
        assert node.memory_mb_used == 0 and node.vcpus_used == 0
    assert driver.guests == {}
    env.delete(f"/servers/{server_id}")
    env.wait_gone(server_id)
    env.stop_agent(host)


def test_agent_dying_mid_build_goes_error_after_the_timeout(env: ComputeEnv) -> None:
    host, driver = env.add_agent("dying", zone="dying-zone")
    gate = threading.Event()
    driver.spawn_gate = gate
    try:
        server_id = env.boot("vm-dying", env.flavor("s.dying"), availability_zone="dying-zone")[
            "id"
        ]
        wait_for(lambda: env.show(server_id)["OS-EXT-STS:task_state"] == "spawning", "spawning")
        # The agent stops heartbeating (as a dead agent would) while the spawn hangs.
        env.agents[host].manager.stop_periodic()
        server = env.wait_status(server_id, "ERROR", timeout=SERVICE_DOWN_TIME + 10)
        assert "stopped reporting" in server["fault"]["message"]
        with env.database.transaction() as sess:
            assert sess.get(models.Allocation, server_id) is None
    finally:
        gate.set()
    # The late spawn finds its server in ERROR and removes the guest.
    wait_for(lambda: server_id not in driver.guests, "late guest removed")
    env.stop_agent(host)
    assert env.delete(f"/servers/{server_id}").status_code == 204
    env.wait_gone(server_id)


def test_guest_that_dies_is_reported_shutoff(env: ComputeEnv, tiny: str) -> None:
    server_id = env.boot("vm-crash", tiny)["id"]
    env.wait_status(server_id, "ACTIVE")
    host = env.show(server_id, "admin")["OS-EXT-SRV-ATTR:host"]
    env.drivers[host].crash(server_id)
    env.wait_status(server_id, "SHUTOFF")
    env.delete(f"/servers/{server_id}")
    env.wait_gone(server_id)


def test_services_hypervisors_and_zones(env: ComputeEnv, tiny: str) -> None:
    services = env.get("/os-services", "admin").get_json()["services"]
    computes = [s for s in services if s["binary"] == "nova-compute" and s["host"] in env.agents]
    assert len(computes) == len(env.agents)
    assert all(s["state"] == "up" and s["status"] == "enabled" for s in computes)
    assert {"nova-scheduler", "nova-conductor"} <= {s["binary"] for s in services}
    assert env.get("/os-services").status_code == 403
    host = computes[0]["host"]
    body = {"host": host, "binary": "nova-compute", "disabled_reason": "maintenance"}
    resp = env.put("/os-services/disable-log-reason", body, "admin")
    assert resp.status_code == 200
    assert resp.get_json()["service"]["status"] == "disabled"
    shown = env.get(f"/os-services?host={host}", "admin").get_json()["services"][0]
    assert shown["status"] == "disabled" and shown["disabled_reason"] == "maintenance"
    # The scheduler skips the disabled host.
    other = [h for h in env.agents if h != host]
    try:
        ids = [env.boot(f"svc-{i}", tiny)["id"] for i in range(2)]
        for ident in ids:
            env.wait_status(ident, "ACTIVE")
            assert env.show(ident, "admin")["OS-EXT-SRV-ATTR:host"] in other
    finally:
        env.put("/os-services/enable", {"host": host, "binary": "nova-compute"}, "admin")
    assert (
        env.get(f"/os-services?host={host}", "admin").get_json()["services"][0]["status"]
        == "enabled"
    )
    hypervisors = env.get("/os-hypervisors", "admin").get_json()["hypervisors"]
    assert {h["hypervisor_hostname"] for h in hypervisors} >= set(env.agents)
    detail = env.get("/os-hypervisors/detail", "admin").get_json()["hypervisors"]
    one = next(h for h in detail if h["hypervisor_hostname"] == other[0])
    assert one["vcpus"] == 8 and one["memory_mb"] == 8192 and one["state"] == "up"
    assert one["vcpus_used"] >= 1
    wait_for(
        lambda: (
            next(
                h
                for h in env.get("/os-hypervisors/detail", "admin").get_json()["hypervisors"]
                if h["id"] == one["id"]
            )["running_vms"]
            >= 1
        ),
        "running_vms reported by the heartbeat",
    )
    assert (
        env.get(f"/os-hypervisors/{one['id']}", "admin").get_json()["hypervisor"]["id"] == one["id"]
    )
    stats = env.get("/os-hypervisors/statistics", "admin").get_json()["hypervisor_statistics"]
    assert stats["count"] == len(detail)
    assert stats["vcpus_used"] == sum(h["vcpus_used"] for h in detail)
    zones = env.get("/os-availability-zone").get_json()["availabilityZoneInfo"]
    assert {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None} in zones
    zone_detail = env.get("/os-availability-zone/detail", "admin").get_json()
    nova = next(z for z in zone_detail["availabilityZoneInfo"] if z["zoneName"] == "nova")
    assert set(env.agents) <= set(nova["hosts"])
    for ident in ids:
        env.delete(f"/servers/{ident}")
    for ident in ids:
        env.wait_gone(ident)


def test_security_groups_of_a_server_without_ports(env: ComputeEnv, tiny: str) -> None:
    """openstack.cloud's server module reads them; servers have no port yet, so no group."""
    server = env.boot("sg-list", tiny)["id"]
    listed = env.get(f"/servers/{server}/os-security-groups")
    assert listed.status_code == 200
    assert listed.get_json() == {"security_groups": []}
    assert env.get(f"/servers/{server}/os-security-groups", "b").status_code == 404
    assert (
        env.get("/servers/00000000-0000-4000-8000-000000000000/os-security-groups").status_code
        == 404
    )
