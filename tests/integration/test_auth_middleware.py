"""The auth middleware (control.common.auth) in a tiny service, against identity under gunicorn.

Nothing is mocked: the service's validator asks the real identity over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from flask import Blueprint, Flask, Response, jsonify
from flask.testing import FlaskClient

from control.common import config
from control.common.app import context, make_app
from control.common.auth import TokenValidator, www_authenticate
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.mariadb

whoami_bp = Blueprint("whoami", __name__, url_prefix="/v2.1")


@whoami_bp.get("/whoami")
def whoami() -> Response:
    return jsonify(context().to_dict())


def _conf(identity: IdentityServer, tmp_path: Any, **options: Any) -> config.Config:
    section: dict[str, Any] = {
        "auth_url": identity.url,
        "username": "admin",
        "password": identity.admin_password,
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "timeout": 5,
    }
    section.update(options)
    return config.load(
        "whoami", path=tmp_path / "absent.conf", overrides={"keystone_authtoken": section}
    )


class Service:
    def __init__(self, conf: config.Config) -> None:
        self.validator = TokenValidator(conf)
        self.app: Flask = make_app(
            "whoami", conf, [whoami_bp], self.validator, www_authenticate(conf)
        )
        self.client: FlaskClient = self.app.test_client()

    def get(self, token: str | None) -> Any:
        headers = {"X-Auth-Token": token} if token is not None else {}
        return self.client.get("/v2.1/whoami", headers=headers)


@pytest.fixture
def make_service(identity_server: IdentityServer, tmp_path: Any) -> Iterator[Any]:
    services: list[Service] = []

    def build(**options: Any) -> Service:
        service = Service(_conf(identity_server, tmp_path, **options))
        services.append(service)
        return service

    yield build
    for service in services:
        service.validator.close()


def _assert_401(resp: Any, identity: IdentityServer) -> None:
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == 401
    assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{identity.base_url}"'


def test_valid_token_gives_the_callers_context(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service()
    token, body = identity_server.issue_token()

    resp = service.get(token)

    assert resp.status_code == 200, resp.get_json()
    ctxt = resp.get_json()
    assert ctxt["user_id"] == body["user"]["id"]
    assert ctxt["user_name"] == "admin"
    assert ctxt["user_domain_id"] == body["user"]["domain"]["id"]
    assert ctxt["project_id"] == body["project"]["id"]
    assert ctxt["project_name"] == "admin"
    assert ctxt["project_domain_id"] == body["project"]["domain"]["id"]
    assert set(ctxt["roles"]) == {role["name"] for role in body["roles"]}
    assert {"admin", "member", "reader"} <= set(ctxt["roles"])
    assert ctxt["is_admin_project"] is True
    assert ctxt["audit_ids"] == body["audit_ids"]
    assert ctxt["expires_at"] == body["expires_at"]
    assert ctxt["request_id"] == resp.headers["x-openstack-request-id"]

    validations = service.validator.stats.validations
    again = service.get(token)
    assert again.status_code == 200
    assert again.get_json()["request_id"] != ctxt["request_id"]
    assert service.validator.stats.validations == validations  # answered from the cache


@pytest.mark.parametrize(
    "token",
    [None, "", "has spaces in it", "x" * 9000, "tab\tinside"],
    ids=["missing", "empty", "spaces", "too-long", "control-char"],
)
def test_missing_or_malformed_token_is_401_without_asking_identity(
    identity_server: IdentityServer, make_service: Any, token: str | None
) -> None:
    service = make_service()

    resp = service.get(token)

    _assert_401(resp, identity_server)
    assert service.validator.stats.validations == 0


def test_garbage_token_is_401_and_negatively_cached(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service(negative_cache_ttl=60)
    garbage = "gAAAAABgarbage-that-is-no-fernet-token_" + "A" * 100

    _assert_401(service.get(garbage), identity_server)
    asked = service.validator.stats.validations
    assert asked == 1
    _assert_401(service.get(garbage), identity_server)
    assert service.validator.stats.validations == asked
    assert service.validator.stats.negative_hits == 1


def test_revoked_token_is_refused_after_the_cache_window(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service(cache_ttl=1)
    token, _ = identity_server.issue_token()
    assert service.get(token).status_code == 200

    revoked = requests.delete(
        f"{identity_server.url}/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
        timeout=10,
    )
    assert revoked.status_code == 204
    time.sleep(1.5)  # past cache_ttl: the next request must reach identity

    _assert_401(service.get(token), identity_server)


def test_service_token_is_fetched_again_when_identity_refuses_it(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service()
    old = service.validator.service_token()
    revoked = requests.delete(
        f"{identity_server.url}/auth/tokens",
        headers={"X-Auth-Token": old, "X-Subject-Token": old},
        timeout=10,
    )
    assert revoked.status_code == 204
    token, _ = identity_server.issue_token()

    resp = service.get(token)

    assert resp.status_code == 200, resp.get_json()
    assert service.validator.service_token() != old


def test_identity_down_is_503_json(identity_server: IdentityServer, make_service: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v3"
    service = make_service(auth_url=closed)
    token, _ = identity_server.issue_token()

    resp = service.get(token)

    assert resp.status_code == 503
    error = resp.get_json()["error"]
    assert error["code"] == 503
    assert closed in error["message"]
    assert "unreachable" in error["message"]


def test_wrong_service_credentials_are_503_naming_the_setting(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service(password="not-the-password")
    token, _ = identity_server.issue_token()

    resp = service.get(token)

    assert resp.status_code == 503
    assert "[keystone_authtoken]" in resp.get_json()["error"]["message"]


def test_cached_tokens_survive_identity_going_away(
    identity_server: IdentityServer, make_service: Any
) -> None:
    service = make_service()
    token, _ = identity_server.issue_token()
    assert service.get(token).status_code == 200
    # Point the validator at a closed port: the cached answer is still used.
    service.validator.auth_url = f"http://127.0.0.1:{free_port()}/v3"

    assert service.get(token).status_code == 200


def test_cache_is_bounded(identity_server: IdentityServer, make_service: Any) -> None:
    service = make_service(cache_size=2)
    admin, _ = identity_server.issue_token()
    tokens = [_rescope(identity_server, admin) for _ in range(4)]

    for token in tokens:
        assert service.get(token).status_code == 200
        assert len(service.validator) <= 2
    assert len(service.validator) == 2
    # The oldest entries were evicted: validating the first token again asks identity.
    asked = service.validator.stats.validations
    assert service.get(tokens[0]).status_code == 200
    assert service.validator.stats.validations == asked + 1


def test_concurrent_requests(identity_server: IdentityServer, make_service: Any) -> None:
    service = make_service(cache_size=3)
    admin, _ = identity_server.issue_token()
    tokens = [_rescope(identity_server, admin) for _ in range(5)]

    def call(i: int) -> int:
        client = service.app.test_client()
        resp = client.get("/v2.1/whoami", headers={"X-Auth-Token": tokens[i % len(tokens)]})
        return int(resp.status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(call, range(40)))

    assert codes == [200] * 40
    assert len(service.validator) <= 3


def _rescope(identity: IdentityServer, token: str) -> str:
    """A new token from an existing one (method token: no password hashing)."""
    resp = requests.post(
        f"{identity.url}/auth/tokens?nocatalog",
        json={
            "auth": {
                "identity": {"methods": ["token"], "token": {"id": token}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
            }
        },
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.headers["X-Subject-Token"])
