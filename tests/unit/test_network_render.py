"""A port's body is the same whether its fixed IPs and security groups come from its own
collections (show) or are handed in, loaded for a whole page (list)."""

from __future__ import annotations

from datetime import datetime

from control.network import models, render
from control.network.protocols import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOLS


def _port() -> models.Port:
    port = models.Port(
        id="p1",
        project_id="proj",
        network_id="0123456789abcdef",
        name="web",
        mac_address="fa:16:3e:00:00:01",
        admin_state_up=True,
        status="DOWN",
        device_id="",
        device_owner="",
        port_security_enabled=True,
        binding_host_id="node-1",
        binding_profile={},
        binding_vnic_type="normal",
        allowed_address_pairs=[{"ip_address": "10.0.0.9", "mac_address": "fa:16:3e:00:00:01"}],
        description="",
        revision_number=2,
        created_at=datetime(2030, 1, 1),
        updated_at=datetime(2030, 1, 2),
    )
    port.fixed_ips = [
        models.IPAllocation(subnet_id="s1", ip_address="10.0.0.5", network_id=port.network_id),
        models.IPAllocation(subnet_id="s2", ip_address="10.0.1.5", network_id=port.network_id),
    ]
    port.security_groups = [
        models.PortSecurityGroup(port_id="p1", security_group_id="sg-b"),
        models.PortSecurityGroup(port_id="p1", security_group_id="sg-a"),
    ]
    return port


def test_port_body_from_page_data_is_the_show_body() -> None:
    port = _port()
    shown = render.port(port)
    listed = render.port(
        port,
        [
            {"subnet_id": "s1", "ip_address": "10.0.0.5"},
            {"subnet_id": "s2", "ip_address": "10.0.1.5"},
        ],
        ["sg-a", "sg-b"],
    )
    assert listed == shown
    assert shown["security_groups"] == ["sg-a", "sg-b"]
    assert shown["binding:vif_type"] == "bridge"


def test_protocol_table_is_shared() -> None:
    from agents.network import nftables
    from control.network.api import security_groups

    assert nftables.PROTOCOLS is PROTOCOLS is security_groups.PROTOCOLS
    assert PROTOCOLS["icmpv6"] == PROTOCOLS["ipv6-icmp"] == 58
    assert {PROTOCOLS[name] for name in ("tcp", "udp", "dccp", "sctp", "udplite")} == set(
        PORT_PROTOCOLS
    )
    assert {PROTOCOLS["icmp"], PROTOCOLS["ipv6-icmp"]} == set(ICMP_PROTOCOLS)
