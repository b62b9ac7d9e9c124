"""Volume actions against the real stack: Nova's legacy attach flow (reserve, initialize_connection
giving a live NBD export served by the agent, attach, begin/roll detaching, terminate_connection,
detach), tempest's os-attach alone, extend through the agent, set_bootable, the admin actions
reset_status and force_detach, and the refusals (delete while in use, wrong states)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import volume_env
from tests.api.volume_env import VolumeEnv, assert_error

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(volume_server: Any, identity_server: Any) -> Iterator[VolumeEnv]:
    yield from volume_env.env_fixture(volume_server, identity_server)


def _nbd_virtual_size(data: dict[str, Any]) -> int:
    url = f"nbd://{data['host']}:{data['port']}/{data['export_name']}"
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", "-f", "raw", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return int(json.loads(out)["virtual-size"])


def test_nova_attach_and_detach_flow(env: VolumeEnv) -> None:
    volume = env.create_volume()
    vid = volume["id"]
    server = str(uuid.uuid4())
    connector = {"host": "compute-1", "ip": "127.0.0.1"}

    assert env.action(vid, "os-reserve").status_code == 202
    assert env.show_volume(vid)["status"] == "attaching"
    assert_error(env.action(vid, "os-reserve"), 400, "attaching")

    resp = env.action(vid, "os-initialize_connection", {"connector": connector})
    assert resp.status_code == 200, resp.text
    info = resp.json()["connection_info"]
    assert info["driver_volume_type"] == "nbd"
    assert info["data"]["volume_id"] == vid
    assert _nbd_virtual_size(info["data"]) == 1024**3
    # Idempotent per connector host: the same export.
    again = env.action(vid, "os-initialize_connection", {"connector": connector}).json()
    assert again["connection_info"]["data"]["port"] == info["data"]["port"]

    attach = env.action(
        vid,
        "os-attach",
        {"instance_uuid": server, "mountpoint": "/dev/vdb", "host_name": "compute-1"},
    )
    assert attach.status_code == 202, attach.text
    shown = env.show_volume(vid)
    assert shown["status"] == "in-use"
    (att,) = shown["attachments"]
    assert att["server_id"] == server
    assert att["device"] == "/dev/vdb"
    assert att["host_name"] == "compute-1"
    assert att["volume_id"] == vid and att["id"] == vid
    assert att["attachment_id"] == info["data"]["attachment_id"]
    assert att["attached_at"]

    message = assert_error(env.delete(f"/volumes/{vid}"), 400, "in-use", server, "detach it first")
    assert vid in message
    assert_error(env.action(vid, "os-extend", {"new_size": 2}), 400, "available")

    assert env.action(vid, "os-begin_detaching").status_code == 202
    assert env.show_volume(vid)["status"] == "detaching"
    assert env.action(vid, "os-roll_detaching").status_code == 202
    assert env.show_volume(vid)["status"] == "in-use"
    assert env.action(vid, "os-begin_detaching").status_code == 202
    assert env.action(vid, "os-terminate_connection", {"connector": connector}).status_code == 202
    assert env.action(vid, "os-detach", {"attachment_id": att["attachment_id"]}).status_code == 202
    shown = env.show_volume(vid)
    assert shown["status"] == "available"
    assert shown["attachments"] == []
    env.delete_volume(vid)


def test_attach_alone_as_tempest_does_and_unreserve(env: VolumeEnv) -> None:
    volume = env.create_volume()
    vid = volume["id"]
    server = str(uuid.uuid4())

    assert (
        env.action(
            vid, "os-attach", {"instance_uuid": server, "mountpoint": "/dev/vdc"}
        ).status_code
        == 202
    )
    assert env.show_volume(vid)["attachments"][0]["server_id"] == server
    assert env.action(vid, "os-detach", {}).status_code == 202
    assert env.show_volume(vid)["status"] == "available"

    assert env.action(vid, "os-reserve").status_code == 202
    assert env.action(vid, "os-unreserve").status_code == 202
    assert env.show_volume(vid)["status"] == "available"
    env.delete_volume(vid)


def test_extend_goes_through_the_agent(env: VolumeEnv) -> None:
    volume = env.create_volume()
    vid = volume["id"]

    assert_error(env.action(vid, "os-extend", {"new_size": 1}), 400, "greater than current size")
    assert_error(env.action(vid, "os-extend", {}), 400, "new_size")
    assert env.action(vid, "os-extend", {"new_size": 3}).status_code == 202
    extended = env.wait_volume(vid, "available")
    for _ in range(100):
        if extended["size"] == 3:
            break
        extended = env.show_volume(vid)
    assert extended["size"] == 3
    volume_file = next(p for p in env.server.agent_volumes_dir.iterdir() if vid in p.name)
    assert volume_file.stat().st_size == 3 * 1024**3
    env.delete_volume(vid)
    assert not volume_file.exists()


def test_set_bootable_and_admin_actions(env: VolumeEnv) -> None:
    volume = env.create_volume()
    vid = volume["id"]

    resp = env.action(vid, "os-set_bootable", {"bootable": True})
    assert resp.status_code == 200
    assert env.show_volume(vid)["bootable"] == "true"
    assert_error(env.action(vid, "os-set_bootable", {"bootable": "maybe"}), 400, "bootable")

    assert_error(env.action(vid, "os-reset_status", {"status": "error"}), 403)
    admin = env.post(
        f"/volumes/{vid}/action",
        {"os-reset_status": {"status": "error"}},
        "admin",
        project=env.project_id("admin"),
    )
    assert admin.status_code == 202, admin.text
    assert env.show_volume(vid)["status"] == "error"

    # An attachment an admin clears with force_detach.
    env.post(
        f"/volumes/{vid}/action",
        {"os-reset_status": {"status": "available"}},
        "admin",
        project=env.project_id("admin"),
    )
    env.action(vid, "os-attach", {"instance_uuid": str(uuid.uuid4()), "mountpoint": "/dev/vdb"})
    assert_error(env.action(vid, "os-force_detach", {}), 403)
    forced = env.post(
        f"/volumes/{vid}/action", {"os-force_detach": {}}, "admin", project=env.project_id("admin")
    )
    assert forced.status_code == 202, forced.text
    assert env.show_volume(vid)["status"] == "available"
    assert_error(env.action(vid, "os-nothing", {}), 400, "os-nothing")
    env.delete_volume(vid)
