"""Volumes through the HTTP API against the real stack (volume_server: gunicorn, RPC service and
a file-backend agent): discovery and microversions, create/list/show/update/delete, validation,
filters and pagination, metadata, project isolation, errors in Cinder's body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.api import volume_env
from tests.api.volume_env import VolumeEnv, assert_error, unique

pytestmark = [pytest.mark.mariadb, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def env(volume_server: Any, identity_server: Any) -> Iterator[VolumeEnv]:
    yield from volume_env.env_fixture(volume_server, identity_server)


def test_version_discovery_without_a_token(env: VolumeEnv) -> None:
    root = requests.get(f"{env.server.url}/", timeout=10)
    v3 = requests.get(f"{env.server.url}/v3/", timeout=10)

    assert root.status_code == 300
    (version,) = root.json()["versions"]
    assert version["id"] == "v3.0"
    assert version["status"] == "CURRENT"
    assert (version["min_version"], version["version"]) == ("3.0", "3.0")
    assert {"rel": "self", "href": f"{env.server.url}/v3/"} in version["links"]
    assert v3.status_code == 200
    assert v3.json()["versions"][0]["id"] == "v3.0"


def test_microversion_header_is_echoed_and_higher_ones_refused(env: VolumeEnv) -> None:
    ok = env.get("/volumes", headers={"OpenStack-API-Version": "volume 3.0"})
    latest = env.get("/volumes", headers={"OpenStack-API-Version": "volume latest"})
    high = env.get("/volumes", headers={"OpenStack-API-Version": "volume 3.60"})

    assert ok.status_code == 200
    assert ok.headers["OpenStack-API-Version"] == "volume 3.0"
    assert "OpenStack-API-Version" in ok.headers["Vary"]
    assert latest.headers["OpenStack-API-Version"] == "volume 3.0"
    assert_error(high, 406, "Version 3.60 is not supported", "maximum is 3.0")


def test_a_token_is_needed(env: VolumeEnv) -> None:
    resp = requests.get(f"{env.server.project_url(env.project_id())}/volumes", timeout=10)

    assert_error(resp, 401)
    assert "WWW-Authenticate" in resp.headers


def test_create_show_list_update_delete(env: VolumeEnv) -> None:
    name = unique()
    resp = env.post(
        "/volumes",
        {
            "volume": {
                "size": 1,
                "name": name,
                "description": "first",
                "metadata": {"k": "v"},
                # cinderclient sends explicit nulls.
                "volume_type": None,
                "availability_zone": None,
                "snapshot_id": None,
                "source_volid": None,
                "imageRef": None,
                "consistencygroup_id": None,
            }
        },
    )
    assert resp.status_code == 202, resp.text
    created = resp.json()["volume"]
    assert created["status"] == "creating"
    assert created["volume_type"] == "__DEFAULT__"
    assert created["metadata"] == {"k": "v"}
    assert created["bootable"] == "false"
    assert created["os-vol-tenant-attr:tenant_id"] == env.project_id()
    assert "os-vol-host-attr:host" not in created

    volume = env.wait_volume(created["id"], "available")
    assert volume["size"] == 1
    assert volume["attachments"] == []
    assert volume["availability_zone"] == "nova"
    assert volume["links"][0]["href"].endswith(f"/v3/{env.project_id()}/volumes/{volume['id']}")
    assert (env.server.agent_volumes_dir).exists()

    summary = env.get("/volumes").json()["volumes"]
    assert {"id": volume["id"], "name": name} == {
        k: v for k, v in next(v for v in summary if v["id"] == volume["id"]).items() if k != "links"
    }
    detail = env.get(f"/volumes/detail?name={name}").json()["volumes"]
    assert [v["id"] for v in detail] == [volume["id"]]
    assert detail[0]["metadata"] == {"k": "v"}

    updated = env.put(
        f"/volumes/{volume['id']}",
        {"volume": {"name": f"{name}-2", "description": "second", "metadata": {"a": "b"}}},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["volume"]["name"] == f"{name}-2"
    assert env.show_volume(volume["id"])["metadata"] == {"a": "b"}

    admin_view = env.get(f"/volumes/{volume['id']}", "admin", project=env.project_id("admin"))
    assert admin_view.status_code == 200
    host = admin_view.json()["volume"]["os-vol-host-attr:host"]
    assert host == f"{env.server.agent_host}@file#file"

    env.delete_volume(volume["id"])
    assert_error(env.get(f"/volumes/{volume['id']}"), 404, volume["id"])


def test_validation_names_the_field(env: VolumeEnv) -> None:
    for body, fragment in (
        ({"volume": {"size": 0}}, "size"),
        ({"volume": {"size": "x"}}, "size"),
        ({"volume": {"size": 1, "metadata": {"k": 1}}}, "metadata"),
        ({"volume": {"size": 1, "name": "n" * 256}}, "name"),
        ({"volume": {"name": "no size"}}, "size"),
        ({"nothing": {}}, "volume"),
    ):
        assert_error(env.post("/volumes", body), 400, fragment)
    assert_error(
        env.post("/volumes", {"volume": {"size": 1, "volume_type": "nope"}}),
        404,
        "Volume type with name nope could not be found.",
    )
    assert_error(
        env.post("/volumes", {"volume": {"size": 1, "availability_zone": "mars"}}),
        400,
        "Availability zone 'mars' is invalid.",
    )


def test_project_isolation(env: VolumeEnv) -> None:
    volume = env.create_volume("a", wait=None)

    assert_error(env.get(f"/volumes/{volume['id']}", "b"), 404, volume["id"])
    assert_error(env.delete(f"/volumes/{volume['id']}", "b"), 404)
    assert volume["id"] not in [v["id"] for v in env.get("/volumes/detail", "b").json()["volumes"]]
    # Another project in the path is refused.
    assert_error(env.get("/volumes", "b", project=env.project_id("a")), 403, "not the project")
    # Admins see every project with all_tenants.
    everything = env.get("/volumes/detail?all_tenants=1", "admin").json()["volumes"]
    assert volume["id"] in [v["id"] for v in everything]
    env.wait_volume(volume["id"], "available")
    env.delete_volume(volume["id"])


def test_filters_sorting_and_pagination(env: VolumeEnv) -> None:
    who = env.new_account()
    ids = [env.create_volume(who, wait=None, metadata={"n": str(i)})["id"] for i in range(3)]
    for ident in ids:
        env.wait_volume(ident, "available", who)

    page1 = env.get("/volumes/detail?limit=2&sort=created_at:asc", who).json()
    assert [v["id"] for v in page1["volumes"]] == ids[:2]
    next_href = page1["volumes_links"][0]["href"]
    page2 = env.http.get(next_href, headers={"X-Auth-Token": env.token(who)}, timeout=10).json()
    assert [v["id"] for v in page2["volumes"]] == ids[2:]
    assert "volumes_links" not in page2
    by_meta = env.get("/volumes/detail?metadata={'n': '1'}", who).json()["volumes"]
    assert [v["id"] for v in by_meta] == [ids[1]]
    by_status = env.get("/volumes/detail?status=error", who).json()["volumes"]
    assert by_status == []
    assert_error(env.get("/volumes?sort=bogus:asc", who), 400, "bogus")
    assert_error(env.get("/volumes?marker=nope", who), 400, "Marker nope")
    for ident in ids:
        env.delete_volume(ident, who, wait=False)
    for ident in ids:
        env.wait_gone(f"/volumes/{ident}", who)


def test_metadata_sub_resource(env: VolumeEnv) -> None:
    volume = env.create_volume(wait=None, metadata={"a": "1"})
    path = f"/volumes/{volume['id']}/metadata"

    assert env.get(path).json() == {"metadata": {"a": "1"}}
    assert env.post(path, {"metadata": {"b": "2"}}).json() == {"metadata": {"a": "1", "b": "2"}}
    assert env.put(f"{path}/b", {"meta": {"b": "3"}}).json() == {"meta": {"b": "3"}}
    assert env.get(f"{path}/b").json() == {"meta": {"b": "3"}}
    assert env.delete(f"{path}/a").status_code == 200
    assert_error(env.get(f"{path}/a"), 404)
    assert env.put(path, {"metadata": {"z": "9"}}).json() == {"metadata": {"z": "9"}}
    env.wait_volume(volume["id"], "available")
    env.delete_volume(volume["id"])
