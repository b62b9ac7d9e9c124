"""Image records through the Flask test client: discovery, create, show, list (filters, sorting,
pagination), JSON-patch updates, delete, project isolation and the 4xx answers Glance gives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api import image_env
from tests.api.identity_helpers import assert_error
from tests.api.image_env import ImageEnv
from tests.fixtures.identity_server import IdentityServer

pytestmark = pytest.mark.mariadb


@pytest.fixture(scope="module")
def env(
    mariadb: Any, identity_server: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageEnv]:
    yield from image_env.env_fixture(mariadb, identity_server, tmp_path_factory)


def unique(prefix: str = "img") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# Discovery, schemas, authentication.


def test_version_discovery_without_a_token(env: ImageEnv) -> None:
    root = env.client.get("/")
    listed = env.client.get("/versions")
    v2 = env.client.get("/v2")

    assert root.status_code == 300
    versions = root.get_json()["versions"]
    assert versions[0]["id"] == "v2.9"
    assert versions[0]["status"] == "CURRENT"
    assert versions[0]["links"] == [{"rel": "self", "href": "http://localhost/v2/"}]
    assert {v["status"] for v in versions[1:]} == {"SUPPORTED"}
    assert "v2.0" in [v["id"] for v in versions]
    assert listed.status_code == 200
    assert listed.get_json() == root.get_json()
    assert v2.get_json()["version"]["id"] == "v2.9"


def test_api_needs_a_token(env: ImageEnv, identity_server: IdentityServer) -> None:
    resp = env.client.get("/v2/images")

    assert_error(resp, 401)
    assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{identity_server.base_url}"'
    assert_error(env.client.get("/v2/images", headers={"X-Auth-Token": "nonsense"}), 401)


def test_schemas(env: ImageEnv) -> None:
    image = env.get("/v2/schemas/image").get_json()
    images = env.get("/v2/schemas/images").get_json()
    member = env.get("/v2/schemas/member").get_json()
    members = env.get("/v2/schemas/members").get_json()

    assert image["name"] == "image"
    assert image["additionalProperties"] == {"type": "string"}
    assert "qcow2" in image["properties"]["disk_format"]["enum"]
    assert image["properties"]["checksum"]["readOnly"] is True
    assert images["properties"]["images"]["items"]["name"] == "image"
    assert member["properties"]["status"]["enum"] == ["pending", "accepted", "rejected"]
    assert members["name"] == "members"


# Create and show.


def test_create_gives_a_queued_flat_image(env: ImageEnv) -> None:
    name = unique()

    resp = env.post(
        "/v2/images",
        {
            "name": name,
            "disk_format": "qcow2",
            "container_format": "bare",
            "tags": ["a", "b", "a"],
            "min_ram": 64,
            "owner_specified.openstack.md5": "",
            "os_distro": "cirrus",
            "kernel_id": "a6c0f0a6-1111-4c2b-9c4f-2b2a8f0f0f0f",
        },
    )

    assert resp.status_code == 201, resp.get_json()
    image = resp.get_json()
    assert resp.headers["Location"] == f"/v2/images/{image['id']}"
    assert image["name"] == name
    assert image["status"] == "queued"
    assert image["visibility"] == "shared"
    assert image["owner"] == env.project_id("a")
    assert image["protected"] is False
    assert image["os_hidden"] is False
    assert image["min_ram"] == 64
    assert image["min_disk"] == 0
    assert image["size"] is None
    assert image["virtual_size"] is None
    assert image["checksum"] is None
    assert image["os_hash_algo"] is None
    assert sorted(image["tags"]) == ["a", "b"]
    assert image["os_distro"] == "cirrus"
    assert image["owner_specified.openstack.md5"] == ""
    assert image["kernel_id"] == "a6c0f0a6-1111-4c2b-9c4f-2b2a8f0f0f0f"
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["schema"] == "/v2/schemas/image"
    assert image["created_at"].endswith("Z")
    assert env.show(image["id"]) == image


def test_create_with_a_given_id_and_duplicate(env: ImageEnv) -> None:
    image_id = str(uuid.uuid4())

    image = env.create(id=image_id, name=unique())

    assert image["id"] == image_id
    assert_error(env.post("/v2/images", {"id": image_id}), 409, image_id)
    assert_error(env.post("/v2/images", {"id": "not-a-uuid"}), 400, "'id'")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"disk_format": "floppy"}, "disk_format"),
        ({"container_format": "zip"}, "container_format"),
        ({"visibility": "everyone"}, "visibility"),
        ({"min_ram": -1}, "min_ram"),
        ({"protected": "yes"}, "protected"),
        ({"name": "x" * 256}, "name"),
        ({"tags": ["ok", 5]}, "tags"),
        ({"os_distro": 7}, "os_distro"),
        ({"kernel_id": "vmlinuz"}, "kernel_id"),
    ],
)
def test_create_refuses_invalid_attributes_naming_the_field(
    env: ImageEnv, body: dict[str, Any], field: str
) -> None:
    assert_error(env.post("/v2/images", body), 400, f"'{field}")


@pytest.mark.parametrize("attribute", ["status", "checksum", "size", "self", "os_hash_value"])
def test_create_refuses_read_only_attributes(env: ImageEnv, attribute: str) -> None:
    assert_error(env.post("/v2/images", {attribute: "x"}), 403, f"'{attribute}' is read-only")


def test_create_refuses_reserved_attributes(env: ImageEnv) -> None:
    assert_error(env.post("/v2/images", {"deleted": "x"}), 403, "'deleted' is reserved")
    assert_error(env.post("/v2/images", {"os_glance_x": "y"}), 403, "reserved")
    assert_error(env.post("/v2/images", ["not", "an", "object"]), 400, "JSON object")


def test_public_images_are_for_admins(env: ImageEnv) -> None:
    refused = env.post("/v2/images", {"name": unique(), "visibility": "public"})
    assert_error(refused, 403, "publicize_image")

    image = env.create("admin", name=unique(), visibility="public")
    community = env.create("a", name=unique(), visibility="community")

    assert image["visibility"] == "public"
    assert community["visibility"] == "community"
    assert env.show(image["id"], "b")["id"] == image["id"]
    assert env.show(community["id"], "b")["id"] == community["id"]


def test_owner_of_another_project_is_for_admins(env: ImageEnv) -> None:
    other = env.project_id("b")

    assert_error(env.post("/v2/images", {"owner": other}), 403, other)
    image = env.create("admin", owner=other, name=unique())

    assert image["owner"] == other
    assert env.show(image["id"], "b")["owner"] == other


def test_reader_cannot_create(env: ImageEnv) -> None:
    assert_error(env.post("/v2/images", {"name": unique()}, "reader"), 403, "add_image")


# Isolation.


def test_private_image_is_invisible_to_another_project(env: ImageEnv) -> None:
    image = env.create(name=unique(), visibility="private")
    path = f"/v2/images/{image['id']}"

    assert_error(env.get(path, "b"), 404, f"No image found with ID {image['id']}")
    assert_error(env.patch(image["id"], [], "b"), 404)
    assert_error(env.delete(path, "b"), 404)
    assert_error(env.get(f"{path}/file", "b"), 404)
    listed = env.get(f"/v2/images?name={image['name']}", "b").get_json()["images"]
    assert listed == []
    assert env.show(image["id"], "reader")["id"] == image["id"]
    assert env.show(image["id"], "admin")["id"] == image["id"]
    assert_error(env.get(f"/v2/images/{uuid.uuid4()}"), 404)


def test_reader_cannot_modify_or_delete(env: ImageEnv) -> None:
    image = env.create(name=unique())

    replace = [{"op": "replace", "path": "/name", "value": "x"}]
    assert_error(env.patch(image["id"], replace, "reader"), 403, "modify_image")
    assert_error(env.delete(f"/v2/images/{image['id']}", "reader"), 403, "delete_image")


# List.


def test_list_filters(env: ImageEnv) -> None:
    tag = unique("tag")
    one = env.create(name=unique(), tags=[tag, "x"], disk_format="qcow2", os_distro="debian")
    two = env.create(name=unique(), tags=[tag], protected=True, container_format="ova")
    hidden = env.create(name=unique(), tags=[tag], os_hidden=True, visibility="private")

    def ids(query: str, who: str = "a") -> set[str]:
        resp = env.get(f"/v2/images?{query}", who)
        assert resp.status_code == 200, resp.get_json()
        return {i["id"] for i in resp.get_json()["images"]}

    assert ids(f"tag={tag}") == {one["id"], two["id"]}
    assert ids(f"tag={tag}&tag=x") == {one["id"]}
    assert ids(f"tag={tag}&os_hidden=true") == {hidden["id"]}
    assert ids(f"tag={tag}&disk_format=qcow2") == {one["id"]}
    assert ids(f"tag={tag}&container_format=ova") == {two["id"]}
    assert ids(f"tag={tag}&protected=true") == {two["id"]}
    assert ids(f"tag={tag}&protected=false") == {one["id"]}
    assert ids(f"tag={tag}&os_distro=debian") == {one["id"]}
    assert ids(f"name={one['name']}") == {one["id"]}
    assert ids(f"id=in:{one['id']},{two['id']}") == {one["id"], two["id"]}
    assert ids(f"tag={tag}&status=queued&owner={env.project_id('a')}") == {one["id"], two["id"]}
    assert ids(f"tag={tag}&visibility=private&os_hidden=true") == {hidden["id"]}
    assert ids(f"tag={tag}&size_min=1") == set()
    assert ids(f"tag={tag}", "b") == set()
    assert_error(env.get("/v2/images?protected=maybe"), 400, "protected")
    assert_error(env.get("/v2/images?visibility=world"), 400, "visibility")
    assert_error(env.get("/v2/images?member_status=sure"), 400, "sure")
    assert_error(env.get("/v2/images?size_min=big"), 400, "size_min")
    assert_error(env.get("/v2/images?created_at=after:2020"), 400, "created_at")
    assert ids(f"tag={tag}&created_at=gte:2000-01-01T00:00:00Z") == {one["id"], two["id"]}


def test_list_body_and_pagination(env: ImageEnv) -> None:
    tag = unique("page")
    made = [env.create(name=f"{tag}-{i}", tags=[tag]) for i in range(5)]

    first = env.get(f"/v2/images?tag={tag}&limit=2&sort=name:asc").get_json()
    assert first["schema"] == "/v2/schemas/images"
    assert first["first"] == f"/v2/images?tag={tag}&limit=2&sort=name%3Aasc"
    assert [i["name"] for i in first["images"]] == [f"{tag}-0", f"{tag}-1"]
    seen = [i["id"] for i in first["images"]]
    next_link = first["next"]
    assert next_link.startswith("/v2/images?") and "marker=" in next_link
    while next_link:
        page = env.get(next_link).get_json()
        seen.extend(i["id"] for i in page["images"])
        next_link = page.get("next")
    assert seen == [m["id"] for m in made]

    newest_first = env.get(f"/v2/images?tag={tag}").get_json()["images"]
    assert [i["id"] for i in newest_first] == [m["id"] for m in reversed(made)]
    by_key = env.get(f"/v2/images?tag={tag}&sort_key=name&sort_dir=desc&limit=3").get_json()
    assert [i["name"] for i in by_key["images"]] == [f"{tag}-4", f"{tag}-3", f"{tag}-2"]
    assert_error(env.get("/v2/images?sort_key=owner"), 400, "Invalid sort key: owner")
    assert_error(env.get("/v2/images?sort=name:up"), 400, "Invalid sort direction")
    assert_error(env.get("/v2/images?sort=name&sort_key=id"), 400, "cannot be combined")
    assert_error(env.get(f"/v2/images?marker={uuid.uuid4()}"), 400, "marker")
    assert_error(env.get("/v2/images?limit=-1"), 400, "limit")


def test_list_hides_other_community_images_unless_asked(env: ImageEnv) -> None:
    tag = unique("comm")
    community = env.create("b", name=unique(), tags=[tag], visibility="community")

    assert env.get(f"/v2/images?tag={tag}").get_json()["images"] == []
    listed = env.get(f"/v2/images?tag={tag}&visibility=community").get_json()["images"]
    everything = env.get(f"/v2/images?tag={tag}&visibility=all").get_json()["images"]
    assert [i["id"] for i in listed] == [community["id"]]
    assert [i["id"] for i in everything] == [community["id"]]


# Update.


def test_patch_core_and_extra_properties(env: ImageEnv) -> None:
    image = env.create(name=unique(), os_distro="debian", stale="yes")

    resp = env.patch(
        image["id"],
        [
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/os_version", "value": "12"},
            {"op": "add", "path": "/os_distro", "value": "ubuntu"},
            {"op": "replace", "path": "/min_disk", "value": 2},
            {"op": "add", "path": "/protected", "value": True},
            {"op": "remove", "path": "/stale"},
            {"op": "add", "path": "/tags", "value": ["t1", "t2"]},
            {"op": "add", "path": "/tags/-", "value": "t3"},
            {"op": "add", "path": "/kernel_id", "value": str(uuid.uuid4())},
            {"op": "replace", "path": "/visibility", "value": "private"},
        ],
    )

    assert resp.status_code == 200, resp.get_json()
    updated = resp.get_json()
    assert updated["name"] == "renamed"
    assert updated["os_version"] == "12"
    assert updated["os_distro"] == "ubuntu"
    assert updated["min_disk"] == 2
    assert updated["protected"] is True
    assert updated["visibility"] == "private"
    assert "stale" not in updated
    assert updated["tags"] == ["t1", "t2", "t3"]
    assert env.show(image["id"]) == updated
    assert updated["updated_at"] >= image["updated_at"]
    env.patch(image["id"], [{"op": "replace", "path": "/protected", "value": False}])


def test_patch_as_the_sdk_sends_tag_changes(env: ImageEnv) -> None:
    image = env.create(name=unique(), tags=["a", "c"])

    resp = env.patch(
        image["id"],
        [
            {"op": "replace", "path": "/tags/0", "value": "b"},
            {"op": "remove", "path": "/tags/1"},
        ],
    )

    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["tags"] == ["b"]


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"op": "replace", "path": "/status", "value": "active"}, 403, "'status' is read-only"),
        ({"op": "replace", "path": "/id", "value": "x"}, 403, "'id' is read-only"),
        ({"op": "add", "path": "/checksum", "value": "x"}, 403, "read-only"),
        ({"op": "add", "path": "/deleted", "value": "x"}, 403, "reserved"),
        ({"op": "remove", "path": "/name"}, 403, "Property name may not be removed"),
        ({"op": "remove", "path": "/nothing"}, 409, "Property nothing does not exist"),
        ({"op": "replace", "path": "/nothing", "value": "x"}, 409, "does not exist"),
        ({"op": "replace", "path": "/disk_format", "value": "floppy"}, 400, "'disk_format'"),
        ({"op": "replace", "path": "/protected", "value": "no"}, 400, "'protected'"),
        ({"op": "add", "path": "/os_distro", "value": 12}, 400, "'os_distro'"),
        ({"op": "add", "path": "/ramdisk_id", "value": "initrd"}, 400, "'ramdisk_id'"),
        ({"op": "move", "path": "/name", "from": "/x"}, 400, "Invalid operation"),
        ({"op": "add", "path": "name", "value": "x"}, 400, "does not start with"),
        ({"op": "add", "path": "/a/b", "value": "x"}, 400, "Invalid JSON pointer"),
        ({"op": "add", "path": "/name"}, 400, 'requires a member named "value"'),
        ({"op": "replace", "path": "/visibility", "value": "public"}, 403, "publicize_image"),
        ({"op": "replace", "path": "/owner", "value": "someone"}, 403, "Owner can't be updated"),
    ],
)
def test_patch_refusals(env: ImageEnv, change: dict[str, Any], code: int, message: str) -> None:
    image = env.create(name=unique())

    assert_error(env.patch(image["id"], [change]), code, message)
    assert env.show(image["id"]) == image


def test_patch_needs_the_json_patch_media_type(env: ImageEnv) -> None:
    image = env.create(name=unique())

    resp = env.client.patch(
        f"/v2/images/{image['id']}",
        json=[{"op": "replace", "path": "/name", "value": "x"}],
        headers=env.headers(),
    )

    assert_error(resp, 415, "openstack-images-v2.1-json-patch")
    assert "application/openstack-images-v2.1-json-patch" in resp.headers["Accept-Patch"]
    assert_error(env.patch(image["id"], {"op": "add"}), 400, "JSON array")  # type: ignore[arg-type]


def test_patch_draft4_format(env: ImageEnv) -> None:
    image = env.create(name=unique(), extra="1")

    resp = env.client.patch(
        f"/v2/images/{image['id']}",
        json=[{"replace": "/name", "value": "old-style"}, {"add": "/extra", "value": "2"}],
        headers=env.headers(**{"Content-Type": "application/openstack-images-v2.0-json-patch"}),
    )

    assert_error(resp, 409, "Property extra already present")


def test_admin_may_publicize_and_change_owner(env: ImageEnv) -> None:
    image = env.create(name=unique())

    resp = env.patch(
        image["id"],
        [
            {"op": "replace", "path": "/visibility", "value": "public"},
            {"op": "replace", "path": "/owner", "value": env.project_id("b")},
        ],
        "admin",
    )

    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["visibility"] == "public"
    assert resp.get_json()["owner"] == env.project_id("b")


def test_tag_quota_is_413(env: ImageEnv) -> None:
    image = env.create(name=unique(), tags=["1", "2", "3", "4", "5"])

    change = [{"op": "add", "path": "/tags/-", "value": "6"}]
    assert_error(env.patch(image["id"], change), 413, "at most 5 tags")
    assert_error(env.post("/v2/images", {"tags": list("abcdef")}), 413, "at most 5 tags")


# Delete.


def test_delete_and_protected(env: ImageEnv) -> None:
    image = env.create(name=unique(), protected=True)
    path = f"/v2/images/{image['id']}"

    assert_error(env.delete(path), 403, "protected")
    env.patch(image["id"], [{"op": "replace", "path": "/protected", "value": False}])
    assert env.delete(path).status_code == 204
    assert_error(env.get(path), 404)
    assert_error(env.delete(path), 404)
