"""The compute control plane in one test process, with real everything but the hypervisor.

compute-api is a Flask test client on a database of its own in the session's private MariaDB,
validating tokens against the real identity under gunicorn and checking images against the real
image-api under gunicorn (found through identity's catalog). The scheduler, the conductor and
fake-driver compute agents are the real ``RPCServer``s with their real endpoints, in threads of
this process, on the session's private RabbitMQ. Each environment uses its own exchange and
unique host names, so queues of other environments never see its messages.

Accounts (through identity's API): a ``service`` user for token validation, members of two
projects ``a`` and ``b``, and the bootstrap admin.

With the network service (``tests/fixtures/network_server.py``, session-wide, in identity's
catalog) compute-api finds the network endpoint there and servers get ports. Compute's service
user has only the ``service`` role, as the deploy gives it: the network API lets that role read
and bind every project's ports (Neutron's ``service_api``).
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from agents.compute.fake import FakeDriver
from agents.compute.service import Agent
from agents.compute.service import build as build_agent
from control.common import config, migrate
from control.common.db import Database
from control.compute.app import create_app
from control.conductor.service import Conductor
from control.conductor.service import build as build_conductor
from control.scheduler.service import Scheduler
from control.scheduler.service import build as build_scheduler
from tests.fixtures.identity_server import IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin, ImageServer, authtoken_section

SERVICE_DOWN_TIME = 3
HEARTBEAT = 0.3


# How long a test waits for a state change. Generous: builds are fast, but a loaded 2-core CI
# machine running twenty of them at once is not; the tests assert states, never times.
WAIT = 60.0


@dataclass
class ComputeEnv:
    app: Flask
    client: FlaskClient
    identity: IdentityServer
    image: ImageServer
    rabbit_url: str
    exchange: str
    db_url: str
    workdir: Path
    accounts: dict[str, Account]
    conf_overrides: dict[str, dict[str, Any]]
    scheduler: Scheduler | None = None
    conductor: Conductor | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    drivers: dict[str, FakeDriver] = field(default_factory=dict)
    image_id: str = ""
    _tokens: dict[str, str] = field(default_factory=dict)
    _database: Database | None = None

    # -- accounts and requests -----------------------------------------------------------------

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

    def headers(self, who: str = "a") -> dict[str, str]:
        return {"X-Auth-Token": self.token(who)}

    def project_id(self, who: str = "a") -> str:
        if who == "admin":
            _, body = self.identity.issue_token()
            return str(body["project"]["id"])
        return self.accounts[who].project_id

    def get(self, path: str, who: str = "a") -> Any:
        return self.client.get(f"/v2.1{path}", headers=self.headers(who))

    def post(self, path: str, body: Any, who: str = "a") -> Any:
        return self.client.post(f"/v2.1{path}", json=body, headers=self.headers(who))

    def put(self, path: str, body: Any, who: str = "a") -> Any:
        return self.client.put(f"/v2.1{path}", json=body, headers=self.headers(who))

    def delete(self, path: str, who: str = "a") -> Any:
        return self.client.delete(f"/v2.1{path}", headers=self.headers(who))

    @property
    def database(self) -> Database:
        if self._database is None:
            self._database = Database(self.db_url)
        return self._database

    # -- the control plane ---------------------------------------------------------------------

    def conf(self, service: str, **sections: dict[str, Any]) -> config.Config:
        overrides = {k: dict(v) for k, v in self.conf_overrides.items()}
        for name, values in sections.items():
            overrides.setdefault(name, {}).update(values)
        return config.load(service, path=self.workdir / "none.conf", overrides=overrides)

    def start_control(self) -> None:
        self.scheduler = build_scheduler(self.conf("compute", DEFAULT={"host": "ctl"}))
        self.scheduler.interval = HEARTBEAT
        self.scheduler.start()
        self.conductor = build_conductor(self.conf("compute", DEFAULT={"host": "ctl"}))
        self.conductor.interval = HEARTBEAT
        self.conductor.start()

    def add_agent(
        self,
        name: str,
        zone: str = "nova",
        vcpus: int = 8,
        memory_mb: int = 8192,
        local_gb: int = 100,
        wait: bool = True,
    ) -> tuple[str, FakeDriver]:
        """Start a fake-driver compute agent; return its (unique) host name and driver."""
        host = f"{name}-{secrets.token_hex(3)}"
        driver = FakeDriver(vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb)
        conf = self.conf(
            "compute-agent",
            DEFAULT={"host": host},
            compute={
                "driver": "fake",
                "availability_zone": zone,
                "image_cache_dir": str(self.workdir / f"cache-{host}"),
                "heartbeat_interval": HEARTBEAT,
                "sync_power_state_interval": HEARTBEAT,
            },
            identity={"auth_url": self.identity.url},
        )
        agent = build_agent(conf, driver)
        agent.start()
        self.agents[host] = agent
        self.drivers[host] = driver
        if wait:
            wait_for(lambda: self._node_known(host), f"compute node {host} registered")
        return host, driver

    def _node_known(self, host: str) -> bool:
        from sqlalchemy import select

        from control.compute import models

        with self.database.transaction() as sess:
            return (
                sess.scalars(
                    select(models.ComputeNode).where(models.ComputeNode.host == host)
                ).first()
                is not None
            )

    def stop_agent(self, host: str) -> None:
        agent = self.agents.pop(host, None)
        if agent is not None:
            agent.stop()

    def stop(self) -> None:
        for host in list(self.agents):
            self.stop_agent(host)
        if self.conductor is not None:
            self.conductor.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        self.app.extensions["cirrus.compute"].rpc.close()
        self.app.extensions["cirrus.db"].dispose()
        self.app.extensions["cirrus.auth"].close()
        if self._database is not None:
            self._database.dispose()

    # -- helpers -------------------------------------------------------------------------------

    def flavor(self, name: str, ram: int = 512, vcpus: int = 1, disk: int = 1) -> str:
        resp = self.post(
            "/flavors",
            {"flavor": {"name": name, "ram": ram, "vcpus": vcpus, "disk": disk}},
            "admin",
        )
        assert resp.status_code == 200, resp.get_json()
        return str(resp.get_json()["flavor"]["id"])

    def boot(self, name: str, flavor: str, who: str = "a", **extra: Any) -> dict[str, Any]:
        body = {"server": {"name": name, "imageRef": self.image_id, "flavorRef": flavor, **extra}}
        resp = self.post("/servers", body, who)
        assert resp.status_code == 202, resp.get_json()
        server: dict[str, Any] = resp.get_json()["server"]
        return server

    def show(self, server_id: str, who: str = "a") -> dict[str, Any]:
        resp = self.get(f"/servers/{server_id}", who)
        assert resp.status_code == 200, resp.get_json()
        server: dict[str, Any] = resp.get_json()["server"]
        return server

    def wait_status(
        self, server_id: str, status: str, who: str = "a", timeout: float = WAIT
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.update(self.show(server_id, who))
            return bool(seen["status"] == status and seen["OS-EXT-STS:task_state"] is None)

        wait_for(
            check,
            lambda: (
                f"server {server_id} {status} (last seen: {seen.get('status')}, "
                f"task {seen.get('OS-EXT-STS:task_state')})"
            ),
            timeout,
        )
        return seen

    def wait_gone(self, server_id: str, who: str = "a", timeout: float = WAIT) -> None:
        wait_for(
            lambda: self.get(f"/servers/{server_id}", who).status_code == 404,
            f"server {server_id} deleted",
            timeout,
        )


def wait_for(
    check: Callable[[], bool], what: str | Callable[[], str], timeout: float = WAIT
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    described = what() if callable(what) else what
    pytest.fail(f"timed out after {timeout:g} s waiting for {described}")


def upload_image(identity: IdentityServer, image: ImageServer, data: bytes) -> str:
    """A public raw image in image-api, uploaded as the admin; its id."""
    token, _ = identity.issue_token()
    headers = {"X-Auth-Token": token}
    body = {
        "name": f"compute-test-{secrets.token_hex(3)}",
        "disk_format": "raw",
        "container_format": "bare",
        "visibility": "public",
    }
    resp = requests.post(f"{image.url}/v2/images", json=body, headers=headers, timeout=30)
    assert resp.status_code == 201, resp.text
    image_id = str(resp.json()["id"])
    resp = requests.put(
        f"{image.url}/v2/images/{image_id}/file",
        data=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert resp.status_code == 204, resp.text
    return image_id


def build(
    mariadb: Any,
    identity: IdentityServer,
    image: ImageServer,
    rabbitmq: Any,
    workdir: Path,
    settings: dict[str, dict[str, Any]] | None = None,
) -> ComputeEnv:
    admin = IdentityAdmin(identity)
    try:
        service_user = admin.account("nova", "service", project="service")
        accounts = {
            "a": admin.account("cmp-a", "member"),
            "b": admin.account("cmp-b", "member"),
        }
    finally:
        admin.close()
    url = mariadb.create_database("compute")
    migrate.upgrade("compute", url)
    exchange = f"cirrus-test-{secrets.token_hex(4)}"
    overrides: dict[str, dict[str, Any]] = {
        "DEFAULT": {"log_level": "WARNING"},
        "database": {"connection": url},
        "keystone_authtoken": authtoken_section(identity, service_user),
        "rpc": {"transport_url": rabbitmq.url, "exchange": exchange},
        "compute": {"service_down_time": SERVICE_DOWN_TIME, "scheduler_timeout": 30},
        "scheduler": {
            "cpu_allocation_ratio": 1.0,
            "ram_allocation_ratio": 1.0,
            "disk_allocation_ratio": 1.0,
        },
        "conductor": {"build_timeout": 60, "sweep_interval": HEARTBEAT},
    }
    for section, values in (settings or {}).items():
        overrides.setdefault(section, {}).update(values)
    conf = config.load("compute", path=workdir / "none.conf", overrides=overrides)
    app = create_app(conf)
    app.config["TESTING"] = True
    env = ComputeEnv(
        app,
        app.test_client(),
        identity,
        image,
        rabbitmq.url,
        exchange,
        url,
        workdir,
        accounts,
        overrides,
    )
    env.image_id = upload_image(identity, image, b"\0" * 1024 * 1024)
    return env


def env_fixture(
    mariadb: Any,
    identity_server: IdentityServer,
    image_server: ImageServer,
    rabbitmq: Any,
    tmp_path_factory: pytest.TempPathFactory,
    agents: int = 2,
    settings: dict[str, dict[str, Any]] | None = None,
) -> Iterator[ComputeEnv]:
    """Body of each test module's ``env`` fixture: the API, scheduler, conductor and ``agents``
    fake compute hosts; stopped and cleaned up afterwards."""
    workdir = tmp_path_factory.mktemp("compute")
    env = build(mariadb, identity_server, image_server, rabbitmq, workdir, settings)
    try:
        env.start_control()
        for index in range(agents):
            env.add_agent(f"cmp{index}")
        yield env
    finally:
        env.stop()
        shutil.rmtree(workdir, ignore_errors=True)
