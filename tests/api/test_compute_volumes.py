"""Servers with volumes, end to end: compute-api (``compute_env``, fake-driver agents) finds the
real volume API (``volume_server``: volume-api under gunicorn, cirrus-volume-rpc and a real
file-backend volume agent exporting with qemu-nbd) in identity's catalog and drives Cinder's
legacy attach flow: ``os-volume_attachments`` attach and detach, ``volumes_attached``, boot from
volume (``block_device_mapping_v2``), server delete releasing (and deleting) volumes, and the
rollbacks that leave a volume ``available`` when something fails."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from control.compute import models
from tests.api.compute_env import ComputeEnv, env_fixture, wait_for

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture(scope="module")
def env(
    mariadb: Any,
    identity_server: Any,
    image_server: Any,
    volume_server: Any,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComputeEnv]:
    # volume_server puts the volume API in identity's catalog, where compute-api finds it.
    yield from env_fixture(
        mariadb, identity_server, image_server, rabbitmq, tmp_path_factory, agents=1
    )


@pytest.fixture(scope="module")
def tiny(env: ComputeEnv) -> str:
    return env.flavor(f"vol-tiny-{secrets.token_hex(3)}")


class Volumes:
    """The volume API as the test's users call it."""

    def __init__(self, env: ComputeEnv, server: Any) -> None:
        self.env = env
        self.server = server
        self.created: list[str] = []

    def call(self, method: str, path: str, who: str = "a", body: Any = None) -> requests.Response:
        project = self.env.project_id(who)
        return requests.request(
            method,
            f"{self.server.project_url(project)}{path}",
            json=body,
            headers={"X-Auth-Token": self.env.token(who)},
            timeout=60,
        )

    def get(self, volume_id: str, who: str = "a") -> dict[str, Any]:
        resp = self.call("GET", f"/volumes/{volume_id}", who)
        assert resp.status_code == 200, resp.text
        volume: dict[str, Any] = resp.json()["volume"]
        return volume

    def create(self, who: str = "a", size: int = 1) -> str:
        resp = self.call(
            "POST",
            "/volumes",
            who,
            {"volume": {"size": size, "name": f"cv-{secrets.token_hex(3)}"}},
        )
        assert resp.status_code == 202, resp.text
        volume_id = str(resp.json()["volume"]["id"])
        self.created.append(volume_id)
        self.wait(volume_id, "available", who)
        return volume_id

    def wait(self, volume_id: str, status: str, who: str = "a") -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.update(self.get(volume_id, who))
            return bool(seen["status"] == status)

        wait_for(check, lambda: f"volume {volume_id} {status} (last {seen.get('status')})")
        return seen

    def gone(self, volume_id: str, who: str = "a") -> bool:
        return self.call("GET", f"/volumes/{volume_id}", who).status_code == 404


@pytest.fixture(scope="module")
def vols(env: ComputeEnv, volume_server: Any) -> Volumes:
    return Volumes(env, volume_server)


@pytest.fixture(autouse=True)
def _delete_volumes(vols: Volumes) -> Iterator[None]:
    """Each test's volumes go afterwards (the project's volume quota is 10); one still in use
    is reset by the admin first."""
    yield
    while vols.created:
        volume_id = vols.created.pop()
        if vols.gone(volume_id):
            continue
        if vols.get(volume_id)["status"] == "in-use":
            # os-detach stops the export (qemu-nbd) at once; a reset would leave it running.
            vols.call("POST", f"/volumes/{volume_id}/action", "a", {"os-detach": {}})
        if vols.get(volume_id)["status"] != "available":
            vols.call(
                "POST",
                f"/volumes/{volume_id}/action",
                "admin",
                {"os-reset_status": {"status": "available", "attach_status": "detached"}},
            )
        vols.call("DELETE", f"/volumes/{volume_id}")


def active_server(env: ComputeEnv, flavor: str, **extra: Any) -> tuple[str, str]:
    """A booted server and its host."""
    server = env.boot(f"vs-{secrets.token_hex(3)}", flavor, **extra)
    shown = env.wait_status(server["id"], "ACTIVE")
    del shown
    host = env.show(server["id"], "admin")["OS-EXT-SRV-ATTR:host"]
    return server["id"], str(host)


