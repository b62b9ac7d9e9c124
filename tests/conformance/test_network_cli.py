"""The unmodified ``openstack`` CLI against network-api under gunicorn (the ``network_server``
fixture), found through identity's catalog as clients find Neutron: networks, subnets, ports,
security groups and rules, routers with an interface and a gateway, floating IPs."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.identity_server import CLOUD, IdentityServer
from tests.fixtures.image_server import Account, IdentityAdmin
from tests.fixtures.network_server import NetworkServer
from tests.fixtures.processes import venv_bin

pytestmark = [pytest.mark.conformance, pytest.mark.mariadb]

MEMBER_CLOUD = "network-member"


@pytest.fixture(scope="module")
def member(identity_server: IdentityServer) -> Account:
    admin = IdentityAdmin(identity_server)
    try:
        return admin.account("net-cli", "member")
    finally:
        admin.close()


class CLI:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, cloud: str = MEMBER_CLOUD) -> str:
        result = subprocess.run(
            [str(venv_bin("openstack")), "--os-cloud", cloud, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
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


@pytest.fixture(scope="module")
def cli(
    network_server: NetworkServer,
    identity_server: IdentityServer,
    member: Account,
    tmp_path_factory: pytest.TempPathFactory,
) -> CLI:
    path: Path = tmp_path_factory.mktemp("network-cli") / "clouds.yaml"
    identity_server.clouds_yaml(
        path,
        extra={
            MEMBER_CLOUD: identity_server.cloud(member.username, member.password, member.project)
        },
    )
    return CLI(identity_server.env(path))


def test_network_workflow_with_the_cli(cli: CLI, member: Account) -> None:
    suffix = secrets.token_hex(3)
    external = cli.json(
        "network", "create", "--external", "--provider-network-type", "flat",
        "--provider-physical-network", "physnet1", f"ext-{suffix}",
        cloud=CLOUD,
    )  # fmt: skip
    assert external["router:external"] is True
    cli.run(
        "subnet", "create", "--network", external["id"], "--subnet-range", "198.51.100.0/24",
        "--no-dhcp", f"ext-sub-{suffix}",
        cloud=CLOUD,
    )  # fmt: skip

    net = cli.json("network", "create", f"net-{suffix}")
    assert net["status"] == "ACTIVE"
    assert net["project_id"] == member.project_id
    subnet = cli.json(
        "subnet", "create", "--network", f"net-{suffix}", "--subnet-range", "10.9.0.0/24",
        "--dns-nameserver", "10.9.0.53", f"sub-{suffix}",
    )  # fmt: skip
    assert subnet["gateway_ip"] == "10.9.0.1"
    assert subnet["allocation_pools"] == [{"start": "10.9.0.2", "end": "10.9.0.254"}]

    port = cli.json("port", "create", "--network", f"net-{suffix}", f"port-{suffix}")
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.9.0.2"}]
    assert port["mac_address"].startswith("fa:16:3e:")
    listed = cli.json("port", "list", "--network", net["id"])
    assert [p["ID"] for p in listed] == [port["id"]]
    shown = cli.json("port", "show", f"port-{suffix}")
    assert shown["id"] == port["id"]
    assert shown["status"] == "DOWN"

    group = cli.json("security group", "create", f"sg-{suffix}")
    rule = cli.json(
        "security group rule", "create", "--protocol", "tcp", "--dst-port", "22",
        "--remote-ip", "10.0.0.0/8", f"sg-{suffix}",
    )  # fmt: skip
    assert (rule["protocol"], rule["port_range_min"], rule["port_range_max"]) == ("tcp", 22, 22)
    assert rule["security_group_id"] == group["id"]
    names = [g["Name"] for g in cli.json("security group", "list")]
    assert sorted(names) == sorted(["default", f"sg-{suffix}"])

    router = cli.json("router", "create", f"router-{suffix}")
    cli.run("router", "add", "subnet", f"router-{suffix}", f"sub-{suffix}")
    cli.run("router", "set", "--external-gateway", external["id"], f"router-{suffix}")
    router = cli.json("router", "show", f"router-{suffix}")
    gateway = router["external_gateway_info"]
    assert gateway["network_id"] == external["id"]
    assert gateway["external_fixed_ips"][0]["ip_address"].startswith("198.51.100.")

    fip = cli.json("floating ip", "create", external["id"])
    assert fip["floating_ip_address"].startswith("198.51.100.")
    cli.run("floating ip", "set", "--port", port["id"], fip["id"])
    associated = cli.json("floating ip", "show", fip["id"])
    assert associated["port_id"] == port["id"]
    assert associated["fixed_ip_address"] == "10.9.0.2"
    assert associated["router_id"] == router["id"]
    cli.run("floating ip", "unset", "--port", fip["id"])
    assert cli.json("floating ip", "show", fip["id"])["port_id"] is None

    cli.run("floating ip", "delete", fip["id"])
    cli.run("port", "delete", f"port-{suffix}")
    left = cli.json("port", "list", "--network", net["id"], "--long")
    assert [p["Device Owner"] for p in left] == ["network:router_interface"]
