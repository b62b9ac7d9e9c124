"""The network agent's nftables ruleset: what it says for given ports and rules, what it refuses,
and (when nft is installed and we are root) that ``nft -c`` accepts it without changing anything.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from typing import Any

import pytest

from agents.network import nftables

PORT1 = "8a7c0f3e-1111-4a4a-9b9b-000000000001"
PORT2 = "8a7c0f3e-2222-4a4a-9b9b-000000000002"
NET = "5d2a1b0c-aaaa-4bbb-8ccc-000000000010"


def rule(direction: str, ethertype: str = "IPv4", **extra: Any) -> dict[str, Any]:
    body = {
        "id": "r",
        "security_group_id": "g",
        "direction": direction,
        "ethertype": ethertype,
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": None,
    }
    body.update(extra)
    return body


def port(port_id: str = PORT1, **extra: Any) -> dict[str, Any]:
    """Shaped as control.network.rpc.port_details answers."""
    body: dict[str, Any] = {
        "id": port_id,
        "network_id": NET,
        "network": {
            "id": NET,
            "network_type": "vxlan",
            "physical_network": None,
            "segmentation_id": 42,
            "mtu": 1450,
            "admin_state_up": True,
            "bridge_name": "brq" + NET[:11],
        },
        "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}],
        "device_id": "d",
        "device_owner": "compute:nova",
        "admin_state_up": True,
        "status": "DOWN",
        "port_security_enabled": True,
        "allowed_address_pairs": [],
        "security_group_ids": ["g"],
        "security_group_rules": [rule("egress"), rule("egress", "IPv6")],
        "binding:vif_type": "bridge",
        "binding:vif_details": {},
    }
    body.update(extra)
    return body


def test_port_chains_and_anti_spoofing() -> None:
    text = nftables.render([port()])
    assert text.startswith("table bridge cirrus {}\ndelete table bridge cirrus\n")
    assert "table inet cirrus {\n" in text
    short = PORT1.replace("-", "")[:16]
    assert f'iifname "tap{PORT1[:11]}" jump spoof-{short}' in text
    assert f'oifname "tap{PORT1[:11]}" meta mark set meta mark & 0xffff0000 | 0x00000001' in text
    assert "ether saddr != { fa:16:3e:00:00:01 } drop" in text
    assert "arp saddr ip != { 0.0.0.0, 10.0.0.5/32 } drop" in text
    assert "ether type ip ip saddr != { 10.0.0.5/32 } drop" in text
    assert "ether type ip udp sport 67 drop" in text  # no DHCP server in a guest
    assert "fe80::f816:3eff:fe00:1/128" in text  # its EUI-64 link-local address
    assert f"0x00010000 : jump egress-{short}" in text
    assert f"0x00000001 : jump ingress-{short}" in text
    assert "ct state established,related accept" in text
    # default group egress: everything out; ingress: nothing but replies, DHCP and ND
    egress = text.split(f"chain egress-{short} {{")[1].split("\t}")[0]
    assert "meta nfproto ipv4 return" in egress and "meta nfproto ipv6 return" in egress
    ingress = text.split(f"chain ingress-{short} {{")[1].split("\t}")[0]
    assert ingress.strip().endswith("drop")
    assert "icmp" not in ingress.replace("icmpv6", "")


def test_rules_render_protocols_ports_and_remotes() -> None:
    rules = [
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
        rule(
            "ingress",
            protocol="udp",
            port_range_min=1000,
            port_range_max=2000,
            remote_ip_prefix="192.168.0.0/16",
        ),  # fmt: skip
        rule("ingress", protocol="icmp", port_range_min=8, port_range_max=0),
        rule("ingress", "IPv6", protocol="icmp"),
        rule("ingress", protocol="132"),
        rule("ingress", remote_group_id="g", remote_ips=["10.0.0.7", "10.0.0.5", "fd00::1"]),
        rule("ingress", "IPv6", remote_group_id="g2", remote_ips=["10.0.0.9"]),  # no IPv6 member
        rule("egress", protocol="tcp", port_range_min=443, remote_ip_prefix="0.0.0.0/0"),
    ]
    text = nftables.render([port(security_group_rules=rules)])
    assert "meta nfproto ipv4 meta l4proto 6 th dport 22 accept" in text
    assert (
        "meta nfproto ipv4 ip saddr { 192.168.0.0/16 } meta l4proto 17 th dport 1000-2000 accept"
        in text
    )
    assert "meta nfproto ipv4 icmp type 8 icmp code 0 accept" in text
    assert "meta nfproto ipv6 meta l4proto 58 accept" in text
    assert "meta nfproto ipv4 meta l4proto 132 accept" in text
    assert "meta nfproto ipv4 ip saddr { 10.0.0.5/32, 10.0.0.7/32 } accept" in text
    assert "g2" not in text and "10.0.0.9" not in text
    assert "meta nfproto ipv4 meta l4proto 6 th dport 443 return" in text


def test_allowed_address_pairs_and_overlaps_are_merged() -> None:
    pairs = [
        {"ip_address": "10.0.0.0/24", "mac_address": "fa:16:3e:00:00:01"},
        {"ip_address": "10.9.0.1", "mac_address": "FA:16:3E:AA:BB:CC"},
    ]
    text = nftables.render([port(allowed_address_pairs=pairs)])
    assert "ip saddr != { 10.0.0.0/24, 10.9.0.1/32 } drop" in text
    assert "ether saddr != { fa:16:3e:00:00:01, fa:16:3e:aa:bb:cc } drop" in text


def test_port_security_disabled_is_not_filtered() -> None:
    text = nftables.render([port(port_security_enabled=False), port(PORT2)])
    assert f'iifname "tap{PORT1[:11]}" meta mark set 0x00000000' in text
    assert f"spoof-{PORT1.replace('-', '')[:16]}" not in text
    assert f'oifname "tap{PORT2[:11]}" meta mark set meta mark & 0xffff0000 | 0x00000001' in text


def test_no_ports_removes_the_tables() -> None:
    assert nftables.empty().splitlines() == [
        "table bridge cirrus {}",
        "delete table bridge cirrus",
        "table inet cirrus {}",
        "delete table inet cirrus",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": 'x" ; flush ruleset'}, "port id"),
        ({"mac_address": "fa:16:3e:00:00:01 } drop"}, "MAC"),
        ({"fixed_ips": [{"ip_address": "10.0.0.5; flush ruleset"}]}, "IP address"),
        ({"allowed_address_pairs": [{"ip_address": "10.0.0.0/33"}]}, "prefix"),
        ({"security_group_rules": [rule("sideways")]}, "direction"),
        ({"security_group_rules": [rule("ingress", "IPv5")]}, "ethertype"),
        ({"security_group_rules": [rule("ingress", protocol="tcp; drop")]}, "protocol"),
        (
            {
                "security_group_rules": [
                    rule("ingress", protocol="tcp", port_range_min="22 drop", port_range_max=22)
                ]
            },
            "port",
        ),  # fmt: skip
        (
            {
                "security_group_rules": [
                    rule("ingress", protocol="tcp", port_range_min=70000, port_range_max=70000)
                ]
            },
            "port",
        ),  # fmt: skip
        (
            {
                "security_group_rules": [
                    rule("ingress", protocol="gre", port_range_min=1, port_range_max=2)
                ]
            },
            "port range",
        ),  # fmt: skip
        ({"security_group_rules": [rule("ingress", remote_ip_prefix="fd00::/8")]}, "IPv4"),
        (
            {
                "security_group_rules": [
                    rule("ingress", remote_group_id="g", remote_ips=["10.0.0.1 }"])
                ]
            },
            "IP",
        ),  # fmt: skip
    ],
)
def test_invalid_input_is_refused(change: dict[str, Any], message: str) -> None:
    body = copy.deepcopy(port())
    body.update(change)
    with pytest.raises(ValueError, match=message):
        nftables.render([body])


def test_firewall_applies_through_stdin_and_skips_identical_rulesets() -> None:
    calls: list[tuple[list[str], str | None]] = []

    def runner(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((argv, kwargs.get("input")))
        return subprocess.CompletedProcess(argv, 0, "", "")

    fw = nftables.Firewall(netns="cirnt-h1-x", runner=runner)
    assert fw.apply([port()]) is True
    assert fw.apply([port()]) is False
    assert fw.apply([port()], force=True) is True
    assert calls[0][0] == ["ip", "netns", "exec", "cirnt-h1-x", "nft", "-f", "-"]
    assert calls[0][1] == nftables.render([port()])
    assert len(calls) == 2


def test_nft_accepts_the_ruleset_in_check_mode() -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root (CAP_NET_ADMIN)")
    rules = [
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=80),
        rule("ingress", protocol="icmp", port_range_min=8, port_range_max=0),
        rule("ingress", "IPv6", protocol="ipv6-icmp", port_range_min=128),
        rule("ingress", protocol="sctp", port_range_min=5, port_range_max=5),
        rule("ingress", remote_group_id="g", remote_ips=["10.0.0.7"]),
        rule("egress", "IPv6", protocol="udp", port_range_min=53, remote_ip_prefix="fd00::/8"),
    ]
    text = nftables.render(
        [
            port(security_group_rules=rules, allowed_address_pairs=[{"ip_address": "fd00::5"}]),
            port(PORT2, port_security_enabled=False),
        ],
        ["eth1.100"],
    )
    proc = subprocess.run(
        ["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr + "\n" + text