def attach(env: ComputeEnv, server_id: str, volume_id: str, who: str = "a") -> Any:
    return env.post(
        f"/servers/{server_id}/os-volume_attachments",
        {"volumeAttachment": {"volumeId": volume_id, "device": None}},
        who,
    )


def test_attach_list_show_detach(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    server_id, host = active_server(env, tiny)
    volume_id = vols.create()

    resp = attach(env, server_id, volume_id)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {
        "volumeAttachment": {
            "id": volume_id,
            "serverId": server_id,
            "volumeId": volume_id,
            "device": "/dev/vdb",
        }
    }
    # The guest has the disk (the fake driver keeps it with the volume API's connection info).
    disk = env.drivers[host].volumes[server_id]["vdb"]
    assert disk["volume_id"] == volume_id
    assert disk["connection"]["driver_volume_type"] == "nbd"
    assert disk["connection"]["data"]["port"]

    volume = vols.get(volume_id)
    assert volume["status"] == "in-use"
    (attachment,) = volume["attachments"]
    assert attachment["server_id"] == server_id
    assert attachment["device"] == "/dev/vdb"

    server = env.show(server_id)
    assert server["os-extended-volumes:volumes_attached"] == [{"id": volume_id}]
    listed = env.get(f"/servers/{server_id}/os-volume_attachments").get_json()
    assert listed["volumeAttachments"] == [resp.get_json()["volumeAttachment"]]
    shown = env.get(f"/servers/{server_id}/os-volume_attachments/{volume_id}")
    assert shown.status_code == 200
    assert shown.get_json()["volumeAttachment"]["device"] == "/dev/vdb"

    # A second volume takes the next device.
    second = vols.create()
    resp = attach(env, server_id, second)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["volumeAttachment"]["device"] == "/dev/vdc"

    resp = env.delete(f"/servers/{server_id}/os-volume_attachments/{volume_id}")
    assert resp.status_code == 202, resp.get_json()
    assert "vdb" not in env.drivers[host].volumes[server_id]
    volume = vols.get(volume_id)
    assert volume["status"] == "available"
    assert volume["attachments"] == []
    assert env.show(server_id)["os-extended-volumes:volumes_attached"] == [{"id": second}]
    assert env.get(f"/servers/{server_id}/os-volume_attachments/{volume_id}").status_code == 404
    # vdb is free again and is reused.
    resp = attach(env, server_id, volume_id)
    assert resp.get_json()["volumeAttachment"]["device"] == "/dev/vdb"

    # Server delete: the guest goes, then the volumes are detached (not deleted).
    assert env.delete(f"/servers/{server_id}").status_code == 204
    env.wait_gone(server_id)
    for vid in (volume_id, second):
        volume = vols.get(vid)
        assert volume["status"] == "available", volume
        assert volume["attachments"] == []


def test_attach_errors(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    server_id, _host = active_server(env, tiny)
    other_id, _ = active_server(env, tiny)
    missing = "00000000-0000-4000-8000-000000000000"
    resp = attach(env, server_id, missing)
    assert resp.status_code == 404, resp.get_json()
    assert missing in resp.get_json()["error"]["message"]
    resp = attach(env, server_id, "not-a-uuid")
    assert resp.status_code == 400

    volume_id = vols.create()
    assert attach(env, server_id, volume_id).status_code == 200
    # Already attached to this server.
    resp = attach(env, server_id, volume_id)
    assert resp.status_code == 409, resp.get_json()
    assert "already attached" in resp.get_json()["error"]["message"]
    # In use by another server: 400 naming the status.
    resp = attach(env, other_id, volume_id)
    assert resp.status_code == 400, resp.get_json()
    assert "in-use" in resp.get_json()["error"]["message"]
    # Not attached: 404 on detach and show.
    assert env.delete(f"/servers/{other_id}/os-volume_attachments/{volume_id}").status_code == 404
    # Another project sees neither the server nor the volume.
    assert attach(env, server_id, volume_id, who="b").status_code == 404

    # A server in a task (here: rebooting) cannot take a volume: 409, volume untouched.
    fresh = vols.create()
    with env.database.transaction() as sess:
        row = sess.get(models.Instance, other_id)
        assert row is not None
        row.task_state = "rebooting"
    try:
        resp = attach(env, other_id, fresh)
        assert resp.status_code == 409, resp.get_json()
        assert "task_state rebooting" in resp.get_json()["error"]["message"]
    finally:
        with env.database.transaction() as sess:
            row = sess.get(models.Instance, other_id)
            assert row is not None
            row.task_state = None
    assert vols.get(fresh)["status"] == "available"

    # SHUTOFF is fine.
    assert env.post(f"/servers/{other_id}/action", {"os-stop": None}).status_code == 202
    env.wait_status(other_id, "SHUTOFF")
    resp = attach(env, other_id, fresh)
    assert resp.status_code == 200, resp.get_json()
    assert env.delete(f"/servers/{other_id}/os-volume_attachments/{fresh}").status_code == 202
    assert vols.get(fresh)["status"] == "available"

    for sid in (server_id, other_id):
        assert env.delete(f"/servers/{sid}").status_code == 204
        env.wait_gone(sid)
    assert vols.get(volume_id)["status"] == "available"


def test_failed_attach_and_detach_roll_back(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    server_id, host = active_server(env, tiny)
    driver = env.drivers[host]
    volume_id = vols.create()
    driver.fail_attach_volume = "the guest refused the disk"
    try:
        resp = attach(env, server_id, volume_id)
    finally:
        driver.fail_attach_volume = None
    assert resp.status_code == 409, resp.get_json()
    assert "the guest refused the disk" in resp.get_json()["error"]["message"]
    volume = vols.get(volume_id)
    assert volume["status"] == "available", volume
    assert volume["attachments"] == []
    assert env.show(server_id)["os-extended-volumes:volumes_attached"] == []
    with env.database.transaction() as sess:
        rows = sess.scalars(
            select(models.BlockDeviceMapping).where(
                models.BlockDeviceMapping.instance_uuid == server_id
            )
        ).all()
        assert rows == []

    # It works afterwards; a detach the guest refuses rolls the volume back to in-use.
    assert attach(env, server_id, volume_id).status_code == 200
    driver.fail_detach_volume = "the guest did not release disk vdb"
    try:
        resp = env.delete(f"/servers/{server_id}/os-volume_attachments/{volume_id}")
    finally:
        driver.fail_detach_volume = None
    assert resp.status_code == 409, resp.get_json()
    assert "did not release" in resp.get_json()["error"]["message"]
    assert vols.get(volume_id)["status"] == "in-use"
    assert env.show(server_id)["os-extended-volumes:volumes_attached"] == [{"id": volume_id}]
    assert env.delete(f"/servers/{server_id}/os-volume_attachments/{volume_id}").status_code == 202
    assert vols.get(volume_id)["status"] == "available"
    assert env.delete(f"/servers/{server_id}").status_code == 204


def test_boot_from_volume(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    boot_id = vols.create()
    data_id = vols.create()
    server = env.post(
        "/servers",
        {
            "server": {
                "name": f"bfv-{secrets.token_hex(3)}",
                "flavorRef": tiny,
                "block_device_mapping_v2": [
                    {
                        "boot_index": 0,
                        "uuid": boot_id,
                        "source_type": "volume",
                        "destination_type": "volume",
                        "delete_on_termination": True,
                    },
                    {
                        "boot_index": -1,
                        "uuid": data_id,
                        "source_type": "volume",
                        "destination_type": "volume",
                    },
                ],
            }
        },
    )
    assert server.status_code == 202, server.get_json()
    server_id = server.get_json()["server"]["id"]
    shown = env.wait_status(server_id, "ACTIVE")
    assert shown["image"] == ""
    assert sorted(v["id"] for v in shown["os-extended-volumes:volumes_attached"]) == sorted(
        [boot_id, data_id]
    )
    host = env.show(server_id, "admin")["OS-EXT-SRV-ATTR:host"]
    guest = env.drivers[host].guests[server_id]
    assert guest.spec.image.image_id == ""
    assert guest.spec.root_gb == 0
    devices = {b.dev: b for b in guest.spec.block_devices}
    assert devices["vda"].volume_id == boot_id
    assert devices["vda"].boot_index == 0
    assert devices["vda"].connection_info["driver_volume_type"] == "nbd"
    assert devices["vdb"].volume_id == data_id
    boot = vols.get(boot_id)
    assert boot["status"] == "in-use"
    assert boot["attachments"][0]["device"] == "/dev/vda"
    assert boot["attachments"][0]["server_id"] == server_id
    # The root volume cannot be detached.
    resp = env.delete(f"/servers/{server_id}/os-volume_attachments/{boot_id}")
    assert resp.status_code == 400, resp.get_json()

    assert env.delete(f"/servers/{server_id}").status_code == 204
    env.wait_gone(server_id)
    wait_for(lambda: vols.gone(boot_id), f"volume {boot_id} deleted with its server")
    assert vols.get(data_id)["status"] == "available"


def test_boot_from_volume_errors(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    def create(bdm: list[dict[str, Any]], **extra: Any) -> Any:
        body = {"server": {"name": "bad-bfv", "flavorRef": tiny, **extra}}
        if bdm:
            body["server"]["block_device_mapping_v2"] = bdm
        return env.post("/servers", body)

    def volume_entry(**kwargs: Any) -> dict[str, Any]:
        return {"boot_index": 0, "source_type": "volume", "destination_type": "volume", **kwargs}

    resp = create([])
    assert resp.status_code == 400
    assert "imageRef" in resp.get_json()["error"]["message"]
    resp = create([volume_entry()])
    assert resp.status_code == 400
    assert "block_device_mapping_v2[0].uuid" in resp.get_json()["error"]["message"]
    resp = create([volume_entry(uuid="00000000-0000-4000-8000-000000000000")])
    assert resp.status_code == 400
    assert "could not be found" in resp.get_json()["error"]["message"]
    resp = create([volume_entry(uuid=vols.create(), source_type="snapshot")])
    assert resp.status_code == 400
    assert "not supported" in resp.get_json()["error"]["message"]
    resp = create([{"boot_index": 0, "source_type": "blank", "destination_type": "local"}])
    assert resp.status_code == 400
    resp = create([volume_entry(uuid=vols.create(), boot_index="x")])
    assert resp.status_code == 400
    assert "boot_index" in resp.get_json()["error"]["message"]

    # A volume in use by another server: 400 naming the status; nothing is reserved.
    server_id, _ = active_server(env, tiny)
    used = vols.create()
    assert attach(env, server_id, used).status_code == 200
    resp = create([volume_entry(uuid=used)])
    assert resp.status_code == 400
    assert "in-use" in resp.get_json()["error"]["message"]
    # Several servers with one volume: 400, and the volume stays available.
    free = vols.create()
    resp = create([volume_entry(uuid=free)], min_count=2)
    assert resp.status_code == 400
    assert vols.get(free)["status"] == "available"
    assert env.delete(f"/servers/{server_id}").status_code == 204


def test_volume_service_down(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    """Attach answers 503 with a message; a server delete still succeeds (logged)."""
    server_id, _ = active_server(env, tiny)
    volume_id = vols.create()
    assert attach(env, server_id, volume_id).status_code == 200
    settings = env.app.extensions["cirrus.compute"]
    settings.volume_api_url = "http://127.0.0.1:9/v3/$(project_id)s"
    try:
        resp = attach(env, server_id, vols.create())
        assert resp.status_code == 503, resp.get_json()
        assert "volume service" in resp.get_json()["error"]["message"]
        assert env.delete(f"/servers/{server_id}").status_code == 204
        env.wait_gone(server_id)
    finally:
        settings.volume_api_url = None
    # The volume was left attached (the service was down): os-detach (or an admin's reset)
    # makes it available, and stops its export.
    assert vols.get(volume_id)["status"] == "in-use"
    resp = vols.call("POST", f"/volumes/{volume_id}/action", "a", {"os-detach": {}})
    assert resp.status_code == 202, resp.text
    assert vols.get(volume_id)["status"] == "available"


def test_boot_from_a_volume_made_from_the_image(env: ComputeEnv, tiny: str, vols: Volumes) -> None:
    """``source_type`` image, ``destination_type`` volume: compute-api has the volume made from
    the image, waits until it is available, then boots from it; deleted with the server."""
    entry = {
        "boot_index": 0,
        "uuid": env.image_id,
        "source_type": "image",
        "destination_type": "volume",
        "delete_on_termination": True,
    }
    resp = env.post(
        "/servers", {"server": {"name": "bfv-img", "flavorRef": tiny,
                                "block_device_mapping_v2": [entry]}},
    )  # fmt: skip
    assert resp.status_code == 400
    assert "block_device_mapping_v2[0].volume_size" in resp.get_json()["error"]["message"]

    resp = env.post(
        "/servers",
        {
            "server": {
                "name": f"bfv-img-{secrets.token_hex(3)}",
                "flavorRef": tiny,
                "block_device_mapping_v2": [{**entry, "volume_size": 1}],
            }
        },
    )
    assert resp.status_code == 202, resp.get_json()
    server_id = resp.get_json()["server"]["id"]
    shown = env.wait_status(server_id, "ACTIVE")
    assert shown["image"] == ""
    ((attached),) = shown["os-extended-volumes:volumes_attached"]
    volume_id = attached["id"]
    vols.created.append(volume_id)
    made = vols.get(volume_id)
    assert made["status"] == "in-use"
    assert made["size"] == 1
    assert made["attachments"][0]["device"] == "/dev/vda"
    host = env.show(server_id, "admin")["OS-EXT-SRV-ATTR:host"]
    (bdm,) = env.drivers[host].guests[server_id].spec.block_devices
    assert (bdm.dev, bdm.volume_id, bdm.boot_index) == ("vda", volume_id, 0)

    assert env.delete(f"/servers/{server_id}").status_code == 204
    env.wait_gone(server_id)
    wait_for(lambda: vols.gone(volume_id), f"volume {volume_id} deleted with its server")


def test_device_names_and_mapping_parsing() -> None:
    from control.common import errors
    from control.compute.api.block_devices import next_device, parse_block_devices

    assert next_device([]) == "/dev/vdb"
    assert next_device(["/dev/vda", "/dev/vdb", "/dev/vdd"]) == "/dev/vdc"
    letters = [f"/dev/vd{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    assert next_device(letters) == "/dev/vdaa"
    assert next_device([*letters, "/dev/vdaa"]) == "/dev/vdab"

    boot = "11111111-1111-4111-8111-111111111111"
    data = "22222222-2222-4222-8222-222222222222"
    mappings, image = parse_block_devices(
        [
            {"source_type": "volume", "uuid": data, "boot_index": "1"},
            {"source_type": "volume", "destination_type": "volume", "uuid": boot,
             "boot_index": "0", "delete_on_termination": "true"},
        ]
    )  # fmt: skip
    assert image is None
    assert [(m.volume_id, m.device, m.boot_index) for m in mappings] == [
        (data, "/dev/vdb", 1),
        (boot, "/dev/vda", 0),
    ]
    assert mappings[1].delete_on_termination is True
    mappings, image = parse_block_devices(
        [{"source_type": "image", "destination_type": "local", "uuid": boot, "boot_index": 0}]
    )
    assert (mappings, image) == ([], boot)
    for bad, field in (
        ([{"source_type": "volume", "uuid": boot, "bogus": 1}], "unknown keys"),
        ([{"source_type": "nfs", "uuid": boot}], "source_type"),
        ([{"source_type": "volume", "destination_type": "tape", "uuid": boot}], "destination"),
        ([{"source_type": "volume", "uuid": boot, "boot_index": 0},
          {"source_type": "volume", "uuid": data, "boot_index": 0}], "more than one"),
        ([{"source_type": "volume", "uuid": boot}, {"source_type": "volume", "uuid": boot}],
         "more than once"),
        (["nope"], "not an object"),
    ):  # fmt: skip
        with pytest.raises(errors.BadRequest, match=field):
            parse_block_devices(bad)
