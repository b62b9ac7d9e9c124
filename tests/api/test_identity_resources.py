"""CRUD of domains, projects, users, roles, regions, services and endpoints as the admin: the
bodies clients read, filters, 404s, 409 duplicates and 400s naming the field."""

from __future__ import annotations

import pytest

from tests.api.identity_env import IdentityEnv
from tests.api.identity_helpers import Admin, assert_error, unique


@pytest.fixture()
def admin(identity: IdentityEnv) -> Admin:
    return Admin(identity)


# Domains.


def test_domain_lifecycle(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    domain = admin.domain(description="a test domain")
    assert domain["enabled"] is True
    assert domain["description"] == "a test domain"
    assert domain["links"]["self"].endswith(f"/v3/domains/{domain['id']}")

    listed = client.get(f"/v3/domains?name={domain['name']}", headers=headers).get_json()
    assert [d["id"] for d in listed["domains"]] == [domain["id"]]
    assert listed["links"]["self"].endswith("/v3/domains")
    assert client.get(f"/v3/domains/{domain['id']}", headers=headers).get_json()["domain"] == domain

    resp = client.patch(
        f"/v3/domains/{domain['id']}",
        json={"domain": {"description": "changed"}},
        headers=headers,
    )
    assert resp.status_code == 200
    assert resp.get_json()["domain"]["description"] == "changed"

    assert_error(
        client.delete(f"/v3/domains/{domain['id']}", headers=headers), 403, "disable it first"
    )
    client.patch(
        f"/v3/domains/{domain['id']}", json={"domain": {"enabled": False}}, headers=headers
    )
    disabled = client.get("/v3/domains?enabled=false", headers=headers).get_json()["domains"]
    assert domain["id"] in [d["id"] for d in disabled]
    enabled = client.get("/v3/domains?enabled=true", headers=headers).get_json()["domains"]
    assert domain["id"] not in [d["id"] for d in enabled]
    assert client.delete(f"/v3/domains/{domain['id']}", headers=headers).status_code == 204
    assert_error(
        client.get(f"/v3/domains/{domain['id']}", headers=headers),
        404,
        f"Could not find domain: {domain['id']}.",
    )


def test_domain_duplicate_name_is_409(identity: IdentityEnv, admin: Admin) -> None:
    domain = admin.domain()
    resp = admin.post("/v3/domains", {"domain": {"name": domain["name"]}})
    assert_error(resp, 409, domain["name"])


def test_default_domain_cannot_be_deleted_or_disabled(identity: IdentityEnv) -> None:
    client, headers = identity.client, identity.headers()
    assert_error(client.delete("/v3/domains/default", headers=headers), 403, "default domain")
    resp = client.patch("/v3/domains/default", json={"domain": {"enabled": False}}, headers=headers)
    assert_error(resp, 403, "default domain")
    assert client.get("/v3/domains/default", headers=headers).get_json()["domain"]["enabled"]


def test_deleting_a_domain_deletes_its_projects_and_users(
    identity: IdentityEnv, admin: Admin
) -> None:
    client, headers = identity.client, identity.headers()
    domain = admin.domain()
    project = admin.project(domain_id=domain["id"])
    user = admin.user(domain_id=domain["id"])
    admin.grant(project["id"], user["id"])
    client.patch(
        f"/v3/domains/{domain['id']}", json={"domain": {"enabled": False}}, headers=headers
    )
    assert client.delete(f"/v3/domains/{domain['id']}", headers=headers).status_code == 204
    assert client.get(f"/v3/projects/{project['id']}", headers=headers).status_code == 404
    assert client.get(f"/v3/users/{user['id']}", headers=headers).status_code == 404
    left = client.get(f"/v3/role_assignments?user.id={user['id']}", headers=headers).get_json()
    assert left["role_assignments"] == []


# Projects.


def test_project_lifecycle(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    project = admin.project(description="first", tags=["blue", "green"])
    assert project["domain_id"] == "default"
    assert project["parent_id"] == "default"
    assert project["is_domain"] is False
    assert project["enabled"] is True
    assert project["tags"] == ["blue", "green"]

    shown = client.get(f"/v3/projects/{project['id']}", headers=headers).get_json()["project"]
    assert shown == project

    resp = client.patch(
        f"/v3/projects/{project['id']}",
        json={"project": {"name": project["name"] + "-x", "description": "second", "tags": []}},
        headers=headers,
    )
    assert resp.status_code == 200
    updated = resp.get_json()["project"]
    assert (updated["name"], updated["description"], updated["tags"]) == (
        project["name"] + "-x",
        "second",
        [],
    )
    assert client.delete(f"/v3/projects/{project['id']}", headers=headers).status_code == 204
    assert_error(
        client.get(f"/v3/projects/{project['id']}", headers=headers),
        404,
        f"Could not find project: {project['id']}.",
    )
    assert client.delete(f"/v3/projects/{project['id']}", headers=headers).status_code == 404


def test_project_list_filters(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    domain = admin.domain()
    parent = admin.project(domain_id=domain["id"], tags=["t1"])
    child = admin.project(parent_id=parent["id"], enabled=False)
    assert child["domain_id"] == domain["id"]
    assert child["parent_id"] == parent["id"]

    def ids(query: str) -> set[str]:
        resp = client.get(f"/v3/projects?{query}", headers=headers)
        assert resp.status_code == 200, resp.get_json()
        return {p["id"] for p in resp.get_json()["projects"]}

    assert ids(f"domain_id={domain['id']}") == {parent["id"], child["id"]}
    assert ids(f"domain_id={domain['id']}&enabled=false") == {child["id"]}
    assert ids(f"domain_id={domain['id']}&enabled=true") == {parent["id"]}
    assert ids(f"parent_id={parent['id']}") == {child["id"]}
    assert ids(f"parent_id={domain['id']}") == {parent["id"]}
    assert ids(f"name={parent['name']}") == {parent["id"]}
    assert ids(f"domain_id={domain['id']}&tags=t1") == {parent["id"]}
    assert ids(f"domain_id={domain['id']}&not-tags-any=t1") == {child["id"]}
    assert ids("is_domain=true") == set()
    assert_error(client.get("/v3/projects?enabled=maybe", headers=headers), 400, "enabled")


def test_project_find_by_name_as_openstacksdk_does(identity: IdentityEnv, admin: Admin) -> None:
    project = admin.project()
    client, headers = identity.client, identity.headers()
    assert_error(client.get(f"/v3/projects/{project['name']}", headers=headers), 404)
    found = client.get(f"/v3/projects?name={project['name']}", headers=headers).get_json()
    assert [p["id"] for p in found["projects"]] == [project["id"]]


def test_project_names_are_unique_per_domain(identity: IdentityEnv, admin: Admin) -> None:
    project = admin.project()
    assert_error(admin.post("/v3/projects", {"project": {"name": project["name"]}}), 409)
    other = admin.domain()
    same_name = admin.post(
        "/v3/projects", {"project": {"name": project["name"], "domain_id": other["id"]}}
    )
    assert same_name.status_code == 201


def test_project_references_are_checked(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    resp = admin.post("/v3/projects", {"project": {"name": unique("p"), "domain_id": "nope"}})
    assert_error(resp, 404, "Could not find domain: nope.")
    resp = admin.post("/v3/projects", {"project": {"name": unique("p"), "parent_id": "nope"}})
    assert_error(resp, 404, "Could not find project: nope.")
    other = admin.domain()
    parent = admin.project()
    resp = admin.post(
        "/v3/projects",
        {"project": {"name": unique("p"), "parent_id": parent["id"], "domain_id": other["id"]}},
    )
    assert_error(resp, 400, "project.parent_id")
    resp = client.patch(
        f"/v3/projects/{parent['id']}",
        json={"project": {"domain_id": other["id"]}},
        headers=headers,
    )
    assert_error(resp, 400, "project.domain_id")
    resp = admin.post("/v3/projects", {"project": {"name": unique("p"), "is_domain": True}})
    assert_error(resp, 400, "project.is_domain")


def test_project_with_children_cannot_be_deleted(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    parent = admin.project()
    child = admin.project(parent_id=parent["id"])
    assert_error(client.delete(f"/v3/projects/{parent['id']}", headers=headers), 403, "leaf")
    assert client.delete(f"/v3/projects/{child['id']}", headers=headers).status_code == 204
    assert client.delete(f"/v3/projects/{parent['id']}", headers=headers).status_code == 204


def test_deleting_a_project_removes_its_assignments(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    project = admin.project()
    user = admin.user()
    admin.grant(project["id"], user["id"])
    assert client.delete(f"/v3/projects/{project['id']}", headers=headers).status_code == 204
    resp = client.get(f"/v3/role_assignments?user.id={user['id']}", headers=headers)
    assert resp.get_json()["role_assignments"] == []


# Users.


def test_user_lifecycle_never_shows_the_password(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    project = admin.project()
    resp = admin.post(
        "/v3/users",
        {
            "user": {
                "name": unique("user"),
                "password": "s3cret-Pa55word",
                "email": "someone@example.com",
                "description": "a user",
                "default_project_id": project["id"],
                "options": {"ignore_password_expiry": True},
            }
        },
    )
    assert resp.status_code == 201
    raw = resp.get_data(as_text=True)
    assert "s3cret-Pa55word" not in raw and "$2b$" not in raw and "password_hash" not in raw
    user = resp.get_json()["user"]
    assert user["domain_id"] == "default"
    assert user["enabled"] is True
    assert user["email"] == "someone@example.com"
    assert user["default_project_id"] == project["id"]
    assert user["options"] == {"ignore_password_expiry": True}
    assert user["password_expires_at"] is None
    assert "password" not in user

    shown = client.get(f"/v3/users/{user['id']}", headers=headers)
    assert shown.get_json()["user"] == user
    assert "$2b$" not in shown.get_data(as_text=True)

    resp = client.patch(
        f"/v3/users/{user['id']}",
        json={"user": {"email": "other@example.com", "options": {"ignore_password_expiry": None}}},
        headers=headers,
    )
    assert resp.status_code == 200
    assert resp.get_json()["user"]["email"] == "other@example.com"
    assert resp.get_json()["user"]["options"] == {}

    assert client.delete(f"/v3/users/{user['id']}", headers=headers).status_code == 204
    assert_error(
        client.get(f"/v3/users/{user['id']}", headers=headers),
        404,
        f"Could not find user: {user['id']}.",
    )


def test_user_list_filters(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    domain = admin.domain()
    on = admin.user(domain_id=domain["id"])
    off = admin.user(domain_id=domain["id"], enabled=False)

    def ids(query: str) -> set[str]:
        users = client.get(f"/v3/users?{query}", headers=headers).get_json()["users"]
        return {u["id"] for u in users}

    assert ids(f"domain_id={domain['id']}") == {on["id"], off["id"]}
    assert ids(f"domain_id={domain['id']}&enabled=false") == {off["id"]}
    assert ids(f"name={on['name']}") == {on["id"]}
    assert ids(f"name={on['name']}&domain_id=default") == set()


def test_user_duplicates_and_references(identity: IdentityEnv, admin: Admin) -> None:
    user = admin.user()
    assert_error(admin.post("/v3/users", {"user": {"name": user["name"]}}), 409, user["name"])
    other = admin.domain()
    assert (
        admin.post(
            "/v3/users", {"user": {"name": user["name"], "domain_id": other["id"]}}
        ).status_code
        == 201
    )
    renamed = admin.user()
    resp = identity.client.patch(
        f"/v3/users/{renamed['id']}",
        json={"user": {"name": user["name"]}},
        headers=identity.headers(),
    )
    assert_error(resp, 409, user["name"])
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "domain_id": "nope"}})
    assert_error(resp, 404, "Could not find domain: nope.")
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "default_project_id": "nope"}})
    assert_error(resp, 404, "Could not find project: nope.")


def test_user_bodies_are_validated_without_echoing_passwords(
    identity: IdentityEnv, admin: Admin
) -> None:
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "password": 12345678}})
    error = assert_error(resp, 400, "user.password")
    assert "12345678" not in error["message"]
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "options": {"bogus": True}}})
    assert_error(resp, 400, "user.options.bogus")
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "enabled": "yes"}})
    assert_error(resp, 400, "user.enabled")
    resp = admin.post("/v3/users", {"user": {"name": unique("u"), "email": 3}})
    assert_error(resp, 400, "user.email")


