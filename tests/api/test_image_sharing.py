"""Sharing images: members (owner adds and removes, the member accepts or rejects), what each
member status makes visible, and the tag sub-resource."""

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


def unique(prefix: str = "share") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def listed_ids(env: ImageEnv, who: str, query: str = "") -> set[str]:
    resp = env.get(f"/v2/images?{query}", who)
    assert resp.status_code == 200, resp.get_json()
    return {i["id"] for i in resp.get_json()["images"]}


def test_member_lifecycle(env: ImageEnv) -> None:
    image = env.create(name=unique())
    members = f"/v2/images/{image['id']}/members"
    member_b = env.project_id("b")
    tag = f"name={image['name']}"
    assert_error(env.get(f"/v2/images/{image['id']}", "b"), 404)

    created = env.post(members, {"member": member_b})

    assert created.status_code == 200, created.get_json()
    body = created.get_json()
    assert body["image_id"] == image["id"]
    assert body["member_id"] == member_b
    assert body["status"] == "pending"
    assert body["schema"] == "/v2/schemas/member"
    assert body["created_at"].endswith("Z")
    # Pending: fetchable by id, listed only when asked for.
    assert env.show(image["id"], "b")["id"] == image["id"]
    assert listed_ids(env, "b", tag) == set()
    assert listed_ids(env, "b", f"{tag}&member_status=pending") == {image["id"]}
    assert listed_ids(env, "b", f"{tag}&member_status=all") == {image["id"]}

    accepted = env.client.put(
        f"{members}/{member_b}", json={"status": "accepted"}, headers=env.headers("b")
    )

    assert accepted.status_code == 200, accepted.get_json()
    assert accepted.get_json()["status"] == "accepted"
    assert listed_ids(env, "b", tag) == {image["id"]}
    assert listed_ids(env, "b", f"{tag}&visibility=shared") == {image["id"]}
    assert env.get(f"{members}/{member_b}", "b").get_json()["status"] == "accepted"
    owner_view = env.get(members).get_json()
    assert owner_view["schema"] == "/v2/schemas/members"
    assert [(m["member_id"], m["status"]) for m in owner_view["members"]] == [
        (member_b, "accepted")
    ]

    rejected = env.client.put(
        f"{members}/{member_b}", json={"status": "rejected"}, headers=env.headers("b")
    )

    assert rejected.get_json()["status"] == "rejected"
    assert listed_ids(env, "b", tag) == set()
    assert env.show(image["id"], "b")["id"] == image["id"]

    assert env.delete(f"{members}/{member_b}").status_code == 204
    assert_error(env.get(f"/v2/images/{image['id']}", "b"), 404)
    assert env.get(members).get_json()["members"] == []


def test_member_rules(env: ImageEnv) -> None:
    image = env.create(name=unique())
    private = env.create(name=unique(), visibility="private")
    members = f"/v2/images/{image['id']}/members"
    member_b = env.project_id("b")
    env.post(members, {"member": member_b})

    assert_error(env.post(members, {"member": member_b}), 409, "duplicated")
    assert_error(env.post(members, {}), 400, "'member'")
    assert_error(
        env.post(f"/v2/images/{private['id']}/members", {"member": member_b}),
        403,
        "Only shared images have members",
    )
    # The owner cannot accept for the member; the member cannot add or remove members.
    owner_accepts = env.client.put(
        f"{members}/{member_b}", json={"status": "accepted"}, headers=env.headers("a")
    )
    assert_error(owner_accepts, 403, "modify_member")
    assert_error(env.post(members, {"member": "someone"}, "b"), 403, "add_member")
    assert_error(env.delete(f"{members}/{member_b}", "b"), 403, "delete_member")
    invalid = env.client.put(
        f"{members}/{member_b}", json={"status": "maybe"}, headers=env.headers("b")
    )
    assert_error(invalid, 400, "'status'")
    # A member sees only its own membership; an unknown member is 404.
    env.post(members, {"member": "another-project"})
    assert [m["member_id"] for m in env.get(members, "b").get_json()["members"]] == [member_b]
    assert len(env.get(members).get_json()["members"]) == 2
    assert_error(env.get(f"{members}/another-project", "b"), 404)
    assert_error(env.get(f"{members}/nobody"), 404, "nobody is not a member")
    # At most [image] max_members (3 in these tests).
    env.post(members, {"member": "third-project"})
    assert_error(env.post(members, {"member": "fourth-project"}), 413, "at most 3 members")


def test_members_of_a_private_image_see_nothing(env: ImageEnv) -> None:
    image = env.create(name=unique())
    members = f"/v2/images/{image['id']}/members"
    env.post(members, {"member": env.project_id("b")})
    env.patch(image["id"], [{"op": "replace", "path": "/visibility", "value": "private"}])

    assert_error(env.get(f"/v2/images/{image['id']}", "b"), 404)
    assert_error(env.get(members, "b"), 404)


def test_tags_sub_resource(env: ImageEnv) -> None:
    image = env.create(name=unique(), tags=["one"])
    tags = f"/v2/images/{image['id']}/tags"

    assert env.client.put(f"{tags}/two", headers=env.headers()).status_code == 204
    assert env.client.put(f"{tags}/two", headers=env.headers()).status_code == 204
    assert env.show(image["id"])["tags"] == ["one", "two"]
    assert env.delete(f"{tags}/one").status_code == 204
    assert env.show(image["id"])["tags"] == ["two"]
    assert_error(env.delete(f"{tags}/one"), 404, "no tag 'one'")
    assert_error(env.client.put(f"{tags}/x", headers=env.headers("reader")), 403, "modify_image")
    assert_error(env.client.put(f"{tags}/x", headers=env.headers("b")), 404)
    assert_error(env.client.put(f"{tags}/{'t' * 256}", headers=env.headers()), 400, "'tag'")
    for extra in ("3", "4", "5", "6"):
        env.client.put(f"{tags}/{extra}", headers=env.headers())
    assert_error(env.client.put(f"{tags}/7", headers=env.headers()), 413, "at most 5 tags")
