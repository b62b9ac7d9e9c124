"""Helpers the identity CRUD tests share (no tests here): uniquely named resources made through
the API as admin, and assertions on error bodies."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from werkzeug.test import TestResponse

from tests.api.identity_env import IdentityEnv


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_error(resp: TestResponse, status: int, *fragments: str) -> dict[str, Any]:
    """The response is the JSON error ``status`` and its message holds every fragment."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    error: dict[str, Any] = resp.get_json()["error"]
    assert error["code"] == status
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


class Admin:
    """Creates resources as the bootstrap admin; every name gets a unique suffix."""

    def __init__(self, env: IdentityEnv) -> None:
        self.env = env
        self.client = env.client

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> TestResponse:
        return self.client.post(path, json=body, headers=self.env.headers(token))

    def create(self, kind: str, **attrs: Any) -> dict[str, Any]:
        resp = self.post(f"/v3/{kind}s", {kind: attrs})
        assert resp.status_code == 201, resp.get_json()
        created: dict[str, Any] = resp.get_json()[kind]
        return created

    def project(self, **attrs: Any) -> dict[str, Any]:
        return self.create("project", name=unique("proj"), **attrs)

    def domain(self, **attrs: Any) -> dict[str, Any]:
        return self.create("domain", name=unique("dom"), **attrs)

    def role(self, **attrs: Any) -> dict[str, Any]:
        return self.create("role", name=unique("role"), **attrs)

    def user(self, password: str | None = None, **attrs: Any) -> dict[str, Any]:
        """A user; with ``password`` set (one bcrypt hash) when given."""
        if password is not None:
            attrs["password"] = password
        return self.create("user", name=unique("user"), **attrs)

    def role_id(self, name: str) -> str:
        resp = self.client.get(f"/v3/roles?name={name}", headers=self.env.headers())
        (role,) = resp.get_json()["roles"]
        return str(role["id"])

    def grant(self, project_id: str, user_id: str, role: str = "member") -> None:
        resp = self.client.put(
            f"/v3/projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}",
            headers=self.env.headers(),
        )
        assert resp.status_code == 204, resp.get_json()

    def member(self, role: str = "member") -> tuple[dict[str, Any], dict[str, Any], str, str]:
        """A new project and a user holding ``role`` on it: (user, project, password, token)."""
        project = self.project()
        password = secrets.token_urlsafe(12)
        user = self.user(password=password, default_project_id=project["id"])
        self.grant(project["id"], user["id"], role)
        token = self.env.token(user["name"], password, project=project["name"])
        return user, project, password, token
