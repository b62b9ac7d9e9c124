"""The block storage API as clients meet it: HTTP against the ``volume_server`` fixture
(volume-api under gunicorn, cirrus-volume-rpc and a real file-backend volume agent), with tokens
from the real identity.

Accounts are made through identity's API: two projects A and B with a member each, and the
bootstrap admin; :meth:`VolumeEnv.new_account` makes more (a fresh project for quota tests).
Volumes go through the whole life cycle (the agent makes the files), so helpers wait for states.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from control.common.db import Database
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin
from tests.fixtures.volume_server import VolumeServer

WAIT = 60.0


@dataclass
class VolumeEnv:
    server: VolumeServer
    identity: IdentityServer
    accounts: dict[str, Account]
    http: requests.Session = field(default_factory=requests.Session)
    _tokens: dict[str, str] = field(default_factory=dict)
    _admin_project: str = ""
    _database: Database | None = None

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

    def new_account(self, prefix: str = "vol-x", role: str = "member") -> str:
        admin = IdentityAdmin(self.identity)
        try:
            account = admin.account(prefix, role)
        finally:
            admin.close()
        who = f"{prefix}-{secrets.token_hex(3)}"
        self.accounts[who] = account
        return who

    @property
    def database(self) -> Database:
        """The volume database (to make states the API cannot, such as a host's reports)."""
        if self._database is None:
            self._database = Database(self.server.db_url)
        return self._database

    # -- requests ------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        who: str = "a",
        body: Any = None,
        project: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """``method`` on ``/v3/<project of who>`` + ``path``."""
        url = f"{self.server.project_url(project or self.project_id(who))}{path}"
        all_headers = {"X-Auth-Token": self.token(who), **(headers or {})}
        return self.http.request(method, url, json=body, headers=all_headers, timeout=max(WAIT, 30))

    def get(self, path: str, who: str = "a", **kw: Any) -> requests.Response:
        return self.request("GET", path, who, **kw)

    def post(self, path: str, body: Any, who: str = "a", **kw: Any) -> requests.Response:
        return self.request("POST", path, who, body, **kw)

    def put(self, path: str, body: Any, who: str = "a", **kw: Any) -> requests.Response:
        return self.request("PUT", path, who, body, **kw)

    def delete(self, path: str, who: str = "a", **kw: Any) -> requests.Response:
        return self.request("DELETE", path, who, **kw)

    def action(self, volume_id: str, name: str, value: Any = None, who: str = "a") -> Any:
        return self.post(f"/volumes/{volume_id}/action", {name: value}, who)

    # -- volumes -------------------------------------------------------------------------------

    def create_volume(
        self, who: str = "a", wait: str | None = "available", **attrs: Any
    ) -> dict[str, Any]:
        attrs.setdefault("size", 1)
        attrs.setdefault("name", unique("vol"))
        resp = self.post("/volumes", {"volume": attrs}, who)
        assert resp.status_code == 202, resp.text
        volume: dict[str, Any] = resp.json()["volume"]
        if wait:
            volume = self.wait_volume(volume["id"], wait, who)
        return volume

    def show_volume(self, volume_id: str, who: str = "a") -> dict[str, Any]:
        resp = self.get(f"/volumes/{volume_id}", who)
        assert resp.status_code == 200, resp.text
        found: dict[str, Any] = resp.json()["volume"]
        return found

    def wait_volume(
        self, volume_id: str, status: str, who: str = "a", timeout: float = WAIT
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        volume: dict[str, Any] = {}
        while time.monotonic() < deadline:
            volume = self.show_volume(volume_id, who)
            if volume["status"] == status:
                return volume
            if volume["status"] in ("error", "error_deleting") and status != volume["status"]:
                break
            time.sleep(0.2)
        raise AssertionError(
            f"volume {volume_id} is {volume.get('status')}, not {status}:\n{self.server.log_tail()}"
        )

    def wait_gone(self, path: str, who: str = "a", timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.get(path, who)
            if resp.status_code == 404:
                return
            time.sleep(0.2)
        raise AssertionError(f"{path} still exists: {resp.text}\n{self.server.log_tail()}")

    def delete_volume(self, volume_id: str, who: str = "a", wait: bool = True) -> None:
        resp = self.delete(f"/volumes/{volume_id}", who)
        assert resp.status_code == 202, resp.text
        if wait:
            self.wait_gone(f"/volumes/{volume_id}", who)

    def create_snapshot(
        self, volume_id: str, who: str = "a", wait: str | None = "available", **attrs: Any
    ) -> dict[str, Any]:
        attrs.setdefault("name", unique("snap"))
        resp = self.post("/snapshots", {"snapshot": {"volume_id": volume_id, **attrs}}, who)
        assert resp.status_code == 202, resp.text
        snap: dict[str, Any] = resp.json()["snapshot"]
        if wait:
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                snap = self.get(f"/snapshots/{snap['id']}", who).json()["snapshot"]
                if snap["status"] == wait:
                    return snap
                time.sleep(0.2)
            raise AssertionError(f"snapshot is {snap['status']}:\n{self.server.log_tail()}")
        return snap

    def close(self) -> None:
        self.http.close()
        if self._database is not None:
            self._database.dispose()


def unique(prefix: str = "vol") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def assert_error(resp: requests.Response, status: int, *fragments: str) -> str:
    """Cinder's error body ``{<fault>: {"code", "message"}}`` with ``status`` and a message
    holding every fragment; returns the message."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert len(body) == 1, body
    (fault,) = body.values()
    assert fault["code"] == status, body
    for fragment in fragments:
        assert fragment in fault["message"], fault["message"]
    return str(fault["message"])


def env_fixture(server: VolumeServer, identity: IdentityServer) -> Iterator[VolumeEnv]:
    admin = IdentityAdmin(identity)
    try:
        accounts = {"a": admin.account("vol-a", "member"), "b": admin.account("vol-b", "member")}
    finally:
        admin.close()
    env = VolumeEnv(server, identity, accounts)
    yield env
    env.close()
