"""A running identity app (Flask test client) on the session's private MariaDB."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from control.common import config, db, migrate
from control.identity import bootstrap
from control.identity.app import create_app
from control.identity.fernet import KeyRepository


@dataclass
class IdentityEnv:
    app: Flask
    client: FlaskClient
    db_url: str
    key_dir: Path
    admin_password: str
    admin_token: str
    admin_project_id: str

    def token(
        self,
        username: str,
        password: str,
        project: str | None = None,
        domain: str = "Default",
        scope: Any = None,
    ) -> str:
        """Issue a token for a user by name (project-scoped when ``project`` is given)."""
        body: dict[str, Any] = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": username, "domain": {"name": domain}, "password": password}
                    },
                }
            }
        }
        if project is not None:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"name": domain}}}
        if scope is not None:
            body["auth"]["scope"] = scope
        resp = self.client.post("/v3/auth/tokens", json=body)
        assert resp.status_code == 201, resp.get_json()
        return str(resp.headers["X-Subject-Token"])

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Auth-Token": token or self.admin_token}


def build(
    mariadb: Any, workdir: Path, extra: dict[str, dict[str, Any]] | None = None
) -> IdentityEnv:
    url = mariadb.create_database("identity")
    migrate.upgrade("identity", url)
    key_dir = workdir / "fernet-keys"
    KeyRepository(key_dir).setup()
    password = secrets.token_urlsafe(16)
    database = db.Database(url)
    with database.transaction() as sess:
        bootstrap.bootstrap(
            sess,
            bootstrap.BootstrapOptions(
                admin_password=password,
                identity_endpoints={"public": "http://localhost:5000/v3"},
            ),
        )
    database.dispose()
    overrides: dict[str, dict[str, Any]] = {
        "database": {"connection": url},
        "fernet_tokens": {"key_repository": str(key_dir)},
        "DEFAULT": {"log_level": "WARNING"},
    }
    for section, values in (extra or {}).items():
        overrides.setdefault(section, {}).update(values)
    conf = config.load("identity", path=workdir / "none.conf", overrides=overrides)
    app = create_app(conf)
    app.config["TESTING"] = True
    client = app.test_client()
    env = IdentityEnv(app, client, url, key_dir, password, "", "")
    env.admin_token = env.token("admin", password, project="admin")
    resp = client.get(
        "/v3/auth/tokens",
        headers={"X-Auth-Token": env.admin_token, "X-Subject-Token": env.admin_token},
    )
    env.admin_project_id = resp.get_json()["token"]["project"]["id"]
    return env
