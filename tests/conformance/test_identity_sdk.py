"""openstacksdk, unmodified, against identity under gunicorn.

The connection is made the way users make it, ``openstack.connect(cloud="cirrus-test")``, with
``OS_CLIENT_CONFIG_FILE`` naming the clouds.yaml the fixture writes. Both the proxy layer
(``conn.identity``) and the cloud layer (``conn.list_projects``, ``conn.grant_role``: what the
openstack.cloud Ansible collection calls) are exercised.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
import requests

from tests.fixtures.identity_server import CLOUD, IdentityServer

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb]


def _connect(clouds_file: Path, cloud: str) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("OS_")]:
            mp.delenv(name)
        mp.setenv("OS_CLIENT_CONFIG_FILE", str(clouds_file))
        return openstack.connect(cloud=cloud)


@pytest.fixture(scope="module")
def conn(identity_server: IdentityServer) -> Iterator[Any]:
    connection = _connect(identity_server.clouds_file, CLOUD)
    yield connection
    connection.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def test_authorize_gives_a_valid_token(conn: Any, identity_server: IdentityServer) -> None:
    token = conn.authorize()

    check = requests.get(
        f"{identity_server.url}/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
        timeout=10,
    )
    assert check.status_code == 200
    assert check.json()["token"]["project"]["name"] == "admin"
    assert conn.current_project_id == check.json()["token"]["project"]["id"]


def test_projects(conn: Any) -> None:
    name = unique("proj")

    created = conn.identity.create_project(
        name=name, domain_id="default", description="made by the SDK"
    )
    found = conn.identity.find_project(name)
    by_id = conn.identity.get_project(created.id)
    listed = [p.name for p in conn.identity.projects()]
    filtered = list(conn.identity.projects(name=name))

    assert created.name == name
    assert created.domain_id == "default"
    assert created.is_enabled is True
    assert found is not None
    assert found.id == created.id == by_id.id
    assert by_id.description == "made by the SDK"
    assert {"admin", name} <= set(listed)
    assert [p.id for p in filtered] == [created.id]
    assert conn.identity.find_project(unique("absent")) is None
    # The cloud layer (openstack.cloud.project in Ansible).
    assert conn.get_project(name).id == created.id
    assert name in [p.name for p in conn.list_projects()]


def test_users(conn: Any) -> None:
    project = conn.identity.create_project(name=unique("proj"), domain_id="default")
    name = unique("user")

    created = conn.identity.create_user(
        name=name,
        password=secrets.token_urlsafe(12),
        domain_id="default",
        default_project_id=project.id,
        email=f"{name}@example.org",
    )
    found = conn.identity.find_user(name, domain_id="default")
    listed = [u.name for u in conn.identity.users()]

    assert created.name == name
    assert created.default_project_id == project.id
    assert created.is_enabled is True
    assert found is not None
    assert found.id == created.id
    assert found.email == f"{name}@example.org"
    assert name in listed
    assert conn.identity.find_user(unique("absent")) is None


def test_roles_and_assignments(conn: Any, identity_server: IdentityServer, tmp_path: Path) -> None:
    role_name = unique("role")
    created_role = conn.identity.create_role(name=role_name)
    roles = {r.name: r for r in conn.identity.roles()}
    project = conn.identity.create_project(name=unique("proj"), domain_id="default")
    password = secrets.token_urlsafe(12)
    user = conn.identity.create_user(name=unique("user"), password=password, domain_id="default")
    member = conn.identity.find_role("member")

    conn.identity.assign_project_role_to_user(project, user, member)
    has_member = conn.identity.validate_user_has_project_role(project, user, member)
    has_new_role = conn.identity.validate_user_has_project_role(project, user, created_role)
    assignments = list(conn.identity.role_assignments(scope_project_id=project.id, user_id=user.id))
    # The cloud layer (openstack.cloud.role_assignment in Ansible).
    conn.grant_role(role_name, user=user.id, project=project.id)
    after_grant = conn.list_role_assignments(filters={"project": project.id, "user": user.id})

    assert {"admin", "member", "reader", role_name} <= set(roles)
    assert roles[role_name].id == created_role.id
    assert member is not None
    assert has_member is True
    assert has_new_role is False
    assert [(a.role["id"], a.user["id"], a.scope["project"]["id"]) for a in assignments] == [
        (member.id, user.id, project.id)
    ]
    assert {a.role["id"] for a in after_grant} == {member.id, created_role.id}

    clouds = identity_server.clouds_yaml(
        tmp_path / "clouds.yaml",
        extra={"sdk-user": identity_server.cloud(user.name, password, project.name)},
    )
    as_user = _connect(clouds, "sdk-user")
    try:
        token = as_user.authorize()
        assert token
        assert as_user.current_project_id == project.id
    finally:
        as_user.close()


def test_catalog_resources(conn: Any, identity_server: IdentityServer) -> None:
    services = list(conn.identity.services())
    endpoints = list(conn.identity.endpoints())
    regions = [r.id for r in conn.identity.regions()]

    identity = [s for s in services if s.type == "identity"]
    assert len(identity) == 1
    assert [
        (e.url, e.interface, e.region_id) for e in endpoints if e.service_id == identity[0].id
    ] == [(identity_server.url, "public", "RegionOne")]
    assert "RegionOne" in regions
    assert conn.endpoint_for("identity") == identity_server.url
