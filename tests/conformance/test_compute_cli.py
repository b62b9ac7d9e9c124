"""The unmodified ``openstack`` CLI and openstacksdk against compute-api under gunicorn.

compute-api runs under gunicorn beside identity and image-api (also under gunicorn), registered
in identity's catalog as ``compute`` at ``http://127.0.0.1:PORT/v2.1``; the scheduler, the
conductor and two fake-driver compute agents run in the test process (``compute_server`` fixture
of the ``tests.fixtures.compute_server`` plugin). The fake driver stands in for the hypervisor
only; the real VM proof is the libvirt driver's and the molecule scenario's.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import openstack
import openstack.config
import pytest

from tests.fixtures.compute_server import ComputeServer
from tests.fixtures.identity_server import CLOUD, IdentityServer
from tests.fixtures.image_server import ImageServer
from tests.fixtures.processes import venv_bin

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb, pytest.mark.rabbitmq]


class CLI:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(venv_bin("openstack")), "--os-cloud", CLOUD, *args],
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

    def json(self, *args: str) -> Any:
        result = self.run(*args, "-f", "json")
        try:
            return json.loads(result.stdout)
        except ValueError:
            pytest.fail(f"openstack {' '.join(args)} printed no JSON: {result.stdout!r}")


@pytest.fixture(scope="module")
def cli(compute_server: ComputeServer, identity_server: IdentityServer) -> CLI:
    return CLI(identity_server.env())


@pytest.fixture(scope="module")
def image(cli: CLI, tmp_path_factory: pytest.TempPathFactory) -> str:
    disk = tmp_path_factory.mktemp("compute-cli") / "tiny.raw"
    disk.write_bytes(b"\0" * 1024 * 1024)
    name = f"cli-tiny-{secrets.token_hex(3)}"
    cli.json(
        "image", "create", "--file", str(disk), "--disk-format", "raw",
        "--container-format", "bare", "--public", name,
    )  # fmt: skip
    return name


@pytest.fixture(scope="module")
def flavor(cli: CLI) -> str:
    name = f"cli.tiny-{secrets.token_hex(3)}"
    created = cli.json("flavor", "create", "--ram", "256", "--vcpus", "1", "--disk", "1", name)
    assert created["name"] == name
    return name


def test_flavor_and_keypair(cli: CLI, flavor: str, tmp_path: Path) -> None:
    listed = cli.json("flavor", "list", "--all")
    assert flavor in [f["Name"] for f in listed]
    shown = cli.json("flavor", "show", flavor)
    assert shown["ram"] == 256 and shown["vcpus"] == 1
    key = f"cli-key-{secrets.token_hex(3)}"
    private = tmp_path / "key"
    created = cli.json("keypair", "create", "--private-key", str(private), key)
    assert created["name"] == key
    assert created["fingerprint"]
    assert private.exists()
    assert key in [k["Name"] for k in cli.json("keypair", "list")]
    cli.run("keypair", "delete", key)


def test_server_lifecycle_with_the_cli(
    cli: CLI,
    image: str,
    flavor: str,
    compute_server: ComputeServer,
    identity_server: IdentityServer,
) -> None:
    name = f"vm1-{secrets.token_hex(3)}"
    created = cli.json("server", "create", "--image", image, "--flavor", flavor, "--wait", name)
    assert created["status"] == "ACTIVE"
    assert created["name"] == name
    listed = cli.json("server", "list")
    assert {"ID": created["id"], "Name": name, "Status": "ACTIVE"}.items() <= next(
        s for s in listed if s["ID"] == created["id"]
    ).items()
    shown = cli.json("server", "show", name)
    assert shown["id"] == created["id"]
    assert shown["OS-EXT-STS:vm_state"] == "active"

    cli.run("server", "stop", name)
    _wait(compute_server, identity_server, name, "SHUTOFF")
    cli.run("server", "start", name)
    _wait(compute_server, identity_server, name, "ACTIVE")
    cli.run("server", "reboot", "--hard", "--wait", name)
    _wait(compute_server, identity_server, name, "ACTIVE")
    console = cli.run("console", "log", "show", name).stdout
    assert "cirrus guest up" in console
    assert "hard reboot" in console
    cli.run("server", "delete", "--wait", name)
    assert cli.run("server", "show", name, check=False).returncode != 0


def _wait(compute: ComputeServer, identity: IdentityServer, name: str, status: str) -> None:
    """Poll the API directly (a CLI call costs about 2 s of start-up)."""
    import time

    import requests

    token, _ = identity.issue_token()
    headers = {"X-Auth-Token": token}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = requests.get(
            f"{compute.url}/v2.1/servers/detail?name=^{name}$", headers=headers, timeout=10
        ).json()["servers"]
        if found and found[0]["status"] == status and found[0]["OS-EXT-STS:task_state"] is None:
            return
        time.sleep(0.2)
    pytest.fail(f"server {name} did not reach {status}")


def test_compute_service_list_and_quota(
    cli: CLI, compute_server: ComputeServer, identity_server: IdentityServer
) -> None:
    services = cli.json("compute", "service", "list")
    computes = [s for s in services if s["Binary"] == "nova-compute"]
    assert len(computes) == len(compute_server.agents)
    assert all(s["State"] == "up" and s["Status"] == "enabled" for s in computes)
    assert {"nova-scheduler", "nova-conductor"} <= {s["Binary"] for s in services}
    quota = cli.json("quota", "show", "--compute")
    flat = {q["Resource"]: q["Limit"] for q in quota} if isinstance(quota, list) else quota
    assert flat["instances"] == 10
    assert flat["cores"] == 20


def test_the_sdk_creates_and_waits_for_a_server(
    compute_server: ComputeServer,
    identity_server: IdentityServer,
    image_server: ImageServer,
    image: str,
    flavor: str,
) -> None:
    config = openstack.config.OpenStackConfig(config_files=[str(identity_server.clouds_file)])
    conn = openstack.connection.Connection(config=config.get_one(CLOUD))
    try:
        image_id = conn.image.find_image(image, ignore_missing=False).id
        flavor_id = conn.compute.find_flavor(flavor, ignore_missing=False).id
        server = conn.compute.create_server(
            name=f"sdk-{secrets.token_hex(3)}", image_id=image_id, flavor_id=flavor_id
        )
        server = conn.compute.wait_for_server(server, status="ACTIVE", wait=60, interval=0.5)
        assert server.status == "ACTIVE"
        assert server.addresses == {}
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=60, interval=0.5)
    finally:
        conn.close()
