"""Security groups and rules: the one ``default`` group per project (also under concurrent first
requests), its rules, rule validation, duplicates, deletion rules and isolation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.api.network_env import NetworkEnv, assert_error, unique

pytestmark = pytest.mark.mariadb


def rule_keys(group: dict[str, Any]) -> set[tuple[Any, ...]]:
    return {
        (r["direction"], r["ethertype"], r["protocol"], r["remote_ip_prefix"], r["remote_group_id"])
        for r in group["security_group_rules"]
    }


def test_default_group_is_made_once_with_neutrons_rules(network: NetworkEnv) -> None:
    who = network.new_account("sg-new")
    network.token(who)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: network.listing("security_group", who=who), range(8)))

    ids = {tuple(g["id"] for g in listed) for listed in results}
    assert len(ids) == 1
    (groups,) = {tuple(g["id"] for g in listed) for listed in results}
    assert len(groups) == 1
    default = results[0][0]
    assert default["name"] == "default"
    assert rule_keys(default) == {
        ("egress", "IPv4", None, None, None),
        ("egress", "IPv6", None, None, None),
        ("ingress", "IPv4", None, None, default["id"]),
        ("ingress", "IPv6", None, None, default["id"]),
    }
    assert_error(
        network.delete(f"/security-groups/{default['id']}", who),
        409,
        "SecurityGroupCannotRemoveDefault",
    )
    resp = network.post("/security-groups", {"security_group": {"name": "default"}}, who)
    assert_error(resp, 409, "SecurityGroupDefaultAlreadyExists")


def test_group_lifecycle_and_rules(network: NetworkEnv) -> None:
    name = unique("sg")
    group = network.create("security_group", name=name, description="web")
    assert rule_keys(group) == {
        ("egress", "IPv4", None, None, None),
        ("egress", "IPv6", None, None, None),
    }
    rule = network.create(
        "security_group_rule",
        security_group_id=group["id"],
        direction="ingress",
        protocol="tcp",
        port_range_min=22,
        port_range_max=22,
        remote_ip_prefix="10.0.0.0/8",
    )
    assert rule["ethertype"] == "IPv4"
    assert rule["protocol"] == "tcp"
    assert (rule["port_range_min"], rule["port_range_max"]) == (22, 22)

    # The same rule again, also with the protocol as a number: 409.
    for protocol in ("tcp", "6"):
        resp = network.post(
            "/security-group-rules",
            {
                "security_group_rule": {
                    "security_group_id": group["id"],
                    "direction": "ingress",
                    "protocol": protocol,
                    "port_range_min": 22,
                    "port_range_max": 22,
                    "remote_ip_prefix": "10.0.0.0/8",
                }
            },
        )
        assert_error(resp, 409, "SecurityGroupRuleExists", rule["id"])

    shown = network.show("security_group", group["id"])
    assert rule["id"] in {r["id"] for r in shown["security_group_rules"]}
    listed = network.listing("security_group_rule", f"security_group_id={group['id']}")
    assert len(listed) == 3
    renamed = network.put(f"/security-groups/{group['id']}", {"security_group": {"name": "x"}})
    assert renamed.get_json()["security_group"]["name"] == "x"

    assert network.delete(f"/security-group-rules/{rule['id']}").status_code == 204
    assert_error(
        network.get(f"/security-group-rules/{rule['id']}"), 404, "SecurityGroupRuleNotFound"
    )
    assert network.delete(f"/security-groups/{group['id']}").status_code == 204
    assert_error(network.get(f"/security-groups/{group['id']}"), 404, "SecurityGroupNotFound")


@pytest.mark.parametrize(
    ("attrs", "kind"),
    [
        ({"protocol": "bogus"}, "SecurityGroupRuleInvalidProtocol"),
        (
            {"protocol": "tcp", "port_range_min": 100, "port_range_max": 10},
            "SecurityGroupInvalidPortRange",
        ),
        ({"port_range_min": 10, "port_range_max": 20}, "SecurityGroupProtocolRequiredWithPorts"),
        ({"protocol": "icmp", "port_range_max": 0}, "SecurityGroupMissingIcmpType"),
        (
            {"protocol": "gre", "port_range_min": 1, "port_range_max": 2},
            "SecurityGroupInvalidProtocolForPort",
        ),
        ({"remote_ip_prefix": "::/0"}, "SecurityGroupRuleParameterConflict"),
        (
            {"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "x"},
            "SecurityGroupRemoteGroupAndRemoteIpPrefix",
        ),
        ({"direction": "sideways"}, None),
        ({"port_range_min": 70000, "protocol": "tcp"}, None),
    ],
)
def test_rule_validation(network: NetworkEnv, attrs: dict[str, Any], kind: str | None) -> None:
    group = network.create("security_group", name=unique("sgv"))
    body = {"security_group_id": group["id"], "direction": "ingress", **attrs}
    resp = network.post("/security-group-rules", {"security_group_rule": body})
    network.delete(f"/security-groups/{group['id']}")
    assert_error(resp, 400, kind)


def test_remote_group_and_icmp_rules(network: NetworkEnv) -> None:
    group = network.create("security_group", name=unique("sgr"))
    other = network.create("security_group", name=unique("sgr"))
    by_group = network.create(
        "security_group_rule",
        security_group_id=group["id"],
        direction="ingress",
        remote_group_id=other["id"],
        protocol="udp",
        port_range_min=53,
        port_range_max=53,
    )
    icmp = network.create(
        "security_group_rule",
        security_group_id=group["id"],
        direction="ingress",
        protocol="icmp",
        port_range_min=8,
        port_range_max=0,
    )
    v6 = network.create(
        "security_group_rule",
        security_group_id=group["id"],
        direction="ingress",
        ethertype="IPv6",
        protocol="58",
    )
    assert by_group["remote_group_id"] == other["id"]
    assert (icmp["port_range_min"], icmp["port_range_max"]) == (8, 0)
    assert v6["protocol"] == "58"
    # A group in use by a port cannot be deleted.
    net = network.network(cidr="10.100.0.0/24")
    port = network.create("port", network_id=net["id"], security_groups=[other["id"]])
    assert_error(network.delete(f"/security-groups/{other['id']}"), 409, "SecurityGroupInUse")
    network.delete(f"/ports/{port['id']}")
    assert network.delete(f"/security-groups/{other['id']}").status_code == 204


def test_groups_are_private_to_their_project(network: NetworkEnv) -> None:
    group = network.create("security_group", name=unique("sgp"))
    assert_error(network.get(f"/security-groups/{group['id']}", "b"), 404, "SecurityGroupNotFound")
    assert group["id"] not in {g["id"] for g in network.listing("security_group", who="b")}
    net = network.network("b", cidr="10.101.0.0/24")
    resp = network.post(
        "/ports", {"port": {"network_id": net["id"], "security_groups": [group["id"]]}}, "b"
    )
    assert_error(resp, 404, "SecurityGroupNotFound")
    resp = network.post(
        "/security-group-rules",
        {"security_group_rule": {"security_group_id": group["id"], "direction": "ingress"}},
        "b",
    )
    assert_error(resp, 404, "SecurityGroupNotFound")
