"""Who may do what: policy on the CRUD endpoints, self-service, and the ways a token stops
working (disabled user or project, password change, deletion). Each password hash or token costs
a quarter of a second, so every test makes only the users it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.identity_env import IdentityEnv, build
from tests.api.identity_helpers import Admin, assert_error, unique


@pytest.fixture()
def admin(identity: IdentityEnv) -> Admin:
    return Admin(identity)


def _password_auth(name: str, password: str, project: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": name, "domain": {"id": "default"}, "password": password}
                },
            }
        }
    }
    if project is not None:
        body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    return body


def _works(identity: IdentityEnv, token: str) -> bool:
    status = identity.client.get("/v3/auth/catalog", headers=identity.headers(token)).status_code
    assert status in (200, 401)
    return status == 200


def test_a_token_is_needed(identity: IdentityEnv) -> None:
    for path in ("/v3/users", "/v3/projects", "/v3/domains", "/v3/roles", "/v3/role_assignments"):
        assert_error(identity.client.get(path), 401)


def test_member_powers(identity: IdentityEnv, admin: Admin) -> None:
    client = identity.client
    user, project, _password, token = admin.member()
    headers = identity.headers(token)
    other = admin.project()

    assert_error(client.get("/v3/users", headers=headers), 403, "identity:list_users")
    assert_error(client.get("/v3/projects", headers=headers), 403, "identity:list_projects")
    assert_error(client.get("/v3/domains", headers=headers), 403)
    assert_error(
        client.post("/v3/projects", json={"project": {"name": unique("p")}}, headers=headers), 403
    )
    assert_error(client.post("/v3/users", json={"user": {"name": "x"}}, headers=headers), 403)
    assert_error(client.post("/v3/roles", json={"role": {"name": "x"}}, headers=headers), 403)
    assert_error(client.delete(f"/v3/projects/{project['id']}", headers=headers), 403)
    assert client.get(f"/v3/projects/{project['id']}", headers=headers).status_code == 200
    assert_error(client.get(f"/v3/projects/{other['id']}", headers=headers), 403)
    assert client.get("/v3/roles", headers=headers).status_code == 200
    assert client.get("/v3/services", headers=headers).status_code == 200
    assert client.get("/v3/regions", headers=headers).status_code == 200
    assert_error(client.post("/v3/services", json={"service": {"type": "x"}}, headers=headers), 403)
    # No escalation: a member cannot grant themselves admin.
    admin_role = admin.role_id("admin")
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{admin_role}"
    assert_error(client.put(grant, headers=headers), 403, "identity:create_grant")
    # Reading one's own project's grants is allowed, another project's is not.
    own = f"/v3/projects/{project['id']}/users/{user['id']}/roles"
    assert client.get(own, headers=headers).status_code == 200
    theirs = f"/v3/projects/{other['id']}/users/{user['id']}/roles"
    assert_error(client.get(theirs, headers=headers), 403)


def test_a_user_reads_and_updates_their_own_record_only(
    identity: IdentityEnv, admin: Admin
) -> None:
    client = identity.client
    user, project, _password, token = admin.member()
    headers = identity.headers(token)
    someone = admin.user()

    assert (
        client.get(f"/v3/users/{user['id']}", headers=headers).get_json()["user"]["id"]
        == (user["id"])
    )
    assert_error(client.get(f"/v3/users/{someone['id']}", headers=headers), 403)
    resp = client.patch(
        f"/v3/users/{user['id']}", json={"user": {"email": "me@example.com"}}, headers=headers
    )
    assert resp.status_code == 200
    assert resp.get_json()["user"]["email"] == "me@example.com"
    for change in ({"enabled": False}, {"name": unique("n")}, {"password": "new-one-123"}):
        resp = client.patch(f"/v3/users/{user['id']}", json={"user": change}, headers=headers)
        assert_error(resp, 403, "identity:update_user")
    resp = client.patch(
        f"/v3/users/{someone['id']}", json={"user": {"email": "x@example.com"}}, headers=headers
    )
    assert_error(resp, 403)
    projects = client.get(f"/v3/users/{user['id']}/projects", headers=headers).get_json()
    assert [p["id"] for p in projects["projects"]] == [project["id"]]
    assert_error(client.get(f"/v3/users/{someone['id']}/projects", headers=headers), 403)


def test_a_user_sees_only_their_own_projects_assignments(
    identity: IdentityEnv, admin: Admin
) -> None:
    client = identity.client
    user_a, project_a, _password, token_a = admin.member()
    project_b = admin.project()
    user_b = admin.user()
    admin.grant(project_b["id"], user_b["id"])
    headers = identity.headers(token_a)

    own = client.get(f"/v3/role_assignments?scope.project.id={project_a['id']}", headers=headers)
    assert own.status_code == 200
    assert {a["user"]["id"] for a in own.get_json()["role_assignments"]} == {user_a["id"]}
    resp = client.get(f"/v3/role_assignments?scope.project.id={project_b['id']}", headers=headers)
    assert_error(resp, 403, "identity:list_role_assignments")
    assert_error(client.get("/v3/role_assignments", headers=headers), 403)
    assert_error(client.get(f"/v3/role_assignments?user.id={user_b['id']}", headers=headers), 403)


def test_a_disabled_user_loses_their_tokens(identity: IdentityEnv, admin: Admin) -> None:
    client = identity.client
    user, project, password, token = admin.member()
    assert _works(identity, token)
    resp = client.patch(
        f"/v3/users/{user['id']}", json={"user": {"enabled": False}}, headers=identity.headers()
    )
    assert resp.status_code == 200
    assert not _works(identity, token)
    assert_error(client.post("/v3/auth/tokens", json=_password_auth(user["name"], password)), 401)
    client.patch(
        f"/v3/users/{user['id']}", json={"user": {"enabled": True}}, headers=identity.headers()
    )
    assert not _works(identity, token), "re-enabling must not revive a revoked token"
    assert _works(identity, identity.token(user["name"], password, project=project["name"]))


def test_a_disabled_project_cannot_be_scoped_to(identity: IdentityEnv, admin: Admin) -> None:
    client = identity.client
    user, project, password, token = admin.member()
    resp = client.patch(
        f"/v3/projects/{project['id']}",
        json={"project": {"enabled": False}},
        headers=identity.headers(),
    )
    assert resp.status_code == 200
    assert not _works(identity, token)
    resp = client.post(
        "/v3/auth/tokens", json=_password_auth(user["name"], password, project["name"])
    )
    assert_error(resp, 401)


def test_revoking_the_last_grant_invalidates_the_token(identity: IdentityEnv, admin: Admin) -> None:
    user, project, _password, token = admin.member()
    grant = f"/v3/projects/{project['id']}/users/{user['id']}/roles/{admin.role_id('member')}"
    assert identity.client.delete(grant, headers=identity.headers()).status_code == 204
    assert not _works(identity, token)


def test_a_deleted_users_token_is_401(identity: IdentityEnv, admin: Admin) -> None:
    user, _project, _password, token = admin.member()
    assert _works(identity, token)
    resp = identity.client.delete(f"/v3/users/{user['id']}", headers=identity.headers())
    assert resp.status_code == 204
    assert not _works(identity, token)


def test_a_deleted_projects_token_is_401(identity: IdentityEnv, admin: Admin) -> None:
    _user, project, _password, token = admin.member()
    resp = identity.client.delete(f"/v3/projects/{project['id']}", headers=identity.headers())
    assert resp.status_code == 204
    assert not _works(identity, token)


def test_changing_ones_own_password(identity: IdentityEnv, admin: Admin) -> None:
    client = identity.client
    user, project, password, token = admin.member()
    path = f"/v3/users/{user['id']}/password"
    headers = identity.headers(token)

    wrong = {"user": {"password": "new-Passw0rd", "original_password": "not-it"}}
    assert_error(client.post(path, json=wrong, headers=headers), 401, "original password")
    assert _works(identity, token)
    missing = {"user": {"password": "new-Passw0rd"}}
    assert_error(client.post(path, json=missing, headers=headers), 400, "user.original_password")

    body = {"user": {"password": "new-Passw0rd", "original_password": password}}
    resp = client.post(path, json=body, headers=headers)
    assert resp.status_code == 204, resp.get_json()
    assert not _works(identity, token)
    assert_error(client.post("/v3/auth/tokens", json=_password_auth(user["name"], password)), 401)
    new_token = identity.token(user["name"], "new-Passw0rd", project=project["name"])
    assert _works(identity, new_token)

    # Nobody changes another user's password this way, not even with it in hand.
    someone = admin.user()
    other = {"user": {"password": "x-Passw0rd", "original_password": "new-Passw0rd"}}
    resp = client.post(
        f"/v3/users/{someone['id']}/password", json=other, headers=identity.headers(new_token)
    )
    assert_error(resp, 403, "identity:change_password")

    # lock_password forbids it.
    client.patch(
        f"/v3/users/{user['id']}",
        json={"user": {"options": {"lock_password": True}}},
        headers=identity.headers(),
    )
    locked = {"user": {"password": "x-Passw0rd", "original_password": "new-Passw0rd"}}
    resp = client.post(path, json=locked, headers=identity.headers(new_token))
    assert_error(resp, 403, "lock_password")


def test_an_admin_setting_a_password_revokes_the_users_tokens(
    identity: IdentityEnv, admin: Admin
) -> None:
    user, project, _password, token = admin.member()
    resp = identity.client.patch(
        f"/v3/users/{user['id']}",
        json={"user": {"password": "set-by-Adm1n"}},
        headers=identity.headers(),
    )
    assert resp.status_code == 200
    assert "set-by-Adm1n" not in resp.get_data(as_text=True)
    assert not _works(identity, token)
    assert _works(identity, identity.token(user["name"], "set-by-Adm1n", project=project["name"]))


def test_a_policy_file_overrides_the_defaults(mariadb: Any, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        yaml.safe_dump({"identity:list_users": "role:member", "identity:get_role": "!"})
    )
    env = build(mariadb, tmp_path, extra={"policy": {"file": str(policy_file)}})
    try:
        admin = Admin(env)
        _user, _project, _password, token = admin.member()
        resp = env.client.get("/v3/users", headers=env.headers(token))
        assert resp.status_code == 200
        assert "admin" in {u["name"] for u in resp.get_json()["users"]}
        reader = admin.role_id("reader")
        # "!" denies everyone, the admin included; untouched rules keep their defaults.
        assert_error(env.client.get(f"/v3/roles/{reader}", headers=env.headers()), 403)
        assert_error(env.client.get("/v3/projects", headers=env.headers(token)), 403)
    finally:
        env.app.extensions["cirrus.db"].dispose()
