"""Network records: networks and their segment, subnets, ports with their fixed IPs and security
groups, security groups and rules, routers, floating IPs, quotas and agents.

Uniqueness that concurrent requests could break is a key of the database, never a check alone:

- a network's segment (``segment_key``: ``vxlan:<vni>``, ``vlan:<physnet>:<vid>``,
  ``flat:<physnet>``), so two networks never get the same VNI;
- a fixed IP per subnet (``ip_allocations`` primary key), a MAC per network;
- one default security group per project (``default_security_groups`` primary key);
- a rule per group and meaning (``security_group_rules.fingerprint``);
- an agent per type and host.

Router interfaces, router gateways and floating IPs own ports (``device_owner``
``network:router_interface``, ``network:router_gateway``, ``network:floatingip``), as in Neutron.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from control.common.db import PRECISE_DATETIME, utcnow

#: The isolation of every network transaction (API and RPC endpoint): see used_addresses().
ISOLATION = "READ COMMITTED"

DEVICE_OWNER_ROUTER_INTF = "network:router_interface"
DEVICE_OWNER_ROUTER_GW = "network:router_gateway"
DEVICE_OWNER_FLOATINGIP = "network:floatingip"
DEVICE_OWNER_DHCP = "network:dhcp"


class Base(DeclarativeBase):
    pass


class StandardAttrs:
    """What every Neutron resource carries: times, a revision number and a description."""

    description: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)

    def touch(self) -> None:
        """Count an update (``revision_number``) and stamp ``updated_at``."""
        self.revision_number = (self.revision_number or 0) + 1
        self.updated_at = utcnow()


class Network(StandardAttrs, Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    router_external: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    mtu: Mapped[int] = mapped_column(Integer)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    network_type: Mapped[str] = mapped_column(String(32))
    physical_network: Mapped[str | None] = mapped_column(String(64))
    segmentation_id: Mapped[int | None] = mapped_column(Integer)
    segment_key: Mapped[str | None] = mapped_column(String(128), unique=True)

    subnets: Mapped[list[Subnet]] = relationship(
        back_populates="network", lazy="selectin", order_by="Subnet.created_at"
    )


class Subnet(StandardAttrs, Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    network_id: Mapped[str] = mapped_column(String(36), ForeignKey("networks.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(16))
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(16))
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)

    network: Mapped[Network] = relationship(back_populates="subnets", lazy="joined")


class Port(StandardAttrs, Base):
    __tablename__ = "ports"
    __table_args__ = (UniqueConstraint("network_id", "mac_address", name="uniq_ports_mac"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    network_id: Mapped[str] = mapped_column(String(36), ForeignKey("networks.id"), index=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="", index=True)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    binding_host_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    binding_vnic_type: Mapped[str] = mapped_column(String(64), default="normal")
    allowed_address_pairs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)

    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        back_populates="port",
        lazy="selectin",
        cascade="all, delete-orphan",
        order_by="IPAllocation.created_at",
    )
    security_groups: Mapped[list[PortSecurityGroup]] = relationship(
        lazy="selectin", cascade="all, delete-orphan"
    )

    def security_group_ids(self) -> list[str]:
        return sorted(binding.security_group_id for binding in self.security_groups)


class IPAllocation(Base):
    """A fixed IP of a port; the primary key makes an address taken once per subnet."""

    __tablename__ = "ip_allocations"

    subnet_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("subnets.id"), primary_key=True, index=True
    )
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)

    port: Mapped[Port] = relationship(back_populates="fixed_ips")


class SecurityGroup(StandardAttrs, Base):
    __tablename__ = "security_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)

    rules: Mapped[list[SecurityGroupRule]] = relationship(
        back_populates="security_group",
        lazy="selectin",
        cascade="all, delete-orphan",
        order_by="SecurityGroupRule.created_at",
        foreign_keys="SecurityGroupRule.security_group_id",
    )


class DefaultSecurityGroup(Base):
    """One row per project: its ``default`` group. The key makes concurrent creation safe."""

    __tablename__ = "default_security_groups"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("security_groups.id", ondelete="CASCADE"), unique=True
    )


class SecurityGroupRule(StandardAttrs, Base):
    __tablename__ = "security_group_rules"
    __table_args__ = (
        UniqueConstraint("security_group_id", "fingerprint", name="uniq_sg_rules_fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    security_group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("security_groups.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(16))
    ethertype: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str | None] = mapped_column(String(40))
    port_range_min: Mapped[int | None] = mapped_column(Integer)
    port_range_max: Mapped[int | None] = mapped_column(Integer)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64))
    remote_group_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("security_groups.id", ondelete="CASCADE"), index=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))

    security_group: Mapped[SecurityGroup] = relationship(
        back_populates="rules", foreign_keys=[security_group_id]
    )


class PortSecurityGroup(Base):
    __tablename__ = "port_security_groups"

    port_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    security_group_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("security_groups.id"), primary_key=True, index=True
    )


class Router(StandardAttrs, Base):
    __tablename__ = "routers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    gw_port_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="SET NULL")
    )
    gw_network_id: Mapped[str | None] = mapped_column(String(36), index=True)
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)


class FloatingIP(StandardAttrs, Base):
    __tablename__ = "floatingips"
    __table_args__ = (
        UniqueConstraint(
            "floating_network_id", "fixed_port_id", "fixed_ip_address", name="uniq_fip_fixed"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    floating_network_id: Mapped[str] = mapped_column(String(36), ForeignKey("networks.id"))
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    floating_port_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="CASCADE")
    )
    fixed_port_id: Mapped[str | None] = mapped_column(
        String(36), ForeignKey("ports.id", ondelete="SET NULL"), index=True
    )
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64))
    router_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")


class Quota(Base):
    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)


class Agent(Base):
    """A host agent; the row is written by ``report_state`` over RPC (its heartbeat)."""

    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("agent_type", "host", name="uniq_agents_type_host"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_type: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255), index=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    configurations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    started_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    heartbeat_timestamp: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)


def used_addresses(sess: Session, subnet_id: str) -> set[str]:
    """The addresses allocated in a subnet. Callers lock the subnet first (``FOR UPDATE``), and
    the network service's transactions are READ COMMITTED (:data:`ISOLATION`), so this read sees
    the allocations of a transaction that committed while this one waited for the lock: under
    MariaDB's default REPEATABLE READ it would read an older snapshot and hand out the same
    address twice."""
    return set(
        sess.scalars(select(IPAllocation.ip_address).where(IPAllocation.subnet_id == subnet_id))
    )
