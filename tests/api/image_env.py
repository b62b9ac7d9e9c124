"""A running image app (Flask test client) on the session's private MariaDB, validating tokens
against the real identity under gunicorn (the ``identity_server`` fixture).

Accounts are made through identity's API: the service user (role ``service`` on project
``service``) the app validates tokens with, two projects A and B with a member each, a reader on
A, and the bootstrap admin. Images for the tests are made with ``qemu-img`` in temporary
directories.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from control.common import config, migrate
from control.image.app import create_app
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin, authtoken_section

PATCH = "application/openstack-images-v2.1-json-patch"
OCTET = "application/octet-stream"
MAX_UPLOAD = 8 * 1024 * 1024


@dataclass
class ImageEnv:
    app: Flask
    client: FlaskClient
    identity: IdentityServer
    store_dir: Path
    workdir: Path
    accounts: dict[str, Account]
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, who: str = "a") -> str:
        if who not in self._tokens:
            if who == "admin":
                token, _ = self.identity.issue_token()
            else:
                account = self.accounts[who]
                token, _ = self.identity.issue_token(
                    account.username, account.password, account.project
                )
            self._tokens[who] = token
        return self._tokens[who]

    def headers(self, who: str = "a", **extra: str) -> dict[str, str]:
        return {"X-Auth-Token": self.token(who), **extra}

    def project_id(self, who: str = "a") -> str:
        return self.accounts[who].project_id

    # -- requests ------------------------------------------------------------------------------

    def get(self, path: str, who: str = "a") -> Any:
        # buffered: the body is read and the response closed (download streams hold a file).
        return self.client.get(path, headers=self.headers(who), buffered=True)

    def delete(self, path: str, who: str = "a") -> Any:
        return self.client.delete(path, headers=self.headers(who))

    def post(self, path: str, body: Any, who: str = "a") -> Any:
        return self.client.post(path, json=body, headers=self.headers(who))

    def patch(self, image_id: str, changes: list[dict[str, Any]], who: str = "a") -> Any:
        return self.client.patch(
            f"/v2/images/{image_id}",
            json=changes,
            headers=self.headers(who, **{"Content-Type": PATCH}),
        )

    def create(self, who: str = "a", **body: Any) -> dict[str, Any]:
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        resp = self.post("/v2/images", body, who)
        assert resp.status_code == 201, resp.get_json()
        image: dict[str, Any] = resp.get_json()
        return image

    def upload(self, image_id: str, data: bytes, who: str = "a", **headers: str) -> Any:
        return self.client.put(
            f"/v2/images/{image_id}/file",
            data=data,
            headers=self.headers(who, **{"Content-Type": OCTET, **headers}),
        )

    def show(self, image_id: str, who: str = "a") -> dict[str, Any]:
        resp = self.get(f"/v2/images/{image_id}", who)
        assert resp.status_code == 200, resp.get_json()
        image: dict[str, Any] = resp.get_json()
        return image


def qemu_img(*args: str) -> None:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is not installed: apt-get install qemu-utils")
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def make_qcow2(path: Path, size: str = "16M", *options: str) -> bytes:
    """A real qcow2 made by qemu-img; its bytes."""
    qemu_img("create", "-f", "qcow2", *options, str(path), size)
    return path.read_bytes()


def build(
    mariadb: Any,
    identity: IdentityServer,
    workdir: Path,
    image_settings: dict[str, Any] | None = None,
) -> ImageEnv:
    admin = IdentityAdmin(identity)
    try:
        service_user = admin.account("glance", "service", project="service")
        accounts = {
            "a": admin.account("img-a", "member"),
            "b": admin.account("img-b", "member"),
        }
        accounts["reader"] = admin.account("img-reader", "reader", accounts["a"].project)
    finally:
        admin.close()
    url = mariadb.create_database("image")
    migrate.upgrade("image", url)
    store_dir = workdir / "images"
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"log_level": "WARNING"},
        "database": {"connection": url},
        "keystone_authtoken": authtoken_section(identity, service_user),
        "image": {
            "store_dir": str(store_dir),
            "max_upload_size": MAX_UPLOAD,
            "max_tags": 5,
            "max_members": 3,
            **(image_settings or {}),
        },
    }
    conf = config.load("image", path=workdir / "none.conf", overrides=overrides)
    app = create_app(conf)
    app.config["TESTING"] = True
    return ImageEnv(app, app.test_client(), identity, store_dir, workdir, accounts)


def env_fixture(
    mariadb: Any, identity_server: IdentityServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageEnv]:
    """Body of each test module's ``env`` fixture: build, yield, dispose."""
    workdir = tmp_path_factory.mktemp("image")
    env = build(mariadb, identity_server, workdir)
    yield env
    env.app.extensions["cirrus.db"].dispose()
    env.app.extensions["cirrus.auth"].close()
    shutil.rmtree(workdir, ignore_errors=True)
