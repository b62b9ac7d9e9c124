"""Tokens: issue, validate, check, revoke, rescoping, and the ways they must fail."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path

from control.common import db
from control.identity.fernet import KeyRepository
from control.identity.tokens import TokenData, new_audit_id
from tests.api.identity_env import IdentityEnv, build


def test_version_discovery(identity: IdentityEnv) -> None:
    root = identity.client.get("/")
    assert root.status_code == 300
    (version,) = root.get_json()["versions"]["values"]
    assert version["id"] == "v3.14"
    assert version["status"] == "stable"
    assert version["links"][0]["rel"] == "self"
    assert version["links"][0]["href"].endswith("/v3/")
    assert version["media-types"][0]["type"] == "application/vnd.openstack.identity-v3+json"
    v3 = identity.client.get("/v3").get_json()["version"]
    assert v3["id"] == "v3.14"


def test_password_token_has_the_shape_clients_read(identity: IdentityEnv) -> None:
    resp = identity.client.post(
        "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": "admin",
                            "domain": {"id": "default"},
                            "password": identity.admin_password,
                        }
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        },
    )
    assert resp.status_code == 201
    assert resp.headers["X-Subject-Token"]
    assert re.match(r"^req-[0-9a-f-]{36}$", resp.headers["x-openstack-request-id"])
    token = resp.get_json()["token"]
    assert token["methods"] == ["password"]
    assert token["user"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert token["project"]["name"] == "admin"
    assert token["project"]["domain"]["id"] == "default"
    assert {r["name"] for r in token["roles"]} >= {"admin", "member", "reader"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", token["expires_at"])
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", token["issued_at"])
    assert len(token["audit_ids"]) == 1
    identity_entry = [s for s in token["catalog"] if s["type"] == "identity"]
    assert identity_entry and identity_entry[0]["endpoints"][0]["interface"] == "public"


def test_nocatalog_leaves_the_catalog_out(identity: IdentityEnv) -> None:
    resp = identity.client.get(
        "/v3/auth/tokens?nocatalog",
        headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": identity.admin_token},
    )
    assert resp.status_code == 200
    assert "catalog" not in resp.get_json()["token"]


def test_wrong_password_is_401_and_says_nothing_specific(identity: IdentityEnv) -> None:
    bodies = []
    for name in ("admin", "no-such-user"):
        resp = identity.client.post(
            "/v3/auth/tokens",
            json={
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {"name": name, "domain": {"id": "default"}, "password": "wrong"}
                        },
                    }
                }
            },
        )
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Keystone uri=")
        bodies.append(resp.get_json())
    assert bodies[0] == bodies[1]
    assert "password" not in bodies[0]["error"]["message"].lower()


def test_malformed_json_is_400(identity: IdentityEnv) -> None:
    resp = identity.client.post(
        "/v3/auth/tokens", data="{not json", content_type="application/json"
    )
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == 400
    assert "Malformed JSON" in error["message"]


def test_missing_field_is_400_naming_it(identity: IdentityEnv) -> None:
    resp = identity.client.post("/v3/auth/tokens", json={"auth": {"identity": {}}})
    assert resp.status_code == 400
    assert "auth.identity.methods" in resp.get_json()["error"]["message"]


def test_malformed_and_missing_tokens_are_401(identity: IdentityEnv) -> None:
    for headers in ({}, {"X-Auth-Token": "garbage"}, {"X-Auth-Token": "gAAAAAB" + "x" * 100}):
        resp = identity.client.get("/v3/auth/catalog", headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == 401
        assert "WWW-Authenticate" in resp.headers


def test_revoked_token_is_401_and_others_survive(identity: IdentityEnv) -> None:
    victim = identity.token("admin", identity.admin_password, project="admin")
    resp = identity.client.delete(
        "/v3/auth/tokens", headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": victim}
    )
    assert resp.status_code == 204
    assert (
        identity.client.get("/v3/auth/catalog", headers={"X-Auth-Token": victim}).status_code == 401
    )
    check = identity.client.head(
        "/v3/auth/tokens", headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": victim}
    )
    assert check.status_code == 404
    ok = identity.client.head(
        "/v3/auth/tokens",
        headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": identity.admin_token},
    )
    assert ok.status_code == 200


def test_rescoping_an_unscoped_token(identity: IdentityEnv) -> None:
    unscoped = identity.token("admin", identity.admin_password, scope="unscoped")
    body = identity.client.get(
        "/v3/auth/tokens",
        headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": unscoped},
    ).get_json()["token"]
    assert "project" not in body and "catalog" not in body
    resp = identity.client.post(
        "/v3/auth/tokens",
        json={
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": unscoped}},
                "scope": {"project": {"id": identity.admin_project_id}},
            }
        },
    )
    assert resp.status_code == 201
    token = resp.get_json()["token"]
    assert token["project"]["id"] == identity.admin_project_id
    assert token["methods"] == ["password", "token"]
    assert token["expires_at"] == body["expires_at"]
    assert token["audit_ids"][1] == body["audit_ids"][0]


def test_unknown_route_is_json_404(identity: IdentityEnv) -> None:
    resp = identity.client.get("/v3/nothing-here", headers=identity.headers())
    assert resp.status_code == 404
    assert resp.get_json()["error"]["code"] == 404


def test_expired_token_is_401(identity: IdentityEnv) -> None:
    """A token signed with the server's own keys whose lifetime is over is refused."""
    admin = identity.client.get(
        "/v3/auth/tokens",
        headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": identity.admin_token},
    ).get_json()["token"]
    now = db.utcnow()
    expired = TokenData(
        admin["user"]["id"],
        ["password"],
        identity.admin_project_id,
        None,
        now - timedelta(hours=2),
        now - timedelta(seconds=1),
        [new_audit_id()],
    )
    token = KeyRepository(identity.key_dir).encrypt(expired.encode()).decode()
    resp = identity.client.get("/v3/auth/catalog", headers={"X-Auth-Token": token})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == 401
    check = identity.client.head(
        "/v3/auth/tokens", headers={"X-Auth-Token": identity.admin_token, "X-Subject-Token": token}
    )
    assert check.status_code == 404


def test_token_lifetime_follows_the_setting(mariadb: object, tmp_path: Path) -> None:
    env = build(mariadb, tmp_path, extra={"token": {"expiration": 1}})
    try:
        token = env.token("admin", env.admin_password, project="admin")
        assert (
            env.client.get("/v3/auth/catalog", headers={"X-Auth-Token": token}).status_code == 200
        )
        time.sleep(1.2)
        assert (
            env.client.get("/v3/auth/catalog", headers={"X-Auth-Token": token}).status_code == 401
        )
    finally:
        env.app.extensions["cirrus.db"].dispose()
