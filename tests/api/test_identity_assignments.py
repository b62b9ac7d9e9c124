"""Role grants on projects and domains, and ``GET /v3/role_assignments`` with its filters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.identity_env import IdentityEnv
from tests.api.identity_helpers import Admin, assert_error


@pytest.fixture()
def admin(identity: IdentityEnv) -> Admin:
    return Admin(identity)


@pytest.mark.parametrize("targets", ["projects", "domains"])
def test_grant_check_list_revoke(identity: IdentityEnv, admin: Admin, targets: str) -> None:
    client, headers = identity.client, identity.headers()
    target = admin.project() if targets == "projects" else admin.domain()
    user, role = admin.user(), admin.role()
    path = f"/v3/{targets}/{target['id']}/users/{user['id']}/roles/{role['id']}"

    assert client.head(path, headers=headers).status_code == 404
    assert_error(client.get(path, headers=headers), 404, "Could not find role assignment")
    assert client.put(path, headers=headers).status_code == 204
    assert client.put(path, headers=headers).status_code == 204  # idempotent
    assert client.head(path, headers=headers).status_code == 204
    assert client.get(path, headers=headers).status_code == 204

    listed = client.get(f"/v3/{targets}/{target['id']}/users/{user['id']}/roles", headers=headers)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.get_json()["roles"]] == [role["id"]]
    assert "links" in listed.get_json()

    assert client.delete(path, headers=headers).status_code == 204
    assert client.head(path, headers=headers).status_code == 404
    assert_error(client.delete(path, headers=headers), 404, "Could not find role assignment")


@pytest.mark.parametrize("targets", ["projects", "domains"])
def test_grant_404_names_what_is_missing(identity: IdentityEnv, admin: Admin, targets: str) -> None:
    client, headers = identity.client, identity.headers()
    kind = targets[:-1]
    target = admin.project() if targets == "projects" else admin.domain()
    user, role = admin.user(), admin.role()
    cases = [
        (f"/v3/{targets}/nope/users/{user['id']}/roles/{role['id']}", f"{kind}: nope."),
        (f"/v3/{targets}/{target['id']}/users/nope/roles/{role['id']}", "user: nope."),
        (f"/v3/{targets}/{target['id']}/users/{user['id']}/roles/nope", "role: nope."),
    ]
    for path, message in cases:
        for method in ("put", "get", "delete"):
            assert_error(getattr(client, method)(path, headers=headers), 404, message)
    resp = client.get(f"/v3/{targets}/{target['id']}/users/nope/roles", headers=headers)
    assert_error(resp, 404, "user: nope.")


def _assignments(identity: IdentityEnv, query: str, token: str | None = None) -> list[Any]:
    resp = identity.client.get(f"/v3/role_assignments?{query}", headers=identity.headers(token))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["links"]["self"].endswith("/v3/role_assignments")
    result: list[Any] = body["role_assignments"]
    return result


def test_role_assignments_filters(identity: IdentityEnv, admin: Admin) -> None:
    project, other_project, domain = admin.project(), admin.project(), admin.domain()
    user, other_user = admin.user(), admin.user()
    admin.grant(project["id"], user["id"], "member")
    admin.grant(other_project["id"], user["id"], "reader")
    admin.grant(project["id"], other_user["id"], "reader")
    member_id, reader_id = admin.role_id("member"), admin.role_id("reader")
    domain_path = f"/v3/domains/{domain['id']}/users/{user['id']}/roles/{reader_id}"
    assert identity.client.put(domain_path, headers=identity.headers()).status_code == 204

    by_user = _assignments(identity, f"user.id={user['id']}")
    assert len(by_user) == 3
    on_project = [a for a in by_user if a["scope"].get("project", {}).get("id") == project["id"]]
    assert on_project == [
        {
            "role": {"id": member_id},
            "user": {"id": user["id"]},
            "scope": {"project": {"id": project["id"]}},
            "links": {
                "assignment": f"http://localhost/v3/projects/{project['id']}/users/"
                f"{user['id']}/roles/{member_id}"
            },
        }
    ]
    by_project = _assignments(identity, f"scope.project.id={project['id']}")
    assert {(a["user"]["id"], a["role"]["id"]) for a in by_project} == {
        (user["id"], member_id),
        (other_user["id"], reader_id),
    }
    by_role = _assignments(identity, f"scope.project.id={project['id']}&role.id={reader_id}")
    assert [a["user"]["id"] for a in by_role] == [other_user["id"]]
    by_domain = _assignments(identity, f"scope.domain.id={domain['id']}")
    assert by_domain == [
        {
            "role": {"id": reader_id},
            "user": {"id": user["id"]},
            "scope": {"domain": {"id": domain["id"]}},
            "links": {"assignment": f"http://localhost{domain_path}"},
        }
    ]
    assert _assignments(identity, f"user.id={user['id']}&group.id=any") == []
    resp = identity.client.get(
        f"/v3/role_assignments?scope.project.id={project['id']}&scope.domain.id={domain['id']}",
        headers=identity.headers(),
    )
    assert_error(resp, 400, "not both")


def test_role_assignments_effective_expands_implied_roles(
    identity: IdentityEnv, admin: Admin
) -> None:
    project, user = admin.project(), admin.user()
    admin.grant(project["id"], user["id"], "admin")
    ids = {name: admin.role_id(name) for name in ("admin", "member", "reader")}
    query = f"user.id={user['id']}&scope.project.id={project['id']}"

    direct = _assignments(identity, query)
    assert [a["role"]["id"] for a in direct] == [ids["admin"]]

    effective = _assignments(identity, query + "&effective")
    assert {a["role"]["id"] for a in effective} == set(ids.values())
    implied = [a for a in effective if a["role"]["id"] == ids["reader"]]
    assert implied[0]["links"]["prior_role"].endswith(f"/v3/roles/{ids['member']}")
    assert implied[0]["links"]["assignment"].endswith(f"/roles/{ids['admin']}")

    only_reader = _assignments(identity, query + f"&effective=true&role.id={ids['reader']}")
    assert [a["role"]["id"] for a in only_reader] == [ids["reader"]]
    assert _assignments(identity, query + f"&role.id={ids['reader']}") == []


def test_role_assignments_include_names(identity: IdentityEnv, admin: Admin) -> None:
    project, user = admin.project(), admin.user()
    admin.grant(project["id"], user["id"], "member")
    (assignment,) = _assignments(identity, f"user.id={user['id']}&include_names=true")
    assert assignment["role"] == {"id": admin.role_id("member"), "name": "member"}
    assert assignment["user"] == {
        "id": user["id"],
        "name": user["name"],
        "domain": {"id": "default", "name": "Default"},
    }
    assert assignment["scope"]["project"] == {
        "id": project["id"],
        "name": project["name"],
        "domain": {"id": "default", "name": "Default"},
    }


def test_role_assignments_include_subtree(identity: IdentityEnv, admin: Admin) -> None:
    parent = admin.project()
    child = admin.project(parent_id=parent["id"])
    user = admin.user()
    admin.grant(child["id"], user["id"])
    assert _assignments(identity, f"scope.project.id={parent['id']}") == []
    subtree = _assignments(identity, f"scope.project.id={parent['id']}&include_subtree=true")
    assert [a["scope"]["project"]["id"] for a in subtree] == [child["id"]]


def test_user_delete_removes_assignments(identity: IdentityEnv, admin: Admin) -> None:
    project, user = admin.project(), admin.user()
    admin.grant(project["id"], user["id"])
    resp = identity.client.delete(f"/v3/users/{user['id']}", headers=identity.headers())
    assert resp.status_code == 204
    assert _assignments(identity, f"scope.project.id={project['id']}") == []


def test_group_paths_say_groups_are_not_supported(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    project = admin.project()
    for method, path in [
        ("get", "/v3/groups"),
        ("post", "/v3/groups"),
        ("get", "/v3/groups/g1/users"),
        ("get", "/v3/users/u1/groups"),
        ("put", f"/v3/projects/{project['id']}/groups/g1/roles/r1"),
    ]:
        assert_error(getattr(client, method)(path, headers=headers), 404, "Groups are not")
