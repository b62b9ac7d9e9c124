"""The unmodified ``openstack`` CLI and openstacksdk against image-api under gunicorn.

The image service runs under gunicorn beside identity (also under gunicorn) and is registered in
identity's catalog with a public endpoint, so the clients find it exactly as they find Glance (the
``image_server`` fixture of the ``tests.fixtures.image_server`` plugin).
Test images are real qcow2 files made with ``qemu-img``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import openstack.config
import pytest

from tests.fixtures.identity_server import CLOUD, IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin, ImageServer
from tests.fixtures.processes import venv_bin

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb]

MEMBER_CLOUD = "image-member"


@pytest.fixture(scope="module")
def member(identity_server: IdentityServer) -> Account:
    admin = IdentityAdmin(identity_server)
    try:
        return admin.account("img-cli", "member")
    finally:
        admin.close()


class CLI:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(
        self, *args: str, cloud: str = CLOUD, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
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
def clouds_file(
    identity_server: IdentityServer, member: Account, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("image-cli") / "clouds.yaml"
    return identity_server.clouds_yaml(
        path,
        extra={
            MEMBER_CLOUD: identity_server.cloud(member.username, member.password, member.project)
        },
    )


@pytest.fixture(scope="module")
def cli(image_server: ImageServer, identity_server: IdentityServer, clouds_file: Path) -> CLI:
    return CLI(identity_server.env(clouds_file))


def unique(prefix: str = "cli-img") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def qcow2(path: Path, size: str = "32M") -> Path:
    subprocess.run(
        ["qemu-img", "create", "-f", "qcow2", str(path), size],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


def test_image_lifecycle_with_the_cli(
    cli: CLI, member: Account, tmp_path: Path, image_server: ImageServer
) -> None:
    disk = qcow2(tmp_path / "disk.qcow2")
    data = disk.read_bytes()
    name = unique()

    created = cli.json(
        "image",
        "create",
        "--file",
        str(disk),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        name,
    )

    assert created["name"] == name
    assert created["status"] == "active"
    assert created["size"] == len(data)
    assert created["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert created["disk_format"] == "qcow2"
    assert created["container_format"] == "bare"
    assert created["visibility"] == "shared"
    assert (image_server.store_dir / created["id"]).read_bytes() == data

    listed = cli.json("image", "list")
    assert {"ID": created["id"], "Name": name, "Status": "active"} in listed

    shown = cli.json("image", "show", name)
    assert shown["id"] == created["id"]
    assert shown["virtual_size"] == 32 * 1024 * 1024
    # The CLI files the hash under "properties" (its column list names them hash_algo/value).
    assert shown["properties"]["os_hash_algo"] == "sha512"
    assert shown["properties"]["os_hash_value"] == hashlib.sha512(data).hexdigest()

    cli.run("image", "set", "--property", "os_distro=cirrus", "--tag", "tiny", name)
    updated = cli.json("image", "show", name)
    assert updated["properties"]["os_distro"] == "cirrus"
    assert updated["tags"] == ["tiny"]

    saved = tmp_path / "saved.qcow2"
    cli.run("image", "save", "--file", str(saved), name)
    assert saved.read_bytes() == data

    # Share with the member's project: pending, accepted by the member, then removed.
    added = cli.json("image", "add", "project", name, member.project_id)
    assert (added["image_id"], added["member_id"], added["status"]) == (
        created["id"],
        member.project_id,
        "pending",
    )
    assert name not in [row["Name"] for row in cli.json("image", "list", cloud=MEMBER_CLOUD)]
    cli.run("image", "set", "--accept", created["id"], cloud=MEMBER_CLOUD)
    members = cli.json("image", "member", "list", name)
    assert [(m["Member ID"], m["Status"]) for m in members] == [(member.project_id, "accepted")]
    assert name in [row["Name"] for row in cli.json("image", "list", cloud=MEMBER_CLOUD)]
    cli.run("image", "remove", "project", name, member.project_id)
    assert cli.json("image", "member", "list", name) == []
    refused = cli.run("image", "show", created["id"], cloud=MEMBER_CLOUD, check=False)
    assert refused.returncode != 0

    cli.run("image", "delete", name)
    assert name not in [row["Name"] for row in cli.json("image", "list")]
    assert not (image_server.store_dir / created["id"]).exists()


def test_raw_file_declared_qcow2_is_refused_with_a_clear_message(cli: CLI, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(os.urandom(1024 * 1024))
    name = unique("cli-bad")

    result = cli.run(
        "image",
        "create",
        "--file",
        str(raw),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        name,
        check=False,
    )

    assert result.returncode != 0
    assert "its data is in raw format" in result.stderr, result.stderr
    assert "disk_format is qcow2" in result.stderr
    # The SDK deletes the image it created when the upload fails.
    assert name not in [row["Name"] for row in cli.json("image", "list")]


def test_cli_streams_an_upload_from_stdin(cli: CLI, tmp_path: Path) -> None:
    """From a pipe the SDK cannot know the size: the body arrives chunked, without a length."""
    data = os.urandom(3 * 1024 * 1024 + 5)
    name = unique("cli-stdin")

    result = subprocess.run(
        [
            str(venv_bin("openstack")),
            "--os-cloud",
            CLOUD,
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "-f",
            "json",
            name,
        ],
        input=data,
        env=cli.env,
        capture_output=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode()[-3000:]
    created = json.loads(result.stdout)
    assert (created["status"], created["size"]) == ("active", len(data))
    assert created["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    cli.run("image", "delete", created["id"])


@pytest.fixture(scope="module")
def conn(image_server: ImageServer, clouds_file: Path) -> Iterator[openstack.connection.Connection]:
    config = openstack.config.OpenStackConfig(
        config_files=[str(clouds_file)], vendor_files=[], load_envvars=False
    )
    connection = openstack.connection.Connection(config=config.get_one(cloud=CLOUD))
    yield connection
    connection.close()


def test_sdk_create_list_download(conn: openstack.connection.Connection, tmp_path: Path) -> None:
    disk = qcow2(tmp_path / "sdk.qcow2", "8M")
    name = unique("sdk-img")

    # data= rather than filename=: the SDK leaves a file it opened itself unclosed.
    with disk.open("rb") as handle:
        image = conn.image.create_image(
            name,
            data=handle,
            disk_format="qcow2",
            container_format="bare",
            allow_duplicates=True,
        )
    try:
        fetched = conn.image.get_image(image.id)
        assert fetched.status == "active"
        assert fetched.size == disk.stat().st_size
        assert name in [i.name for i in conn.image.images()]
        assert [i.id for i in conn.image.images(name=name)] == [image.id]
        out = tmp_path / "downloaded.qcow2"
        conn.image.download_image(image, output=str(out))
        assert out.read_bytes() == disk.read_bytes()
    finally:
        conn.image.delete_image(image.id)
    assert conn.image.find_image(name) is None
