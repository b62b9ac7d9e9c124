"""Compute records: flavors, key pairs, quotas, servers (instances) and what hangs from them,
services and compute nodes with the resources claimed on them.

The compute database is shared by compute-api, the scheduler and the conductor (all on
controllers); compute agents never reach it: they go through the conductor.

Claims: each server placed on a host has one :class:`Allocation` row and its resources are added
to the ``*_used`` columns of the host's :class:`ComputeNode` in the same transaction, under a row
lock (``SELECT ... FOR UPDATE``), so concurrent boots can never overcommit a host. Releasing a
claim deletes the allocation and subtracts it again (idempotent: no allocation, nothing to do).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from control.common.db import PRECISE_DATETIME, utcnow

# vm_state values (Nova's), and the API status each maps to.
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
ERROR = "error"
DELETED = "deleted"


class Base(DeclarativeBase):
    pass


class Flavor(Base):
    __tablename__ = "flavors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavorid: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    memory_mb: Mapped[int] = mapped_column(Integer)
    vcpus: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)

    extra_specs: Mapped[list[FlavorExtraSpec]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    projects: Mapped[list[FlavorProject]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )


class FlavorExtraSpec(Base):
    __tablename__ = "flavor_extra_specs"
    flavor_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class FlavorProject(Base):
    """A project that may use a private flavor."""

    __tablename__ = "flavor_projects"
    flavor_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("flavors.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class KeyPair(Base):
    __tablename__ = "key_pairs"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_key_pairs_user_id_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(10), default="ssh")
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)


class Quota(Base):
    """A project's limit for one resource, overriding the configured default."""

    __tablename__ = "quotas"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_project_created", "project_id", "created_at", "uuid"),
        Index("ix_instances_created_uuid", "created_at", "uuid"),
    )

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    image_ref: Mapped[str] = mapped_column(String(255))
    flavor_id: Mapped[str] = mapped_column(String(255))
    flavor_name: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    key_name: Mapped[str | None] = mapped_column(String(255))
    key_data: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255), index=True)
    node: Mapped[str | None] = mapped_column(String(255))
    vm_state: Mapped[str] = mapped_column(String(32), default=BUILDING, index=True)
    task_state: Mapped[str | None] = mapped_column(String(32))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    access_ipv4: Mapped[str | None] = mapped_column(String(39))
    access_ipv6: Mapped[str | None] = mapped_column(String(39))
    config_drive: Mapped[str] = mapped_column(String(255), default="")
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME)
    #: Nova's ``info_cache``: the server's ports as JSON (a list of VIFs, see
    #: :mod:`control.compute.network`), written by compute-api when it makes or removes ports, so
    #: that rendering ``addresses`` never calls the network API.
    network_info: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        PRECISE_DATETIME, default=utcnow, onupdate=utcnow, index=True
    )

    metadata_items: Mapped[list[InstanceMetadata]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )
    faults: Mapped[list[InstanceFault]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        passive_deletes=True,
        order_by="InstanceFault.id.desc()",
    )
    block_devices: Mapped[list[BlockDeviceMapping]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        passive_deletes=True,
        order_by="BlockDeviceMapping.device_name",
    )

    def metadata_dict(self) -> dict[str, str]:
        return {item.key: item.value for item in self.metadata_items}

    def vifs(self) -> list[dict[str, Any]]:
        """The cached ports (``network_info``), ``[]`` when none."""
        if not self.network_info:
            return []
        value = json.loads(self.network_info)
        return value if isinstance(value, list) else []

    def set_vifs(self, vifs: list[dict[str, Any]]) -> None:
        self.network_info = json.dumps(vifs) if vifs else None


class InstanceMetadata(Base):
    __tablename__ = "instance_metadata"
    instance_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.uuid", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class BlockDeviceMapping(Base):
    """A volume of a server (Nova's ``block_device_mapping``, volumes only): written when the
    attach (or the boot) reserves the device name, completed with the volume API's attachment
    and connection info once the volume is connected, removed on detach. The server's
    ``os-extended-volumes:volumes_attached`` and ``os-volume_attachments`` read it."""

    __tablename__ = "block_device_mapping"
    __table_args__ = (
        UniqueConstraint("instance_uuid", "device_name", name="uq_bdm_instance_device"),
        UniqueConstraint("instance_uuid", "volume_id", name="uq_bdm_instance_volume"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.uuid", ondelete="CASCADE"), index=True
    )
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    device_name: Mapped[str] = mapped_column(String(255))
    boot_index: Mapped[int | None] = mapped_column(Integer)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The volume API's attachment (``connection_info.data.attachment_id``); None while the
    #: volume is only reserved.
    attachment_id: Mapped[str | None] = mapped_column(String(36))
    connection_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow, onupdate=utcnow)


class InstanceFault(Base):
    __tablename__ = "instance_faults"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.uuid", ondelete="CASCADE"), index=True
    )
    code: Mapped[int] = mapped_column(Integer, default=500)
    message: Mapped[str] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)


class InstanceAction(Base):
    """One user-visible action on a server (``os-instance-actions``); kept after delete."""

    __tablename__ = "instance_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    finish_time: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME)

    events: Mapped[list[InstanceActionEvent]] = relationship(
        cascade="all, delete-orphan",
        lazy="selectin",
        passive_deletes=True,
        order_by="InstanceActionEvent.id",
    )


class InstanceActionEvent(Base):
    __tablename__ = "instance_action_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("instance_actions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    finish_time: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME)


class Service(Base):
    """A process that heartbeats through the conductor (``os-services``)."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", name="uq_services_host_binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[datetime | None] = mapped_column(PRECISE_DATETIME)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow, onupdate=utcnow)


class ComputeNode(Base):
    """A hypervisor's capacity as its agent reports it, and what claims use of it."""

    __tablename__ = "compute_nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(255))
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=0)
    host_ip: Mapped[str | None] = mapped_column(String(39))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    local_gb: Mapped[int] = mapped_column(Integer)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(Integer, default=0)
    local_gb_used: Mapped[int] = mapped_column(Integer, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, default=0)
    cpu_info: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow, onupdate=utcnow)


class Allocation(Base):
    """The resources one server holds on one host (its claim)."""

    __tablename__ = "allocations"
    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(PRECISE_DATETIME, default=utcnow)