def test_user_projects(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    user = admin.user()
    first, second, _other = admin.project(), admin.project(), admin.project()
    admin.grant(first["id"], user["id"])
    admin.grant(second["id"], user["id"], role="reader")
    listed = client.get(f"/v3/users/{user['id']}/projects", headers=headers).get_json()
    assert {p["id"] for p in listed["projects"]} == {first["id"], second["id"]}
    assert_error(client.get("/v3/users/nope/projects", headers=headers), 404, "user: nope")


# Roles and implied roles.


def test_role_lifecycle(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    role = admin.role(description="does things")
    assert role["domain_id"] is None
    assert role["description"] == "does things"
    assert_error(admin.post("/v3/roles", {"role": {"name": role["name"]}}), 409)
    listed = client.get(f"/v3/roles?name={role['name']}", headers=headers).get_json()
    assert [r["id"] for r in listed["roles"]] == [role["id"]]
    everything = client.get("/v3/roles", headers=headers).get_json()["roles"]
    assert {"admin", "member", "reader"} <= {r["name"] for r in everything}
    assert client.get("/v3/roles?domain_id=default", headers=headers).get_json()["roles"] == []
    resp = client.patch(
        f"/v3/roles/{role['id']}", json={"role": {"description": "other"}}, headers=headers
    )
    assert resp.get_json()["role"]["description"] == "other"
    resp = admin.post("/v3/roles", {"role": {"name": unique("r"), "domain_id": "default"}})
    assert_error(resp, 400, "role.domain_id")
    assert client.delete(f"/v3/roles/{role['id']}", headers=headers).status_code == 204
    assert_error(client.get(f"/v3/roles/{role['id']}", headers=headers), 404, "Could not find role")


def test_deleting_a_role_removes_its_assignments(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    role, project, user = admin.role(), admin.project(), admin.user()
    admin.grant(project["id"], user["id"], role=role["name"])
    assert client.delete(f"/v3/roles/{role['id']}", headers=headers).status_code == 204
    resp = client.get(f"/v3/role_assignments?user.id={user['id']}", headers=headers)
    assert resp.get_json()["role_assignments"] == []


def test_implied_roles(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    admin_role, member_role = admin.role_id("admin"), admin.role_id("member")
    body = client.get(f"/v3/roles/{admin_role}/implies", headers=headers).get_json()
    assert body["role_inference"]["prior_role"]["name"] == "admin"
    assert [r["name"] for r in body["role_inference"]["implies"]] == ["member"]
    check = client.head(f"/v3/roles/{admin_role}/implies/{member_role}", headers=headers)
    assert check.status_code == 204

    prior, implied = admin.role(), admin.role()
    path = f"/v3/roles/{prior['id']}/implies/{implied['id']}"
    assert client.get(path, headers=headers).status_code == 404
    resp = client.put(path, headers=headers)
    assert resp.status_code == 201
    assert resp.get_json()["role_inference"]["implies"]["id"] == implied["id"]
    assert (
        client.get(path, headers=headers).get_json()["role_inference"]["prior_role"]["id"]
        == (prior["id"])
    )
    inferences = client.get("/v3/role_inferences", headers=headers).get_json()["role_inferences"]
    assert any(i["prior_role"]["id"] == prior["id"] for i in inferences)
    cycle = client.put(f"/v3/roles/{implied['id']}/implies/{prior['id']}", headers=headers)
    assert_error(cycle, 400, "cycle")
    assert_error(
        client.put(f"/v3/roles/{prior['id']}/implies/{admin_role}", headers=headers), 400, "admin"
    )
    assert client.delete(path, headers=headers).status_code == 204
    assert client.delete(path, headers=headers).status_code == 404


# Regions, services, endpoints.


def test_region_lifecycle(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    generated = admin.create("region", description="no id given")
    assert len(generated["id"]) == 32 and generated["parent_region_id"] is None
    region_id = unique("Region")
    resp = client.put(
        f"/v3/regions/{region_id}",
        json={"region": {"parent_region_id": generated["id"]}},
        headers=headers,
    )
    assert resp.status_code == 201
    assert resp.get_json()["region"]["parent_region_id"] == generated["id"]
    assert_error(client.put(f"/v3/regions/{region_id}", json={"region": {}}, headers=headers), 409)
    assert_error(admin.post("/v3/regions", {"region": {"id": region_id}}), 409)
    resp = admin.post("/v3/regions", {"region": {"parent_region_id": "nope"}})
    assert_error(resp, 404, "Could not find region: nope.")
    resp = client.patch(
        f"/v3/regions/{generated['id']}",
        json={"region": {"parent_region_id": region_id}},
        headers=headers,
    )
    assert_error(resp, 400, "cycle")
    children = client.get(f"/v3/regions?parent_region_id={generated['id']}", headers=headers)
    assert [r["id"] for r in children.get_json()["regions"]] == [region_id]
    assert_error(client.delete(f"/v3/regions/{generated['id']}", headers=headers), 409, region_id)
    assert client.delete(f"/v3/regions/{region_id}", headers=headers).status_code == 204
    assert client.delete(f"/v3/regions/{generated['id']}", headers=headers).status_code == 204
    assert_error(client.get(f"/v3/regions/{region_id}", headers=headers), 404, "region")


def test_service_and_endpoint_lifecycle(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    service_type = unique("type")
    service = admin.create("service", type=service_type, name="svc", description="d")
    assert (service["type"], service["name"], service["enabled"]) == (service_type, "svc", True)
    listed = client.get(f"/v3/services?type={service_type}", headers=headers).get_json()
    assert [s["id"] for s in listed["services"]] == [service["id"]]

    region_id = unique("Region")
    resp = admin.post(
        "/v3/endpoints",
        {
            "endpoint": {
                "service_id": service["id"],
                "interface": "public",
                "url": "http://example.com:1234/v1",
                "region": region_id,
            }
        },
    )
    assert resp.status_code == 201
    endpoint = resp.get_json()["endpoint"]
    assert endpoint["region_id"] == endpoint["region"] == region_id
    assert client.get(f"/v3/regions/{region_id}", headers=headers).status_code == 200
    assert_error(client.delete(f"/v3/regions/{region_id}", headers=headers), 409, "endpoint")

    def ids(query: str) -> list[str]:
        return [
            e["id"]
            for e in client.get(f"/v3/endpoints?{query}", headers=headers).get_json()["endpoints"]
        ]

    assert ids(f"service_id={service['id']}") == [endpoint["id"]]
    assert ids(f"service_id={service['id']}&interface=admin") == []
    assert ids(f"region_id={region_id}") == [endpoint["id"]]

    resp = client.patch(
        f"/v3/endpoints/{endpoint['id']}",
        json={"endpoint": {"interface": "internal", "url": "http://example.com:1/v2"}},
        headers=headers,
    )
    assert resp.status_code == 200
    assert resp.get_json()["endpoint"]["interface"] == "internal"

    # A service's endpoints go with it.
    assert client.delete(f"/v3/services/{service['id']}", headers=headers).status_code == 204
    assert_error(client.get(f"/v3/endpoints/{endpoint['id']}", headers=headers), 404, "endpoint")
    assert_error(client.get(f"/v3/services/{service['id']}", headers=headers), 404, "service")


def test_endpoint_bodies_are_checked(identity: IdentityEnv, admin: Admin) -> None:
    service = admin.create("service", type=unique("type"))
    good = {"service_id": service["id"], "interface": "public", "url": "http://h:1/"}
    resp = admin.post("/v3/endpoints", {"endpoint": {**good, "service_id": "nope"}})
    assert_error(resp, 400, "endpoint.service_id", "nope")
    resp = admin.post("/v3/endpoints", {"endpoint": {**good, "interface": "private"}})
    assert_error(resp, 400, "endpoint.interface")
    resp = admin.post("/v3/endpoints", {"endpoint": {"service_id": service["id"], "url": "x:y"}})
    assert_error(resp, 400, "endpoint.interface")
    resp = admin.post("/v3/endpoints", {"endpoint": {**good, "url": "not a url"}})
    assert_error(resp, 400, "endpoint.url")


# For every resource.


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("domains", "domain"),
        ("projects", "project"),
        ("users", "user"),
        ("roles", "role"),
        ("regions", "region"),
        ("services", "service"),
        ("endpoints", "endpoint"),
    ],
)
def test_unknown_ids_are_404_naming_them(identity: IdentityEnv, path: str, kind: str) -> None:
    client, headers = identity.client, identity.headers()
    missing = unique("missing")
    message = f"Could not find {kind}: {missing}."
    assert_error(client.get(f"/v3/{path}/{missing}", headers=headers), 404, message)
    body = {kind: {"description": "x"}}
    assert_error(client.patch(f"/v3/{path}/{missing}", json=body, headers=headers), 404, message)
    assert_error(client.delete(f"/v3/{path}/{missing}", headers=headers), 404, message)
    if kind not in ("region", "endpoint"):  # these have no name
        listed = client.get(f"/v3/{path}?name={missing}", headers=headers)
        assert listed.status_code == 200
        assert listed.get_json()[path] == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("domains", {"domain": {"name": 5}}, "domain.name"),
        ("domains", {"domain": {}}, "domain.name"),
        ("projects", {"project": {"name": ""}}, "project.name"),
        ("projects", {"project": {"name": "   "}}, "project.name"),
        ("projects", {"project": {"name": "p", "enabled": "true"}}, "project.enabled"),
        ("projects", {"project": {"name": "p", "tags": ["a/b"]}}, "project.tags.0"),
        ("users", {"user": {"name": ["u"]}}, "user.name"),
        ("roles", {"role": {"name": None}}, "role.name"),
        ("services", {"service": {"name": "n"}}, "service.type"),
        ("regions", {"region": {"description": 1}}, "region.description"),
        ("projects", {"tenant": {"name": "p"}}, "project"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    identity: IdentityEnv, admin: Admin, path: str, body: dict[str, object], field: str
) -> None:
    assert_error(admin.post(f"/v3/{path}", body), 400, f"'{field}'")


def test_empty_update_and_id_change_are_400(identity: IdentityEnv, admin: Admin) -> None:
    client, headers = identity.client, identity.headers()
    project = admin.project()
    resp = client.patch(f"/v3/projects/{project['id']}", json={"project": {}}, headers=headers)
    assert_error(resp, 400, "'project'")
    resp = client.patch(
        f"/v3/projects/{project['id']}", json={"project": {"id": "other"}}, headers=headers
    )
    assert_error(resp, 400, "project.id")
    resp = client.patch(f"/v3/projects/{project['id']}", data="", headers=headers)
    assert_error(resp, 400, "body is empty")
