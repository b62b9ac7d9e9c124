"""The unmodified ``openstack`` CLI and openstacksdk against block storage (the ``volume_server``
fixture: volume-api under gunicorn, cirrus-volume-rpc and a real file-backend agent), found
through identity's catalog as clients find Cinder: volumes, snapshots, a volume from a snapshot,
extend, delete, quotas, volume types and services."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.identity_server import CLOUD, IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin
from tests.fixtures.processes import venv_bin
from tests.fixtures.volume_server import VolumeServer

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb, pytest.mark.rabbitmq]

MEMBER_CLOUD = "volume-member"


@pytest.fixture(scope="module")
def member(identity_server: IdentityServer) -> Account:
    admin = IdentityAdmin(identity_server)
    try:
        return admin.account("vol-cli", "member")
    finally:
        admin.close()


class CLI:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def call(self, *args: str, cloud: str = MEMBER_CLOUD) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv_bin("openstack")), "--os-cloud", cloud, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def run(self, *args: str, cloud: str = MEMBER_CLOUD) -> str:
        result = self.call(*args, cloud=cloud)
        if result.returncode != 0:
            pytest.fail(
                f"openstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr[-3000:]}"
            )
        return result.stdout

    def json(self, *args: str, cloud: str = MEMBER_CLOUD) -> Any:
        output = self.run(*args, "-f", "json", cloud=cloud)
        try:
            return json.loads(output)
        except ValueError:
            pytest.fail(f"openstack {' '.join(args)} printed no JSON: {output!r}")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: still {last!r} after {timeout:g}s")


@pytest.fixture(scope="module")
def cli(
    volume_server: VolumeServer,
    identity_server: IdentityServer,
    member: Account,
    tmp_path_factory: pytest.TempPathFactory,
) -> CLI:
    path: Path = tmp_path_factory.mktemp("volume-cli") / "clouds.yaml"
    identity_server.clouds_yaml(
        path,
        extra={
            MEMBER_CLOUD: identity_server.cloud(member.username, member.password, member.project)
        },
    )
    return CLI(identity_server.env(path))


def _status(cli: CLI, name_or_id: str, kind: str = "volume") -> str:
    args = ("volume", "show") if kind == "volume" else ("volume", "snapshot", "show")
    return str(cli.json(*args, name_or_id)["status"])


def test_volume_workflow_with_the_cli(cli: CLI, volume_server: VolumeServer) -> None:
    suffix = secrets.token_hex(3)
    name = f"cli-vol-{suffix}"
    created = cli.json("volume", "create", "--size", "1", "--description", "from cli", name)
    assert created["name"] == name
    assert created["size"] == 1
    assert created["status"] in ("creating", "available")
    wait_for("volume available", lambda: _status(cli, name) == "available")

    listed = cli.json("volume", "list")
    mine = next(v for v in listed if v["ID"] == created["id"])
    assert (mine["Name"], mine["Size"], mine["Status"]) == (name, 1, "available")
    shown = cli.json("volume", "show", name)
    assert shown["description"] == "from cli"
    assert shown["bootable"] in ("false", False)
    assert shown["type"] == "__DEFAULT__"

    cli.run("volume", "set", "--name", f"{name}-renamed", name)
    name = f"{name}-renamed"
    assert cli.json("volume", "show", created["id"])["name"] == name

    snap = cli.json("volume", "snapshot", "create", "--volume", name, f"cli-snap-{suffix}")
    wait_for("snapshot available", lambda: _status(cli, snap["id"], "snapshot") == "available")
    copy = cli.json(
        "volume", "create", "--snapshot", snap["id"], "--size", "2", f"cli-copy-{suffix}"
    )
    wait_for("copy available", lambda: _status(cli, copy["id"]) == "available")
    assert cli.json("volume", "show", copy["id"])["size"] == 2

    # A volume with a snapshot cannot go: the CLI shows why.
    refused = cli.call("volume", "delete", name)
    assert refused.returncode != 0
    assert "snapshot" in refused.stderr

    cli.run("volume", "set", "--size", "2", name)
    wait_for("extended", lambda: cli.json("volume", "show", name)["size"] == 2)

    cli.run("volume", "snapshot", "delete", snap["id"])
    wait_for(
        "snapshot gone",
        lambda: snap["id"] not in [s["ID"] for s in cli.json("volume", "snapshot", "list")],
    )
    cli.run("volume", "delete", name, copy["id"])
    wait_for(
        "volumes gone",
        lambda: not {created["id"], copy["id"]} & {v["ID"] for v in cli.json("volume", "list")},
    )
    missing = cli.call("volume", "show", name)
    assert missing.returncode != 0


def test_quota_types_and_services(cli: CLI, volume_server: VolumeServer, member: Account) -> None:
    rows = cli.json("quota", "show", "--volume")
    quota = {row["Resource"]: row["Limit"] for row in rows}
    assert quota["volumes"] == 10
    assert quota["gigabytes"] == 1000
    assert quota["snapshots"] == 10

    types = cli.json("volume", "type", "list")
    assert "__DEFAULT__" in [t["Name"] for t in types]

    services = cli.json("volume", "service", "list", cloud=CLOUD)
    by_binary = {(s["Binary"], s["Host"]): s for s in services}
    agent = by_binary[("cinder-volume", f"{volume_server.agent_host}@file")]
    assert agent["State"] == "up"
    assert agent["Status"] == "enabled"
    assert any(binary == "cinder-scheduler" for binary, _ in by_binary)


def test_openstacksdk_block_storage(
    volume_server: VolumeServer, identity_server: IdentityServer, member: Account
) -> None:
    import openstack

    conn = openstack.connect(
        auth_url=identity_server.url,
        username=member.username,
        password=member.password,
        project_name=member.project,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
    )
    try:
        volume = conn.block_storage.create_volume(size=1, name=f"sdk-{secrets.token_hex(3)}")
        volume = conn.block_storage.wait_for_status(volume, "available", wait=60)
        assert volume.size == 1
        assert volume.id in [v.id for v in conn.block_storage.volumes()]
        conn.block_storage.delete_volume(volume.id)
        conn.block_storage.wait_for_delete(volume, wait=60)
    finally:
        conn.close()
