"""The unmodified ``openstack`` CLI against identity under gunicorn.

Every command runs as a subprocess with ``-f json`` where the command has output, through the
clouds.yaml the fixture writes (cloud ``cirrus-test``, admin). Names are unique per test so the
tests share one identity server.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.identity_server import CLOUD, IdentityServer
from tests.fixtures.processes import venv_bin

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb]


class CLI:
    def __init__(self, identity: IdentityServer, clouds_file: Path | None = None) -> None:
        self.identity = identity
        self.env = identity.env(clouds_file)

    def run(
        self, *args: str, cloud: str = CLOUD, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(venv_bin("openstack")), "--os-cloud", cloud, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"openstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr[-3000:]}"
            )
        return result

    def json(self, *args: str, cloud: str = CLOUD) -> Any:
        result = self.run(*args, "-f", "json", cloud=cloud)
        try:
            return json.loads(result.stdout)
        except ValueError:
            pytest.fail(f"openstack {' '.join(args)} printed no JSON: {result.stdout!r}")


@pytest.fixture(scope="module")
def cli(identity_server: IdentityServer) -> CLI:
    return CLI(identity_server)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [row[key] for row in rows]


def test_token_issue(cli: CLI, identity_server: IdentityServer) -> None:
    token = cli.json("token", "issue")

    assert set(token) >= {"id", "expires", "project_id", "user_id"}
    check = requests.get(
        f"{identity_server.url}/auth/tokens",
        headers={"X-Auth-Token": token["id"], "X-Subject-Token": token["id"]},
        timeout=10,
    )
    assert check.status_code == 200
    assert check.json()["token"]["project"]["id"] == token["project_id"]


def test_project_create_list_show(cli: CLI) -> None:
    name = unique("proj")

    created = cli.json(
        "project", "create", "--domain", "default", "--description", "made by the CLI", name
    )
    listed = cli.json("project", "list")
    by_name = cli.json("project", "show", name)
    by_id = cli.json("project", "show", created["id"])

    assert created["name"] == name
    assert created["domain_id"] == "default"
    assert created["description"] == "made by the CLI"
    assert created["enabled"] is True
    assert name in _column(listed, "Name")
    assert by_name["id"] == created["id"] == by_id["id"]


def test_user_create_list_show(cli: CLI) -> None:
    project = unique("proj")
    cli.json("project", "create", "--domain", "default", project)
    name = unique("user")

    created = cli.json(
        "user",
        "create",
        "--domain",
        "default",
        "--password",
        "pw-" + secrets.token_urlsafe(12),
        "--project",
        project,
        "--email",
        f"{name}@example.org",
        name,
    )
    listed = cli.json("user", "list")
    shown = cli.json("user", "show", "--domain", "default", name)

    assert created["name"] == name
    assert created["domain_id"] == "default"
    assert created["enabled"] is True
    assert created["email"] == f"{name}@example.org"
    assert "password" not in created
    assert name in _column(listed, "Name")
    assert shown["id"] == created["id"]
    assert shown["default_project_id"] == created["default_project_id"]


def test_role_create_list(cli: CLI) -> None:
    name = unique("role")

    created = cli.json("role", "create", name)
    listed = cli.json("role", "list")

    assert created["name"] == name
    names = _column(listed, "Name")
    assert name in names
    assert {"admin", "member", "reader"} <= set(names)


def test_role_add_and_assignment_list(cli: CLI) -> None:
    project = unique("proj")
    user = unique("user")
    cli.json("project", "create", "--domain", "default", project)
    cli.json("user", "create", "--domain", "default", "--password", "pw-" + user, user)

    cli.run(
        "role",
        "add",
        "--project",
        project,
        "--project-domain",
        "default",
        "--user",
        user,
        "--user-domain",
        "default",
        "member",
    )
    named = cli.json("role", "assignment", "list", "--project", project, "--names")
    plain = cli.json("role", "assignment", "list", "--project", project)

    assert [(a["Role"], a["User"], a["Project"]) for a in named] == [
        ("member", f"{user}@Default", f"{project}@Default")
    ]
    assert len(plain) == 1
    assert plain[0]["Role"] != "member"  # an id without --names


def test_catalog_service_and_endpoint_list(cli: CLI, identity_server: IdentityServer) -> None:
    catalog = cli.json("catalog", "list")
    services = cli.json("service", "list")
    endpoints = cli.json("endpoint", "list")

    identity = [entry for entry in catalog if entry["Type"] == "identity"]
    assert len(identity) == 1
    assert any(
        e["interface"] == "public"
        and e["url"] == identity_server.url
        and e["region"] == "RegionOne"
        for e in identity[0]["Endpoints"]
    )
    assert "identity" in _column(services, "Type")
    public = [
        e for e in endpoints if e["Service Type"] == "identity" and e["Interface"] == "public"
    ]
    assert [(e["URL"], e["Region"], e["Enabled"]) for e in public] == [
        (identity_server.url, "RegionOne", True)
    ]


def test_user_changes_own_password(
    cli: CLI, identity_server: IdentityServer, tmp_path: Path
) -> None:
    project = unique("proj")
    user = unique("user")
    # "pw-" first: a token_urlsafe may start with "-", which the CLI would read as an option.
    old = "pw-" + secrets.token_urlsafe(12)
    new = "pw-" + secrets.token_urlsafe(12)
    cli.json("project", "create", "--domain", "default", project)
    cli.json("user", "create", "--domain", "default", "--password", old, "--project", project, user)
    cli.run("role", "add", "--project", project, "--user", user, "member")
    clouds = identity_server.clouds_yaml(
        tmp_path / "clouds.yaml",
        extra={
            "user-old": identity_server.cloud(user, old, project),
            "user-new": identity_server.cloud(user, new, project),
        },
    )
    as_user = CLI(identity_server, clouds)
    assert as_user.json("token", "issue", cloud="user-old")["project_id"]

    as_user.run(
        "user", "password", "set", "--password", new, "--original-password", old, cloud="user-old"
    )

    refused = as_user.run("token", "issue", "-f", "json", cloud="user-old", check=False)
    assert refused.returncode != 0
    assert "401" in refused.stderr or "auth" in refused.stderr.lower()
    token = as_user.json("token", "issue", cloud="user-new")
    assert token["project_id"]


def test_token_revoke(cli: CLI, identity_server: IdentityServer) -> None:
    token = cli.json("token", "issue")["id"]

    cli.run("token", "revoke", token)

    admin, _ = identity_server.issue_token()
    check = requests.get(
        f"{identity_server.url}/auth/tokens",
        headers={"X-Auth-Token": admin, "X-Subject-Token": token},
        timeout=10,
    )
    assert check.status_code == 404
