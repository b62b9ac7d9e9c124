"""A running network app (Flask test client) on the session's private MariaDB, validating tokens
against the real identity under gunicorn (the ``identity_server`` fixture).

Accounts are made through identity's API: the ``neutron`` service user (role ``service`` on
project ``service``) the app validates tokens with, two projects A and B with a member each, and
the bootstrap admin; :meth:`NetworkEnv.new_account` makes more (a fresh project for quota
tests). Settings: a small VNI range and ``physnet1``/``physnet2`` as the known physical networks.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from control.common import config, migrate
from control.network.app import create_app
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin, authtoken_section

VNI_RANGES = "100:199,500:599"


@dataclass
class NetworkEnv:
    app: Flask
    client: FlaskClient
    identity: IdentityServer
    db_url: str
    workdir: Path
    accounts: dict[str, Account]
    _tokens: dict[str, str] = field(default_factory=dict)
    _admin_project: str = ""

    # -- accounts ------------------------------------------------------------------------------

    def token(self, who: str = "a") -> str:
        if who not in self._tokens:
            if who == "admin":
                token, body = self.identity.issue_token()
                self._admin_project = str(body["project"]["id"])
            else:
                account = self.accounts[who]
                token, _ = self.identity.issue_token(
                    account.username, account.password, account.project
                )
            self._tokens[who] = token
        return self._tokens[who]

    def project_id(self, who: str = "a") -> str:
        if who == "admin":
            self.token("admin")
            return self._admin_project
        return self.accounts[who].project_id

    def new_account(self, prefix: str = "net-x", role: str = "member") -> str:
        """A new project with a member; returns the name to pass as ``who``."""
        admin = IdentityAdmin(self.identity)
        try:
            account = admin.account(prefix, role)
        finally:
            admin.close()
        who = f"{prefix}-{secrets.token_hex(3)}"
        self.accounts[who] = account
        return who

    # -- requests ------------------------------------------------------------------------------

    def headers(self, who: str = "a") -> dict[str, str]:
        return {"X-Auth-Token": self.token(who)}

    def get(self, path: str, who: str = "a") -> TestResponse:
        return self.client.get(f"/v2.0{path}", headers=self.headers(who))

    def post(self, path: str, body: Any, who: str = "a") -> TestResponse:
        return self.client.post(f"/v2.0{path}", json=body, headers=self.headers(who))

    def put(self, path: str, body: Any, who: str = "a") -> TestResponse:
        return self.client.put(f"/v2.0{path}", json=body, headers=self.headers(who))

    def delete(self, path: str, who: str = "a") -> TestResponse:
        return self.client.delete(f"/v2.0{path}", headers=self.headers(who))

    def create(self, kind: str, who: str = "a", **attrs: Any) -> dict[str, Any]:
        """POST ``/v2.0/<kind>s`` (``security_group`` -> ``security-groups``); 201 expected."""
        resp = self.post(f"/{collection(kind)}", {kind: attrs}, who)
        assert resp.status_code == 201, resp.get_json()
        created: dict[str, Any] = resp.get_json()[kind]
        return created

    def show(self, kind: str, ident: str, who: str = "a") -> dict[str, Any]:
        resp = self.get(f"/{collection(kind)}/{ident}", who)
        assert resp.status_code == 200, resp.get_json()
        found: dict[str, Any] = resp.get_json()[kind]
        return found

    def listing(self, kind: str, query: str = "", who: str = "a") -> list[dict[str, Any]]:
        resp = self.get(f"/{collection(kind)}{'?' + query if query else ''}", who)
        assert resp.status_code == 200, resp.get_json()
        items: list[dict[str, Any]] = resp.get_json()[collection(kind).replace("-", "_")]
        return items

    def network(self, who: str = "a", cidr: str | None = None, **attrs: Any) -> dict[str, Any]:
        """A network (and a subnet on ``cidr`` when given; its id in ``_subnet``)."""
        attrs.setdefault("name", unique("net"))
        net = self.create("network", who, **attrs)
        if cidr is not None:
            net["_subnet"] = self.create(
                "subnet", who, network_id=net["id"], ip_version=4, cidr=cidr
            )["id"]
        return net


def collection(kind: str) -> str:
    return {"security_group": "security-groups", "security_group_rule": "security-group-rules"}.get(
        kind, f"{kind}s"
    )


def unique(prefix: str = "net") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def assert_error(resp: TestResponse, status: int, kind: str | None = None, *fragments: str) -> str:
    """The response is Neutron's error body with ``status``, ``type`` ``kind`` and a message
    holding every fragment; returns the message."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    error = resp.get_json()["NeutronError"]
    assert set(error) == {"type", "message", "detail"}
    if kind is not None:
        assert error["type"] == kind, error
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return str(error["message"])


def build(
    mariadb: Any,
    identity: IdentityServer,
    workdir: Path,
    settings: dict[str, dict[str, Any]] | None = None,
) -> NetworkEnv:
    admin = IdentityAdmin(identity)
    try:
        service_user = admin.account("neutron", "service", project="service")
        accounts = {
            "a": admin.account("net-a", "member"),
            "b": admin.account("net-b", "member"),
        }
    finally:
        admin.close()
    url = mariadb.create_database("network")
    migrate.upgrade("network", url)
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"log_level": "WARNING"},
        "database": {"connection": url, "pool_size": 10},
        "keystone_authtoken": authtoken_section(identity, service_user),
        "network": {
            "vni_ranges": VNI_RANGES,
            "physical_networks": "physnet1,physnet2",
            "agent_down_time": 5,
        },
    }
    for section, values in (settings or {}).items():
        overrides.setdefault(section, {}).update(values)
    conf = config.load("network", path=workdir / "none.conf", overrides=overrides)
    app = create_app(conf)
    app.config["TESTING"] = True
    return NetworkEnv(app, app.test_client(), identity, url, workdir, accounts)


def env_fixture(
    mariadb: Any,
    identity_server: IdentityServer,
    tmp_path_factory: pytest.TempPathFactory,
    settings: dict[str, dict[str, Any]] | None = None,
) -> Iterator[NetworkEnv]:
    """Body of the ``network`` fixture: build, yield, dispose."""
    workdir = tmp_path_factory.mktemp("network")
    env = build(mariadb, identity_server, workdir, settings)
    yield env
    notifier = env.app.extensions["cirrus.network"].notifier
    if notifier is not None:
        notifier.close()
    env.app.extensions["cirrus.db"].dispose()
    env.app.extensions["cirrus.auth"].close()
    shutil.rmtree(workdir, ignore_errors=True)
